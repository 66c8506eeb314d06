package daemon_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/daemon"
	"github.com/loalang/loalang/internal/audiotest"
	"github.com/loalang/loalang/uplink"
)

// TestUplinkPlayedReportSurvivesRestart: a command's broadcast is cut by
// a restart of the daemon (Close, then New on the same data dir). The
// link between the command and its broadcast is in bbolt, so the new
// daemon still sends the command's terminal "played" report, once, with
// the state the shutdown gave the broadcast ("stopped", "controller shut
// down") and the per-speaker delivery of what was played before it.
func TestUplinkPlayedReportSurvivesRestart(t *testing.T) {
	upstream := startUpstreamMosquitto(t)
	pub, priv, _ := ed25519.GenerateKey(nil)
	cfg := testConfig(t, t.TempDir(), 2)
	cfg.MQTT.Listen = freePort(t) // the speakers find the broker again after the restart
	cfg.Uplink = config.Uplink{URL: "tcp://" + upstream, ClientID: "thon-restart", Province: "hanoi", Commune: "xa-1",
		ProvinceKeys: []string{uplink.PublicKeyString(pub)}, MediaAllow: []string{"127.0.0.1/32"}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	topics, _ := uplink.NewTopics("hanoi", "xa-1", cfg.Site)
	desk := newCommune(t, upstream, topics.Events())
	wav := audiotest.WAV(audiotest.Tone(880, 0.5, 16000, 30000), 16000, 1) // 30 s: still playing at the restart
	sum := sha256.Sum256(wav)
	media := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(wav) }))
	defer media.Close()

	ctx1, cancel1 := context.WithCancel(context.Background())
	defer cancel1()
	d1, err := daemon.New(ctx1, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			d1.Close()
		}
	})
	speakers := startSpeakers(t, cfg.DataDir, nil)
	c := login(t, "http://"+d1.Ready().HTTP, "admin", adminPassword(t, cfg.DataDir))
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

	now := time.Now().UTC()
	cmd := uplink.Command{V: 1, ID: "flood-7", Nonce: uplink.NewNonce(), Level: uplink.LevelProvince, Sender: "hanoi",
		Issued: now, Expires: now.Add(10 * time.Minute), Target: uplink.Target{Province: "hanoi", Commune: "xa-1"},
		Urgency: uplink.UrgencyEmergency, Media: &uplink.MediaRef{URL: media.URL + "/flood.wav", SHA256: hex.EncodeToString(sum[:]), Size: int64(len(wav))}}
	env, err := uplink.Sign(cmd, priv)
	if err != nil {
		t.Fatal(err)
	}
	desk.publish("loalang/v1/hanoi/cmd", env)
	var started uplink.Report
	eventually(t, 60*time.Second, "the command started", func() bool {
		var ok bool
		started, ok = outcome(desk.reports("flood-7"), uplink.OutcomeStarted)
		return ok
	})
	var em broadcastView
	eventually(t, 15*time.Second, "the command's stream", func() bool { em = c.broadcast(started.BroadcastID); return len(em.StreamIDs) > 0 })
	for id, s := range speakers {
		eventually(t, 20*time.Second, "command audio on "+id, func() bool {
			r, ok := s.Stats(em.StreamIDs[0])
			return ok && r.Played > 50
		})
	}
	// The speakers report every 2 s while they play: wait until the
	// controller holds a report from each, or the record saved at the
	// shutdown would rightly show nothing played.
	eventually(t, 20*time.Second, "each speaker's delivery report before the restart", func() bool {
		n := 0
		for _, dv := range c.broadcast(started.BroadcastID).Devices {
			if dv.Played > 0 {
				n++
			}
		}
		return n == len(speakers)
	})
	if c.broadcast(started.BroadcastID).State != "playing" {
		t.Fatalf("the command's broadcast is %q before the restart, want playing", c.broadcast(started.BroadcastID).State)
	}

	// The restart cuts the broadcast. Close cancels the report loop
	// before the engine stops, so the first daemon cannot report it.
	cancel1()
	if err := d1.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	closed = true
	if _, ok := outcome(desk.reports("flood-7"), uplink.OutcomePlayed); ok {
		t.Fatal("played reported before the restart: the test would not show the link survives it")
	}
	d2 := startDaemon(t, cfg)
	var played uplink.Report
	eventually(t, 60*time.Second, "played reported by the restarted daemon", func() bool {
		var ok bool
		played, ok = outcome(desk.reports("flood-7"), uplink.OutcomePlayed)
		return ok
	})
	t.Logf("played report after the restart: %+v", played)
	if played.BroadcastID != started.BroadcastID || played.State != "stopped" || played.Detail != "controller shut down" || played.Level != "province" {
		t.Errorf("played report %+v, want broadcast %s stopped by the shutdown", played, started.BroadcastID)
	}
	devs, _ := played.Devices.([]any)
	if len(devs) != len(speakers) {
		t.Fatalf("played report has %d speakers, want %d: %+v", len(devs), len(speakers), played)
	}
	for _, dv := range devs {
		m, _ := dv.(map[string]any)
		if f, _ := m["frames_played"].(float64); f <= 0 {
			t.Errorf("speaker delivery %v: nothing played before the restart", m)
		}
	}

	// Exactly once: the link is gone with the report, the outbox drains,
	// and the commune holds one played report for the command.
	c2 := login(t, "http://"+d2.Ready().HTTP, "admin", adminPassword(t, cfg.DataDir))
	eventually(t, 30*time.Second, "outbox drained", func() bool {
		_, body := c2.do("GET", "/api/v1/uplink", nil)
		var s uplink.Status
		json.Unmarshal(body, &s)
		return s.Connected && s.Outbox.Depth == 0 && s.Commands["played"] == 1
	})
	n := 0
	for _, r := range desk.reports("flood-7") {
		if r.Outcome == uplink.OutcomePlayed {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d played reports (after de-duplication by id), want 1", n)
	}
}
