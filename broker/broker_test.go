package broker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

const (
	prefix      = "loalang/v1/demo/"
	mosquitto   = "/usr/sbin/mosquitto"
	waitTimeout = 5 * time.Second
)

// creds are the secrets behind a test rule set.
type creds struct {
	svc, d1, d2 string
	rules       Rules
}

// newCreds makes random secrets, hashes them and builds testRules from them.
func newCreds(t *testing.T) creds {
	t.Helper()
	c := creds{svc: secret(t), d1: secret(t), d2: secret(t)}
	c.rules = testRules(mustHash(t, c.svc), mustHash(t, c.d1), mustHash(t, c.d2))
	return c
}

// secret returns a random 128-bit token like provisioning makes.
func secret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func mustHash(t *testing.T, s string) string {
	t.Helper()
	h, err := HashPassword(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// testLogger sends broker logs to the test log until the test's cleanups have
// run; mochi may log from a goroutine that outlives Close by a moment.
func testLogger(t *testing.T) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

// startEmbedded starts the embedded broker on a free loopback port.
func startEmbedded(t *testing.T, r Rules) *Embedded {
	t.Helper()
	e, err := NewEmbedded(EmbeddedConfig{Addr: "127.0.0.1:0"}, r, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return e
}

// mosquittoProc is a Mosquitto process owned by a test.
type mosquittoProc struct {
	addr, dir string
	cmd       *exec.Cmd
	exited    chan error
	out       *lockedBuffer
}

// startMosquitto runs a real Mosquitto with WriteMosquittoConfig's files on a
// free loopback port, or skips the test if Mosquitto is not installed.
func startMosquitto(t *testing.T, r Rules) *mosquittoProc {
	t.Helper()
	if _, err := os.Stat(mosquitto); err != nil {
		t.Logf("SKIPPING the Mosquitto half: %s is absent (apt-get install mosquitto)", mosquitto)
		t.Skipf("%s absent", mosquitto)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	dir := t.TempDir()
	if err := WriteMosquittoConfig(dir, r, addr); err != nil {
		t.Fatal(err)
	}
	m := &mosquittoProc{addr: addr, dir: dir}
	m.launch(t)
	t.Cleanup(func() { m.stop(t) })
	return m
}

// launch starts the process on the written config and waits until it accepts.
func (m *mosquittoProc) launch(t *testing.T) {
	t.Helper()
	m.out = &lockedBuffer{}
	m.cmd = exec.Command(mosquitto, "-c", filepath.Join(m.dir, MosquittoConfFile))
	m.cmd.Stdout = m.out
	m.cmd.Stderr = m.out
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m.exited = make(chan error, 1)
	go func(cmd *exec.Cmd, exited chan<- error) { exited <- cmd.Wait() }(m.cmd, m.exited)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", m.addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case err := <-m.exited:
			m.exited <- err
			t.Fatalf("mosquitto exited early: %v\n%s", err, m.out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto not accepting on %s: %v\n%s", m.addr, err, m.out.String())
		}
	}
}

// stop ends the process (by its pid) and logs its output.
func (m *mosquittoProc) stop(t *testing.T) {
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(waitTimeout):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
	t.Logf("mosquitto output:\n%s", m.out.String())
	m.cmd = nil
}

// restart stops and starts the process on the same address and files.
func (m *mosquittoProc) restart(t *testing.T) {
	t.Helper()
	m.stop(t)
	m.launch(t)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// msg is one received message.
type msg struct {
	topic    string
	payload  string
	retained bool
}

// recorder collects messages from a paho handler without blocking it.
type recorder struct {
	mu     sync.Mutex
	msgs   []msg
	notify chan struct{}
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 1)} }

func (r *recorder) handle(_ paho.Client, m paho.Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, msg{m.Topic(), string(m.Payload()), m.Retained()})
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// find returns the first message with the payload.
func (r *recorder) find(payload string) (msg, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.msgs {
		if m.payload == payload {
			return m, true
		}
	}
	return msg{}, false
}

// wait waits until a message with payload arrives (true), abort is closed or
// the timeout passes (false).
func (r *recorder) wait(payload string, abort <-chan struct{}) (msg, bool) {
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	for {
		if m, ok := r.find(payload); ok {
			return m, true
		}
		select {
		case <-r.notify:
		case <-abort:
			return msg{}, false
		case <-timer.C:
			return msg{}, false
		}
	}
}

// client is a paho client with its recorder and a channel closed on connection loss.
type client struct {
	paho.Client
	rec  *recorder
	lost chan struct{}
}

// ownClientID is the client id the brokers accept for a test account: the
// service account's ServiceClientID, a device's id, anything for others.
func ownClientID(user string) string {
	if user == ServiceUsername {
		return ServiceClientID("demo")
	}
	return user
}

// dial connects an MQTT 3.1.1 client. user "" connects anonymously.
func dial(t *testing.T, addr, user, pass string, opt func(*paho.ClientOptions)) (*client, error) {
	t.Helper()
	c := &client{rec: newRecorder(), lost: make(chan struct{})}
	var once sync.Once
	o := paho.NewClientOptions().
		AddBroker("tcp://" + addr).
		SetClientID(ownClientID(user)).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(waitTimeout).
		SetWriteTimeout(waitTimeout).
		SetKeepAlive(30 * time.Second).
		SetDefaultPublishHandler(c.rec.handle).
		SetConnectionLostHandler(func(paho.Client, error) { once.Do(func() { close(c.lost) }) })
	if user != "" {
		o.SetUsername(user).SetPassword(pass)
	}
	if opt != nil {
		opt(o)
	}
	c.Client = paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(waitTimeout) {
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c, nil
}

func mustDial(t *testing.T, addr, user, pass string) *client {
	t.Helper()
	c, err := dial(t, addr, user, pass, nil)
	if err != nil {
		t.Fatalf("connect %s: %v", user, err)
	}
	return c
}

// subscribe subscribes and returns the SUBACK return code (0x80 = refused).
func (c *client) subscribe(t *testing.T, filter string) byte {
	t.Helper()
	tok := c.Subscribe(filter, 1, c.rec.handle)
	if !tok.WaitTimeout(waitTimeout) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	return tok.(*paho.SubscribeToken).Result()[filter]
}

// publish publishes and waits until the packet is written (QoS 0) or acked
// (QoS 1). It reports false if the client could not publish.
func (c *client) publish(topic string, qos byte, retain bool, payload string) bool {
	tok := c.Publish(topic, qos, retain, payload)
	select {
	case <-tok.Done():
		return tok.Error() == nil
	case <-c.lost:
		return false
	case <-time.After(waitTimeout):
		return false
	}
}

// runMatrix checks one broker at addr against the rules in c: the same
// allow/deny expectations for every broker, derived from Rules.Allowed.
func runMatrix(t *testing.T, addr string, c creds) {
	svc := mustDial(t, addr, ServiceUsername, c.svc)
	if code := svc.subscribe(t, prefix+"#"); code != 1 {
		t.Fatalf("service subscribe %s# = %#x, want granted QoS 1", prefix, code)
	}

	t.Run("connect", func(t *testing.T) {
		for _, tc := range []struct{ name, user, pass string }{
			{"anonymous", "", ""},
			{"wrong password", "d1", c.d2},
			{"empty password", "d1", ""},
			{"unknown user", "d3", c.d1},
			{"service name with device secret", ServiceUsername, c.d1},
		} {
			if cl, err := dial(t, addr, tc.user, tc.pass, nil); err == nil {
				cl.Disconnect(0)
				t.Errorf("%s: connect accepted, want refused", tc.name)
			}
		}
		// A will on another device's topic: mochi refuses the CONNECT,
		// Mosquitto accepts it and drops the will when it would be sent.
		proxy := newKillProxy(t, addr)
		forged := "forged-" + secret(t)
		d1, err := dial(t, proxy.Addr(), "d1", c.d1, func(o *paho.ClientOptions) {
			o.SetWill(prefix+"dev/d2/status", forged, 1, true)
		})
		if err != nil {
			t.Logf("connect with a will on dev/d2/status refused: %v", err)
			return
		}
		proxy.Kill()
		<-d1.lost
		// The FIN reached the broker before the marker connection even
		// started, and a new connection needs several event-loop rounds
		// (accept, CONNECT, PUBLISH), so the will decision precedes the marker.
		marker := "marker-" + forged
		d1b := mustDial(t, addr, "d1", c.d1)
		if !d1b.publish(prefix+"dev/d1/heartbeat", 1, false, marker) {
			t.Fatal("marker publish failed")
		}
		if _, ok := svc.rec.wait(marker, nil); !ok {
			t.Fatal("marker not received")
		}
		if _, got := svc.rec.find(forged); got {
			t.Error("will on dev/d2/status was delivered, want dropped")
		}
	})

	t.Run("publish", func(t *testing.T) {
		for i, tc := range []struct {
			topic  string
			qos    byte
			retain bool
		}{
			{prefix + "dev/d1/status", 1, true},
			{prefix + "dev/d1/heartbeat", 0, false},
			{prefix + "dev/d1/reply", 1, false},
			{prefix + "dev/d1/report", 1, false},
			{prefix + "dev/d1/clock", 0, false},
			{prefix + "dev/d2/status", 0, true},
			{prefix + "dev/d2/reply", 0, false},
			{prefix + "dev/d2/cmd", 1, false}, // mochi disconnects a v3 client for this
			{prefix + "zone/z1/audio", 0, false},
			{prefix + "zone/z1/stream", 1, false},
		} {
			want := c.rules.Allowed("d1", tc.topic, true)
			payload := fmt.Sprintf("pub-%d-%s", i, secret(t))
			d1 := mustDial(t, addr, "d1", c.d1)
			published := d1.publish(tc.topic, tc.qos, tc.retain, payload)
			// Order on one connection is preserved, so once the marker from the
			// same connection arrives the payload has arrived or never will. If
			// the broker dropped the connection instead, the service account
			// sends the marker after the drop was seen.
			marker := "marker-" + payload
			if published && d1.publish(prefix+"dev/d1/heartbeat", 0, false, marker) {
				if _, ok := svc.rec.wait(marker, d1.lost); ok {
					goto check
				}
			}
			select {
			case <-d1.lost:
				t.Logf("publish %s (QoS %d): broker closed the connection", tc.topic, tc.qos)
			case <-time.After(waitTimeout):
				t.Fatalf("publish %s: neither marker nor disconnect", tc.topic)
			}
			if !svc.publish(prefix+"dev/d1/heartbeat", 0, false, marker) {
				t.Fatal("service marker publish failed")
			}
			if _, ok := svc.rec.wait(marker, nil); !ok {
				t.Fatal("service marker not received")
			}
		check:
			_, got := svc.rec.find(payload)
			if got != want {
				t.Errorf("d1 publish %s (QoS %d): received=%v, want %v", tc.topic, tc.qos, got, want)
			}
			d1.Disconnect(0)
		}
	})

	t.Run("subscribe", func(t *testing.T) {
		for i, tc := range []struct{ filter, topic string }{
			{prefix + "dev/d1/cmd", prefix + "dev/d1/cmd"},
			{prefix + "dev/d1/time", prefix + "dev/d1/time"},
			{prefix + "zone/z1/stream", prefix + "zone/z1/stream"},
			{prefix + "zone/z2/audio", prefix + "zone/z2/audio"},
			{prefix + "dev/d2/cmd", prefix + "dev/d2/cmd"},
			{prefix + "dev/d2/time", prefix + "dev/d2/time"},
			{prefix + "dev/d1/status", prefix + "dev/d1/status"},
			{prefix + "zone/z3/audio", prefix + "zone/z3/audio"},
			{prefix + "#", prefix + "dev/d2/cmd"},
			{prefix + "dev/+/cmd", prefix + "dev/d2/cmd"},
			{prefix + "zone/+/audio", prefix + "zone/z3/audio"},
		} {
			want := c.rules.Allowed("d1", tc.filter, false)
			d1 := mustDial(t, addr, "d1", c.d1)
			if code := d1.subscribe(t, prefix+"dev/d1/cmd"); code != 1 {
				t.Fatalf("d1 subscribe own cmd = %#x", code)
			}
			code := d1.subscribe(t, tc.filter)
			if want && code != 1 {
				t.Errorf("d1 subscribe %s = %#x, want granted QoS 1", tc.filter, code)
			}
			payload := fmt.Sprintf("sub-%d-%s", i, secret(t))
			marker := "marker-" + payload
			if !svc.publish(tc.topic, 1, false, payload) || !svc.publish(prefix+"dev/d1/cmd", 1, false, marker) {
				t.Fatal("service publish failed")
			}
			if _, ok := d1.rec.wait(marker, d1.lost); !ok {
				t.Fatalf("subscribe %s: marker not received by d1", tc.filter)
			}
			if !want {
				t.Logf("subscribe %s: SUBACK %#x", tc.filter, code)
			}
			if _, got := d1.rec.find(payload); got != want {
				t.Errorf("d1 subscribed %s (SUBACK %#x), message on %s received=%v, want %v",
					tc.filter, code, tc.topic, got, want)
			}
			d1.Disconnect(0)
		}
	})

	t.Run("will", func(t *testing.T) {
		proxy := newKillProxy(t, addr)
		payload := "offline-" + secret(t)
		d1, err := dial(t, proxy.Addr(), "d1", c.d1, func(o *paho.ClientOptions) {
			o.SetWill(prefix+"dev/d1/status", payload, 1, true)
		})
		if err != nil {
			t.Fatalf("connect with own will: %v", err)
		}
		proxy.Kill() // the broker sees the TCP connection end without DISCONNECT
		if _, ok := svc.rec.wait(payload, nil); !ok {
			t.Fatal("will not delivered after the connection was killed")
		}
		<-d1.lost
		// The will was retained: a new subscriber gets it at once.
		late := mustDial(t, addr, ServiceUsername, c.svc)
		late.subscribe(t, prefix+"dev/d1/status")
		m, ok := late.rec.wait(payload, nil)
		if !ok || !m.retained {
			t.Fatalf("retained will: got %+v ok=%v, want retained %q", m, ok, payload)
		}
	})
}

func TestEmbeddedMatrix(t *testing.T) {
	c := newCreds(t)
	e := startEmbedded(t, c.rules)
	runMatrix(t, e.Addr(), c)
}

func TestMosquittoMatrix(t *testing.T) {
	c := newCreds(t)
	m := startMosquitto(t, c.rules)
	runMatrix(t, m.addr, c)
}

// killProxy forwards TCP to a target and can cut every connection at once,
// which the broker sees as a network failure rather than a DISCONNECT.
type killProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newKillProxy(t *testing.T, target string) *killProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &killProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.Kill()
		p.wg.Wait()
	})
	return p
}

