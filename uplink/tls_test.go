package uplink

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// testCA is a certificate authority made by the test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// serverCert returns the PEM certificate and key of a server for the IP
// address 127.0.0.1 (an IP SAN, RFC 5280 §4.2.1.6), signed by ca.
func (ca *testCA) serverCert(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "commune broker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}

// syncBuf collects the broker's log.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// tlsBroker is a real Mosquitto with only a TLS listener, no anonymous
// access, a password file made by mosquitto_passwd and an ACL that binds
// each village's topic tree to its username.
type tlsBroker struct {
	addr   string
	caFile string
	log    *syncBuf
}

func startTLSBroker(t *testing.T, ca *testCA, users map[string]string) *tlsBroker {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
	}
	passwd, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		t.Fatalf("mosquitto_passwd is not installed (make deps installs mosquitto): %v", err)
	}
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	certPEM, keyPEM := ca.serverCert(t)
	caFile := write("ca.pem", ca.pem)
	certFile := write("server.pem", certPEM)
	keyFile := write("server.key", keyPEM)
	pwFile := filepath.Join(dir, "passwd")
	first := true
	for u, p := range users {
		args := []string{"-b", pwFile, u, p}
		if first {
			args = []string{"-b", "-c", pwFile, u, p}
			first = false
		}
		if out, err := exec.Command(passwd, args...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd: %v: %s", err, out)
		}
	}
	// The commune reads everything under its province; a village writes
	// only under its own site, whose name is its username (%u), and reads
	// the three command topics (Mosquitto warns that two patterns lack
	// %u: every user may read them, as intended).
	acl := write("acl", []byte(strings.Join([]string{
		"user commune",
		"topic read loalang/v1/#",
		"topic write loalang/v1/hanoi/#",
		"",
		"pattern write loalang/v1/hanoi/xa-1/%u/events",
		"pattern write loalang/v1/hanoi/xa-1/%u/presence",
		"pattern read loalang/v1/hanoi/cmd",
		"pattern read loalang/v1/hanoi/xa-1/cmd",
		"pattern read loalang/v1/hanoi/xa-1/%u/cmd",
		"",
	}, "\n")))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	conf := fmt.Sprintf(`per_listener_settings false
allow_anonymous false
password_file %s
acl_file %s
persistence false
log_dest stderr
log_type error
log_type warning
log_type notice
connection_messages true
user root
listener %s 127.0.0.1
cafile %s
certfile %s
keyfile %s
tls_version tlsv1.2
`, pwFile, acl, port, caFile, certFile, keyFile)
	if os.Getuid() != 0 {
		conf = strings.Replace(conf, "user root\n", "", 1)
	}
	confFile := write("mosquitto.conf", []byte(conf))
	b := &tlsBroker{addr: addr, caFile: caFile, log: &syncBuf{}}
	cmd := exec.Command(bin, "-c", confFile)
	cmd.Stderr = b.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM) // by pid: the process this test started
		cmd.Wait()
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", b.log.String())
		}
	})
	eventually(t, 10*time.Second, "mosquitto listening", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return b
}

func (b *tlsBroker) URL() string { return "ssl://" + b.addr }

// tlsReceiver is the commune: it subscribes to every village's events over
// TLS with its own credentials.
func tlsReceiver(t *testing.T, b *tlsBroker, ca *testCA, password string) *receiver {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.pem)
	r := &receiver{seen: map[string]bool{}}
	opts := mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("commune").SetUsername("commune").SetPassword(password).
		SetProtocolVersion(4).SetOrderMatters(true).SetTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	pc := mqtt.NewClient(opts)
	if tok := pc.Connect(); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		t.Fatalf("receiver connect: %v", tok.Error())
	}
	tok := pc.Subscribe("loalang/v1/+/+/+/events", 1, func(_ mqtt.Client, m mqtt.Message) {
		var e Event
		if err := json.Unmarshal(m.Payload(), &e); err != nil {
			t.Errorf("receiver: bad event %q: %v", m.Payload(), err)
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.all++
		if !r.seen[e.ID] {
			r.seen[e.ID] = true
			r.order = append(r.order, e)
		}
	})
	if !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		t.Fatalf("receiver subscribe: %v", tok.Error())
	}
	t.Cleanup(func() { pc.Disconnect(100) })
	return r
}

