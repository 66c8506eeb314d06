package daemon_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
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
	"github.com/loalang/loalang/internal/audiotest"
	"github.com/loalang/loalang/uplink"
)

// startUpstreamMosquitto runs a Mosquitto as the commune's broker (its own
// process, config and port, apart from the village's embedded broker)
// until the test ends, and returns its address.
func startUpstreamMosquitto(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("mosquitto is not installed (make deps installs it): %v", err)
		}
	}
	addr := freePort(t)
	host, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(t.TempDir(), "commune.conf")
	os.WriteFile(conf, []byte("listener "+port+" "+host+"\nallow_anonymous true\npersistence false\n"), 0o600)
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stderr = testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGTERM); cmd.Wait() })
	eventually(t, 10*time.Second, "mosquitto listening", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr
}

// commune is the upstream side: it publishes commands and reads the
// village's events, de-duplicated by id.
type commune struct {
	t    *testing.T
	pc   mqtt.Client
	mu   sync.Mutex
	seen map[string]bool
	evs  []uplink.Event
}

func newCommune(t *testing.T, addr, eventsTopic string) *commune {
	c := &commune{t: t, seen: map[string]bool{}}
	c.pc = mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("commune-desk"))
	if tok := c.pc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("commune connect: %v", tok.Error())
	}
	tok := c.pc.Subscribe(eventsTopic, 1, func(_ mqtt.Client, m mqtt.Message) {
		var e uplink.Event
		if json.Unmarshal(m.Payload(), &e) != nil {
			t.Errorf("bad event %q", m.Payload())
			return
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.seen[e.ID] {
			c.seen[e.ID] = true
			c.evs = append(c.evs, e)
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("commune subscribe: %v", tok.Error())
	}
	t.Cleanup(func() { c.pc.Disconnect(100) })
	return c
}

func (c *commune) publish(topic string, payload []byte) {
	if tok := c.pc.Publish(topic, 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		c.t.Fatalf("commune publish: %v", tok.Error())
	}
}

// reports returns the command reports received for id.
func (c *commune) reports(id string) []uplink.Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []uplink.Report
	for _, e := range c.evs {
		var r uplink.Report
		if e.Kind == "command" && json.Unmarshal(e.Data, &r) == nil && r.CommandID == id {
			out = append(out, r)
		}
	}
	return out
}

func (c *commune) has(kind, needle string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.evs {
		if e.Kind == kind && strings.Contains(string(e.Data), needle) {
			return true
		}
	}
	return false
}

func outcome(rs []uplink.Report, o string) (uplink.Report, bool) {
	for _, r := range rs {
		if r.Outcome == o {
			return r, true
		}
	}
	return uplink.Report{}, false
}

// TestUplinkEmergencyPreemptsOverMosquitto is issue 13's end to end: the
// village's uplink connects to a real Mosquitto started by the test; a
// province-signed emergency published there, with its media fetched by
// URL and hash, pre-empts a normal broadcast on the simulated speakers;
// accepted, started and played (per speaker) are reported back up with
// the audit trail, a replay and a forgery are refused and reported, and
// GET /api/v1/uplink and /metrics say so.
func TestUplinkEmergencyPreemptsOverMosquitto(t *testing.T) {
	upstream := startUpstreamMosquitto(t)
	pub, priv, _ := ed25519.GenerateKey(nil)
	cfg := testConfig(t, t.TempDir(), 6)
	cfg.Uplink = config.Uplink{URL: "tcp://" + upstream, ClientID: "thon-test", Province: "hanoi", Commune: "xa-1",
		ProvinceKeys: []string{uplink.PublicKeyString(pub)}, MediaAllow: []string{"127.0.0.1/32"}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	topics, _ := uplink.NewTopics("hanoi", "xa-1", cfg.Site)
	desk := newCommune(t, upstream, topics.Events())

	// The province's media server.
	wav := audiotest.WAV(audiotest.Tone(1500, 0.5, 16000, 3000), 16000, 1)
	sum := sha256.Sum256(wav)
	media := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(wav) }))
	defer media.Close()

	d := startDaemon(t, cfg)
	speakers := startSpeakers(t, cfg.DataDir, nil)
	c := login(t, "http://"+d.Ready().HTTP, "admin", adminPassword(t, cfg.DataDir))
	eventually(t, 20*time.Second, "speakers ready", func() bool {
		for _, s := range speakers {
			if !s.Ready() {
				return false
			}
		}
		return true
	})
	eventually(t, 20*time.Second, "uplink connected", func() bool {
		_, body := c.do("GET", "/api/v1/uplink", nil)
		var s uplink.Status
		json.Unmarshal(body, &s)
		return s.Connected
	})

	// A long normal broadcast in every zone.
	code, body := c.upload("long.wav", audiotest.WAV(audiotest.Tone(440, 0.5, 16000, 30000), 16000, 1))
	if code != 201 {
		t.Fatalf("upload: %d %s", code, body)
	}
	var info struct{ ID string }
	json.Unmarshal(body, &info)
	code, body = c.do("POST", "/api/v1/broadcasts", map[string]any{"media_id": info.ID, "zones": []string{"a", "b", "c"}, "priority": "normal"})
	if code != 201 {
		t.Fatalf("broadcast: %d %s", code, body)
	}
	var normal broadcastView
	json.Unmarshal(body, &normal)
	eventually(t, 15*time.Second, "normal playing", func() bool { return c.broadcast(normal.ID).State == "playing" })

	now := time.Now().UTC()
	cmd := uplink.Command{V: 1, ID: "storm-1", Nonce: uplink.NewNonce(), Level: uplink.LevelProvince, Sender: "hanoi",
		Issued: now, Expires: now.Add(10 * time.Minute), Target: uplink.Target{Province: "hanoi", Commune: "xa-1"},
		Urgency: uplink.UrgencyEmergency, Media: &uplink.MediaRef{URL: media.URL + "/storm.wav", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(wav))}}
	env, err := uplink.Sign(cmd, priv)
	if err != nil {
		t.Fatal(err)
	}
	desk.publish("loalang/v1/hanoi/cmd", env)

	var started uplink.Report
	eventually(t, 30*time.Second, "the command started", func() bool {
		var ok bool
		started, ok = outcome(desk.reports("storm-1"), uplink.OutcomeStarted)
		return ok
	})
	em := c.broadcast(started.BroadcastID)
	if len(em.StreamIDs) == 0 {
		eventually(t, 10*time.Second, "emergency stream", func() bool { em = c.broadcast(started.BroadcastID); return len(em.StreamIDs) > 0 })
	}
	eventually(t, 10*time.Second, "normal pre-empted", func() bool {
		s := c.broadcast(normal.ID).State
		return s == "preempted" || s == "interrupted"
	})
	for id, s := range speakers {
		eventually(t, 15*time.Second, "emergency played on "+id, func() bool {
			r, ok := s.Stats(em.StreamIDs[0])
			return ok && r.Played > 100
		})
	}
	_, ok := outcome(desk.reports("storm-1"), uplink.OutcomeAccepted)
	if !ok {
		t.Fatal("accepted not reported")
	}
	var played uplink.Report
	eventually(t, 30*time.Second, "played reported with per-speaker delivery", func() bool {
		played, ok = outcome(desk.reports("storm-1"), uplink.OutcomePlayed)
		return ok
	})
	devs, _ := played.Devices.([]any)
	if played.State != "done" || len(devs) != 6 {
		t.Fatalf("played report %+v", played)
	}
	for _, dv := range devs {
		if m, _ := dv.(map[string]any); m["frames_played"].(float64) < 100 {
			t.Errorf("speaker delivery %v", m)
		}
	}

	// A replay and a forgery are refused and reported.
	desk.publish("loalang/v1/hanoi/xa-1/cmd", env)
	_, mallory, _ := ed25519.GenerateKey(nil)
	cmd.ID, cmd.Nonce = "forged-1", uplink.NewNonce()
	forged, _ := uplink.Sign(cmd, mallory)
	desk.publish("loalang/v1/hanoi/xa-1/test/cmd", forged)
	eventually(t, 20*time.Second, "refusals reported", func() bool {
		r1, ok1 := outcome(desk.reports("storm-1"), uplink.OutcomeRefused)
		r2, ok2 := outcome(desk.reports("forged-1"), uplink.OutcomeRefused)
		return ok1 && ok2 && r1.Reason == "replay" && r2.Reason == "bad_signature"
	})

	// The audit trail and device changes went up too.
	eventually(t, 10*time.Second, "audit forwarded", func() bool {
		return desk.has("audit", `"broadcast.playing"`) && desk.has("audit", `"actor":"province:hanoi"`) && desk.has("device", `"device.online"`)
	})

	_, body = c.do("GET", "/api/v1/uplink", nil)
	var st uplink.Status
	json.Unmarshal(body, &st)
	if !st.Connected || st.Commands["accepted"] != 1 || st.Commands["refused:replay"] != 1 || st.Commands["refused:bad_signature"] != 1 || st.Outbox.Sent == 0 {
		t.Fatalf("uplink status %s", body)
	}
	_, metrics := c.do("GET", "/metrics", nil)
	for _, m := range []string{"loalang_uplink_connected 1", `loalang_uplink_commands_total{outcome="accepted"} 1`, "loalang_uplink_outbox_depth"} {
		if !strings.Contains(string(metrics), m) {
			t.Errorf("metrics lack %q", m)
		}
	}

	// The home page shows it, in Vietnamese by default.
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("chromium not installed (make deps): %v", err)
	}
	b := &browser{t: t, ctx: startChromium(t, chromium, 60*time.Second), base: "http://" + d.Ready().HTTP, out: outputDir(t)}
	b.signIn("admin", adminPassword(t, cfg.DataDir))
	b.open("/app/home")
	eventually(t, 15*time.Second, "the uplink card on the home page", func() bool {
		return eval[string](b, `(document.getElementById("uplink-state") || {}).textContent || ""`) == "Đã kết nối" &&
			strings.Contains(eval[string](b, `document.getElementById("uplink").textContent`), "accepted 1")
	})
	b.screenshot("home-uplink")
}