func (p *killProxy) Addr() string { return p.ln.Addr().String() }

func (p *killProxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

func (p *killProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	_, _ = io.Copy(dst, src)
	dst.Close()
	src.Close()
}

// Kill closes every proxied connection in both directions.
func (p *killProxy) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func TestEmbeddedSetRules(t *testing.T) {
	c := newCreds(t)
	e := startEmbedded(t, c.rules)
	svc := mustDial(t, e.Addr(), ServiceUsername, c.svc)
	svc.subscribe(t, prefix+"dev/+/status")

	d3secret := secret(t)
	if _, err := dial(t, e.Addr(), "d3", d3secret, nil); err == nil {
		t.Fatal("unprovisioned d3 accepted")
	}
	withD3 := c.rules
	withD3.Accounts = append(append([]Account(nil), c.rules.Accounts...),
		Account{Username: "d3", PasswordHash: mustHash(t, d3secret), Role: RoleDevice, Zones: []string{"z1"}})
	if err := e.SetRules(withD3); err != nil {
		t.Fatal(err)
	}
	d3 := mustDial(t, e.Addr(), "d3", d3secret)
	if !d3.publish(prefix+"dev/d3/status", 1, false, "d3-online") {
		t.Fatal("d3 publish failed")
	}
	if _, ok := svc.rec.wait("d3-online", nil); !ok {
		t.Fatal("d3 status not received after SetRules")
	}
	// d1's unrelated connection survives the update.
	d1 := mustDial(t, e.Addr(), "d1", c.d1)

	bad := withD3
	bad.Site = "a/b"
	if err := e.SetRules(bad); !errors.Is(err, ErrInvalidRules) {
		t.Fatalf("SetRules(invalid) = %v, want ErrInvalidRules", err)
	}

	// Removing d3 revokes its live connection and its next login.
	if err := e.SetRules(c.rules); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d3.lost:
	case <-time.After(waitTimeout):
		t.Fatal("revoked d3 still connected")
	}
	if _, err := dial(t, e.Addr(), "d3", d3secret, nil); err == nil {
		t.Fatal("revoked d3 accepted")
	}
	select {
	case <-d1.lost:
		t.Fatal("d1 disconnected by an unrelated rules change")
	default:
	}
	if !d1.publish(prefix+"dev/d1/status", 1, false, "d1-still-here") {
		t.Fatal("d1 publish failed")
	}
	if _, ok := svc.rec.wait("d1-still-here", nil); !ok {
		t.Fatal("d1 status not received after SetRules")
	}
}