// TestUplinkTLSAndCredentials runs the uplink against a real Mosquitto
// that takes only TLS and only known credentials (docs/uplink.md,
// "Connection"): with the right CA and password the outbox reaches the
// commune; a broker certificate from another CA, and a wrong password,
// are each refused with a clear error in the status, and the outbox keeps
// every event until a good connection delivers it.
func TestUplinkTLSAndCredentials(t *testing.T) {
	ca := newTestCA(t, "commune CA")
	b := startTLSBroker(t, ca, map[string]string{"thon-3": "village-secret", "commune": "commune-secret"})
	r := tlsReceiver(t, b, ca, "commune-secret")
	db := newDB(t)
	ob, err := OpenOutbox(db, testTopics(t), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	otherCA := filepath.Join(dir, "other-ca.pem")
	if err := os.WriteFile(otherCA, newTestCA(t, "another CA").pem, 0o600); err != nil {
		t.Fatal(err)
	}
	base := Config{URL: b.URL(), CAFile: b.caFile, Username: "thon-3", Password: "village-secret", ClientID: "thon-3",
		Topics: testTopics(t), MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}

	// refused runs a client with cfg until its status shows an error
	// containing want, and checks that the outbox kept its events.
	refused := func(name string, cfg Config, want string, depth int) {
		t.Helper()
		c, err := New(cfg, ob, nil, testLog)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); c.Run(ctx) }()
		eventually(t, 30*time.Second, name+" refused", func() bool { return c.Status().LastError != "" })
		cancel()
		<-done
		s := c.Status()
		t.Logf("%s: last_error %q", name, s.LastError)
		if !strings.Contains(s.LastError, want) {
			t.Errorf("%s: last_error %q, want it to say %q", name, s.LastError, want)
		}
		if strings.Contains(s.LastError, cfg.Password) {
			t.Errorf("%s: last_error shows the password", name)
		}
		if s.Connected || s.Connects != 0 || s.LastErrorAt.IsZero() {
			t.Errorf("%s: status %+v, want never connected with an error time", name, s)
		}
		if s.Outbox.Depth != depth {
			t.Errorf("%s: outbox depth %d, want %d (nothing lost)", name, s.Outbox.Depth, depth)
		}
	}

	for i := range 5 {
		if err := ob.Append("test", ClassTelemetry, map[string]int{"n": i}); err != nil {
			t.Fatal(err)
		}
	}
	// (b) A broker whose certificate does not chain to ca_file.
	wrongCA := base
	wrongCA.CAFile = otherCA
	refused("wrong CA", wrongCA, "certificate is not trusted (uplink.ca_file", 5)
	// (c) A wrong password.
	wrongPW := base
	wrongPW.Password = "not-the-secret"
	refused("wrong password", wrongPW, "refused the credentials (uplink.username \"thon-3\", uplink.password_file)", 5)
	if got := r.unique(); got != 0 {
		t.Fatalf("the receiver got %d events before any good connection", got)
	}

	// (a) The right CA and credentials: every event, kept through the
	// refusals, and one appended while connected, arrive over TLS.
	c, err := New(base, ob, nil, testLog)
	if err != nil {
		t.Fatal(err)
	}
	runClient(t, c)
	eventually(t, 30*time.Second, "uplink connected over TLS", c.Connected)
	if err := ob.Append("test", ClassTelemetry, map[string]int{"n": 5}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "6 events at the commune", func() bool { return r.unique() == 6 })
	for i, e := range r.events() {
		var d struct{ N int }
		json.Unmarshal(e.Data, &d)
		if d.N != i || e.Site != "thon-3" {
			t.Errorf("event %d: site %q n %d, want thon-3 n %d", i, e.Site, d.N, i)
		}
	}
	eventually(t, 30*time.Second, "outbox drained", func() bool { return ob.Stats().Depth == 0 })

	// The ACL binds the topic tree to the username: with the village's
	// credentials, an event for another village is dropped by the broker
	// (MQTT 3.1.1 has no negative PUBACK), one for its own site arrives.
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.pem)
	other := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL()).SetClientID("thon-3-impostor").SetUsername("thon-3").
		SetPassword("village-secret").SetProtocolVersion(4).SetTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}))
	if tok := other.Connect(); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		t.Fatalf("second client: %v", tok.Error())
	}
	defer other.Disconnect(100)
	for _, site := range []string{"thon-4", "thon-3"} {
		ev, _ := json.Marshal(Event{ID: "acl-" + site, Site: site, Kind: "test", Data: json.RawMessage(`{}`)})
		if tok := other.Publish("loalang/v1/hanoi/xa-1/"+site+"/events", 1, false, ev); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
			t.Fatalf("publish as %s: %v", site, tok.Error())
		}
	}
	eventually(t, 30*time.Second, "the event on the village's own topic", func() bool { return r.unique() == 7 })
	for _, e := range r.events() {
		if e.ID == "acl-thon-4" {
			t.Fatal("the ACL let thon-3's credentials publish as thon-4")
		}
	}
	// The broker saw the configured client id with the username it is
	// bound to (Mosquitto's connection message: "as <client id> (... u'<username>')").
	eventually(t, 10*time.Second, "the broker's connection message", func() bool {
		for _, l := range strings.Split(b.log.String(), "\n") {
			if strings.Contains(l, "New client connected") && strings.Contains(l, " as thon-3 ") && strings.Contains(l, "u'thon-3'") {
				return true
			}
		}
		return false
	})
}
