package daemon_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/daemon"
	"github.com/loalang/loalang/device/wire"
)

// mqttProbe is the probe period some tests run the daemon with, to keep
// them quick; TestMQTTDeafControllerMosquitto uses the production period.
const mqttProbe = time.Second

// healthProblems returns /healthz's status code and the components it names.
func healthProblems(c *client) (int, map[string]string) {
	code, body := c.do("GET", "/healthz", nil)
	var h struct {
		Problems []struct{ Component, Reason string }
	}
	_ = json.Unmarshal(body, &h)
	out := map[string]string{}
	for _, p := range h.Problems {
		out[p.Component] = p.Reason
	}
	return code, out
}

// metricLine reports whether /metrics has the exact sample line.
func metricLine(c *client, line string) bool {
	_, body := c.do("GET", "/metrics", nil)
	return bytes.Contains(body, []byte("\n"+line+"\n"))
}

// externalMosquitto runs a real Mosquitto on the configuration loalangd
// writes for cfg and points cfg at it. It returns the config directory and
// the process, which the test stops by pid (lifecycle_test.go).
func externalMosquitto(t *testing.T, cfg *config.Config) (string, *exec.Cmd) {
	t.Helper()
	m := newMosquitto(t, cfg)
	m.start()
	return filepath.Dir(m.conf), m.cmd
}