// TestMosquittoAccountChange checks the documented way to change accounts
// on Mosquitto: rewrite the files, then restart it (the dynamic security
// plugin reads accounts only at start; a SIGHUP reloads only the acl file).
func TestMosquittoAccountChange(t *testing.T) {
	c := newCreds(t)
	m := startMosquitto(t, c.rules)
	d3secret := secret(t)
	if _, err := dial(t, m.addr, "d3", d3secret, nil); err == nil {
		t.Fatal("unprovisioned d3 accepted")
	}
	withD3 := c.rules
	withD3.Accounts = append(append([]Account(nil), c.rules.Accounts...),
		Account{Username: "d3", PasswordHash: mustHash(t, d3secret), Role: RoleDevice})
	if err := WriteMosquittoConfig(m.dir, withD3, m.addr); err != nil {
		t.Fatal(err)
	}
	m.restart(t)
	if _, err := dial(t, m.addr, "d3", d3secret, nil); err != nil {
		t.Fatalf("d3 refused after restart: %v", err)
	}
	if _, err := dial(t, m.addr, "d3", d3secret, func(o *paho.ClientOptions) { o.SetClientID("d1") }); err == nil {
		t.Fatal("d3 accepted under d1's client id after restart")
	}
	// Removing d3 again revokes it at the next restart.
	if err := WriteMosquittoConfig(m.dir, c.rules, m.addr); err != nil {
		t.Fatal(err)
	}
	m.restart(t)
	if _, err := dial(t, m.addr, "d3", d3secret, nil); err == nil {
		t.Fatal("removed d3 accepted after restart")
	}
}