// TestMQTTDeafControllerMosquitto takes the controller's read access away
// on a running Mosquitto (ACL edit + SIGHUP): the connection stays up and
// answers pings, but nothing is delivered, which is how the takeover left
// loalangd. /healthz must turn 503 naming mqtt within 10 s, the metrics must
// say connected but not delivering, and all must clear once delivery is back.
// It runs with the production probe period (bus.DefaultProbeInterval).
func TestMQTTDeafControllerMosquitto(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), 3)
	dir, mosq := externalMosquitto(t, &cfg)
	d := startDaemon(t, cfg)
	startSpeakers(t, cfg.DataDir, nil)
	admin := login(t, "http://"+d.Ready().HTTP, "admin", adminPassword(t, cfg.DataDir))
	eventually(t, 15*time.Second, "speakers online", allOnline(admin, 3))
	eventually(t, 10*time.Second, "healthy", func() bool { code, _ := healthProblems(admin); return code == 200 })

	aclPath := filepath.Join(dir, "acl")
	acl, err := os.ReadFile(aclPath)
	if err != nil {
		t.Fatal(err)
	}
	full := "topic readwrite loalang/v1/test/#"
	if !bytes.Contains(acl, []byte(full)) {
		t.Fatalf("acl has no %q:\n%s", full, acl)
	}
	setACL := func(b []byte) {
		t.Helper()
		if err := os.WriteFile(aclPath, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := mosq.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	setACL(bytes.Replace(acl, []byte(full), []byte("topic write loalang/v1/test/#"), 1))
	took := eventually(t, 10*time.Second, "/healthz 503 naming mqtt", func() bool {
		code, probs := healthProblems(admin)
		return code == 503 && strings.Contains(probs["mqtt"], "deliver")
	})
	t.Logf("deaf controller reported after %v", took)
	// Connected, yet not delivering. The client reconnects now and then while
	// deaf (backoff), so poll for a reading between two reconnects.
	deafMetrics := func() bool {
		return metricLine(admin, "loalang_mqtt_connected 1") && metricLine(admin, "loalang_mqtt_subscriptions_ok 0") &&
			metricLine(admin, `loalang_component_up{component="mqtt"} 0`)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !deafMetrics() {
		if time.Now().After(deadline) {
			_, body := admin.do("GET", "/metrics", nil)
			t.Fatalf("metrics while deaf:\n%s", grepLines(body, "loalang_mqtt_", "component=\"mqtt\""))
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}

	setACL(acl)
	took = eventually(t, 10*time.Second, "/healthz 200 again", func() bool { code, _ := healthProblems(admin); return code == 200 })
	t.Logf("recovered %v after the ACL came back", took)
	if !metricLine(admin, "loalang_mqtt_subscriptions_ok 1") {
		t.Error("loalang_mqtt_subscriptions_ok not 1 after recovery")
	}
	// Delivery really works: a ping needs the speaker's reply to arrive.
	if code, body := admin.do("POST", "/api/v1/devices/spk-01/ping", nil); code != 200 {
		t.Fatalf("ping after recovery: %d %s", code, body)
	}
}

// TestMQTTSpeakerCannotTakeOverController is the reported attack against a
// running daemon on both brokers: a speaker's credentials under the
// controller's client id are refused, and the controller notices nothing.
func TestMQTTSpeakerCannotTakeOverController(t *testing.T) {
	for _, external := range []bool{false, true} {
		name := "embedded"
		if external {
			name = "mosquitto"
		}
		t.Run(name, func(t *testing.T) {
			daemon.SetMQTTProbeInterval(t, mqttProbe)
			cfg := testConfig(t, t.TempDir(), 3)
			if external {
				externalMosquitto(t, &cfg)
			}
			d := startDaemon(t, cfg)
			startSpeakers(t, cfg.DataDir, nil)
			admin := login(t, "http://"+d.Ready().HTTP, "admin", adminPassword(t, cfg.DataDir))
			eventually(t, 15*time.Second, "speakers online", allOnline(admin, 3))
			_, _, ctlID := daemon.MQTTIdentity(d)

			b := readBundle(t, cfg.DataDir)
			dev := b.Devices[0]
			intruder := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.Broker).SetClientID(ctlID).
				SetUsername(dev.Username).SetPassword(dev.Password).SetProtocolVersion(4).SetAutoReconnect(false))
			tok := intruder.Connect()
			if !tok.WaitTimeout(10 * time.Second) {
				t.Fatal("intruder connect timed out")
			}
			if tok.Error() == nil {
				intruder.Disconnect(0)
				t.Fatalf("%s's credentials accepted under the controller's client id %q", dev.Username, ctlID)
			}
			// The controller was never disturbed: its MQTT component stays
			// healthy for several probe periods, and a ping round trip works.
			for range 4 {
				if _, probs := healthProblems(admin); probs["mqtt"] != "" {
					t.Fatalf("mqtt health after the refused takeover: %q", probs["mqtt"])
				}
				time.Sleep(mqttProbe) // spans probe periods; not a readiness wait
			}
			if code, body := admin.do("POST", "/api/v1/devices/"+dev.ID+"/ping", nil); code != 200 {
				t.Fatalf("ping: %d %s", code, body)
			}
		})
	}
}

// TestMQTTOwnIdentityTakeoverRecovers replays the reported sequence with
// the one login still allowed to use the controller's client id, its own:
// a second connection as the controller, on and off for 3 s, as a stale
// duplicate instance or a half-open connection would. Afterwards the
// controller must be healthy again by itself within 10 s and hear the
// speakers (on mochi v2.7.9 it used to stay deaf until restarted).
func TestMQTTOwnIdentityTakeoverRecovers(t *testing.T) {
	daemon.SetMQTTProbeInterval(t, mqttProbe)
	cfg := testConfig(t, t.TempDir(), 3)
	d := startDaemon(t, cfg)
	startSpeakers(t, cfg.DataDir, nil)
	admin := login(t, "http://"+d.Ready().HTTP, "admin", adminPassword(t, cfg.DataDir))
	eventually(t, 15*time.Second, "speakers online", allOnline(admin, 3))
	user, pass, id := daemon.MQTTIdentity(d)

	var (
		mu     sync.Mutex
		sawBad bool
		stop   = make(chan struct{})
		polled = make(chan struct{})
	)
	go func() { // watch /healthz while the duplicate flaps
		defer close(polled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if code, _ := healthProblems(admin); code == 503 {
				mu.Lock()
				sawBad = true
				mu.Unlock()
			}
		}
	}()
	end := time.Now().Add(3 * time.Second)
	for rounds := 0; time.Now().Before(end); rounds++ {
		dup := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + d.Ready().MQTT).SetClientID(id).
			SetUsername(user).SetPassword(pass).SetProtocolVersion(4).SetAutoReconnect(false))
		if tok := dup.Connect(); tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
			time.Sleep(300 * time.Millisecond) // hold the session a while, as the intruder did
			dup.Disconnect(0)
		}
	}
	took := eventually(t, 10*time.Second, "healthy again by itself", func() bool { code, _ := healthProblems(admin); return code == 200 })
	close(stop)
	<-polled
	mu.Lock()
	t.Logf("healthy %v after the duplicate left (health went bad meanwhile: %v)", took, sawBad)
	mu.Unlock()
	// It hears the speakers: a ping needs the reply delivered to it.
	eventually(t, 10*time.Second, "ping answered", func() bool {
		code, _ := admin.do("POST", "/api/v1/devices/spk-02/ping", nil)
		return code == 200
	})
	if !metricLine(admin, "loalang_mqtt_subscriptions_ok 1") {
		t.Error("loalang_mqtt_subscriptions_ok not 1 after recovery")
	}
}

func readBundle(t *testing.T, dir string) wire.Bundle {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, daemon.BundleFile))
	if err != nil {
		t.Fatal(err)
	}
	var b wire.Bundle
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	return b
}

// grepLines returns the lines of body containing any of subs.
func grepLines(body []byte, subs ...string) string {
	var out []string
	for _, l := range strings.Split(string(body), "\n") {
		for _, s := range subs {
			if strings.Contains(l, s) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