func TestEmbeddedLifecycle(t *testing.T) {
	c := newCreds(t)
	ctx, cancel := context.WithCancel(context.Background())
	e, err := NewEmbedded(EmbeddedConfig{Addr: "127.0.0.1:0"}, c.rules, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.Addr() != "" {
		t.Fatalf("Addr before Start = %q", e.Addr())
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); !errors.Is(err, ErrStarted) {
		t.Fatalf("second Start = %v, want ErrStarted", err)
	}
	d1 := mustDial(t, e.Addr(), "d1", c.d1)
	cancel() // cancelling the Start context stops the broker
	select {
	case <-d1.lost:
	case <-time.After(waitTimeout):
		t.Fatal("client still connected after context cancel")
	}
	if err := e.Close(); err != nil {
		t.Fatalf("Close after cancel = %v", err)
	}
	if err := e.Start(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Start after Close = %v, want ErrClosed", err)
	}
	if _, err := NewEmbedded(EmbeddedConfig{}, Rules{Site: "#"}, nil); !errors.Is(err, ErrInvalidRules) {
		t.Fatalf("NewEmbedded(invalid) = %v, want ErrInvalidRules", err)
	}
}

// TestEmbeddedBrokerStats: Stats counts what the broker carried, the
// figures behind loalangd's loalang_broker_* metrics. One QoS 1 publish
// to two subscribers is one message received and two sent.
func TestEmbeddedBrokerStats(t *testing.T) {
	c := newCreds(t)
	e, err := NewEmbedded(EmbeddedConfig{Addr: "127.0.0.1:0"}, c.rules, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if s := e.Stats(); s != (Stats{}) {
		t.Fatalf("Stats before Start = %+v, want zero", s)
	}
	if err := e.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	svc := mustDial(t, e.Addr(), ServiceUsername, c.svc)
	svc.subscribe(t, prefix+"#")
	d1 := mustDial(t, e.Addr(), "d1", c.d1)
	d1.subscribe(t, prefix+"zone/z1/stream")
	before := e.Stats()
	if before.ClientsConnected != 2 {
		t.Errorf("ClientsConnected = %d, want 2", before.ClientsConnected)
	}
	if !svc.publish(prefix+"zone/z1/stream", 1, false, "counted") {
		t.Fatal("service publish failed")
	}
	if _, ok := svc.rec.wait("counted", nil); !ok {
		t.Fatal("service did not receive its own message")
	}
	if _, ok := d1.rec.wait("counted", nil); !ok {
		t.Fatal("d1 did not receive the message")
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		s := e.Stats()
		in, out := s.MessagesReceived-before.MessagesReceived, s.MessagesSent-before.MessagesSent
		if in == 1 && out == 2 && s.PacketsReceived > before.PacketsReceived && s.PacketsSent > before.PacketsSent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after one publish to two subscribers: messages in %d out %d (stats %+v, before %+v)", in, out, s, before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
