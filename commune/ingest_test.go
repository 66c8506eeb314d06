package commune

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	bolt "go.etcd.io/bbolt"

	"github.com/loalang/loalang/uplink"
)

// startMosquitto runs a real Mosquitto on a free loopback port until the
// test ends (stopped by its pid) and returns its address.
func startMosquitto(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(t.TempDir(), "m.conf")
	os.WriteFile(conf, []byte("listener "+port+" 127.0.0.1\nallow_anonymous true\npersistence false\n"), 0o600)
	cmd := exec.Command(bin, "-c", conf)
	if err := cmd.Start(); err != nil {
		t.Fatalf("mosquitto: %v", err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGTERM); cmd.Wait() })
	waitFor(t, 10*time.Second, "mosquitto listening", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %s", what, d)
}

// fakeVillage publishes uplink events as a village would, by hand.
type fakeVillage struct {
	t    *testing.T
	pc   mqtt.Client
	tops uplink.Topics
	seq  uint64
}

func newFakeVillage(t *testing.T, broker, site string) *fakeVillage {
	pc := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + broker).SetClientID(site).SetProtocolVersion(4))
	if tok := pc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("village connect: %v", tok.Error())
	}
	t.Cleanup(func() { pc.Disconnect(100) })
	tops, _ := uplink.NewTopics("hanoi", "xa-1", site)
	return &fakeVillage{t: t, pc: pc, tops: tops}
}

// send publishes an event and returns it, so that a test can send the
// same one again.
func (v *fakeVillage) send(kind string, data any) uplink.Event {
	v.seq++
	raw, _ := json.Marshal(data)
	e := uplink.Event{ID: fmt.Sprintf("ep-%d", v.seq), Seq: v.seq, Province: "hanoi", Commune: "xa-1", Site: v.tops.Site,
		Kind: kind, Class: uplink.ClassTelemetry, Time: time.Now().UTC(), Data: raw}
	v.resend(e)
	return e
}

func (v *fakeVillage) resend(e uplink.Event) {
	raw, _ := json.Marshal(e)
	if tok := v.pc.Publish(v.tops.Events(), 1, false, raw); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		v.t.Fatalf("publish: %v", tok.Error())
	}
}

func (s *Server) villageNow(t *testing.T, site string) VillageView {
	vs, err := s.Villages()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if v.Site == site {
			return v
		}
	}
	return VillageView{}
}

// TestVillageStateSurvivesOutageAndRestart: a village's events reach the
// commune through a real Mosquitto; duplicates (a resend after a lost
// PUBACK) count once; events sent while the commune is stopped are
// queued by the broker for its persistent session and applied after it
// starts again on the same bbolt file, on top of the state it kept; an
// older snapshot arriving late never overwrites a newer one.
func TestVillageStateSurvivesOutageAndRestart(t *testing.T) {
	broker := startMosquitto(t)
	cfg := testConfig(t, "tcp://"+broker)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := New(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "commune connected", func() bool { return s.mqtt.connected.Load() })
	if p := s.health.Problems(); len(p) != 0 {
		t.Fatalf("connected, yet problems: %+v", p)
	}
	v := newFakeVillage(t, broker, "thon-1")
	spk := func(id, zone string, on bool) uplink.DeviceState {
		return uplink.DeviceState{ID: id, Kind: "speaker", Zones: []string{zone}, Online: on}
	}
	first := v.send(uplink.KindState, uplink.StateData{Devices: []uplink.DeviceState{spk("s1", "a", true), spk("s2", "a", true), spk("s3", "b", false)}})
	v.resend(first) // a duplicate
	v.send("health", map[string]any{"problems": []Alarm{{Component: "amplifier", Reason: "relay board not answering"}}})
	v.send("audit", map[string]any{"time": time.Now().UTC().Add(-90 * time.Second), "action": "broadcast.playing", "target": "b-1"})
	v.send("audit", map[string]any{"time": time.Now().UTC(), "action": "broadcast.done", "target": "b-1",
		"detail": map[string]any{"delivery": map[string]any{"speakers": 2, "frames_expected": 100, "frames_played": 90}}})
	waitFor(t, 20*time.Second, "state at the commune", func() bool {
		x := s.villageNow(t, "thon-1")
		return x.Events == 4 && x.Speakers == 3 && x.Online == 2 && len(x.Alarms) == 1 && x.Delivery.Broadcasts == 1
	})
	x := s.villageNow(t, "thon-1")
	if len(x.Zones) != 2 || x.Zones[0] != (ZoneView{"a", 2, 2}) || x.Zones[1] != (ZoneView{"b", 1, 0}) {
		t.Fatalf("zones: %+v", x.Zones)
	}
	if x.Delivery.AirSeconds < 80 || x.DeliveryRatio != 0.9 {
		t.Fatalf("delivery: %+v ratio %v", x.Delivery, x.DeliveryRatio)
	}

	// The commune stops; the village keeps reporting for "hours".
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	second := v.send(uplink.KindState, uplink.StateData{Devices: []uplink.DeviceState{spk("s1", "a", false), spk("s2", "a", true), spk("s3", "b", true)}})
	v.send("health", map[string]any{"problems": []Alarm{}})
	v.resend(second)
	s2, err := New(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	waitFor(t, 20*time.Second, "the queued events after the restart", func() bool {
		x := s2.villageNow(t, "thon-1")
		return x.Events == 6 && x.Online == 2 && len(x.Alarms) == 0
	})
	// A late copy of the first snapshot (seq 1) is a duplicate; a new
	// event carrying an older seq is ignored as stale.
	v.resend(first)
	stale := first
	stale.ID = "ep-stale"
	v.resend(stale)
	v.send("health", map[string]any{"problems": []Alarm{}}) // a marker: once it is in, the two before it are too
	waitFor(t, 20*time.Second, "the marker", func() bool { return s2.villageNow(t, "thon-1").Events == 8 })
	x = s2.villageNow(t, "thon-1")
	if x.Online != 2 || x.Zones[1] != (ZoneView{"b", 1, 1}) || x.Delivery.Broadcasts != 1 {
		t.Fatalf("after the restart and a stale snapshot: %+v", x)
	}
	m, err := s2.Month(time.Now().In(s2.loc()).Format("2006-01"))
	if err != nil || len(m) == 0 {
		t.Fatalf("month: %v %v", m, err)
	}
	for _, r := range m {
		if r.Site == "thon-1" && (r.Broadcasts != 1 || r.FramesPlayed != 90) {
			t.Fatalf("month row: %+v", r)
		}
	}
}

// TestPruneForgetsOldIDsAndSessions: event ids older than seenKeep and
// expired sessions are removed; recent ones stay (so a resend is still a
// duplicate).
func TestPruneForgetsOldIDsAndSessions(t *testing.T) {
	cfg := testConfig(t, "tcp://127.0.0.1:1")
	s, err := New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	s.db.bolt.Update(func(tx *bolt.Tx) error {
		put(tx, bSeen, "thon-1/old", now.Add(-seenKeep-time.Hour))
		put(tx, bSeen, "thon-1/new", now.Add(-time.Hour))
		put(tx, bSessions, "gone", map[string]any{"expires": now.Add(-time.Minute)})
		put(tx, bSessions, "live", map[string]any{"expires": now.Add(time.Hour)})
		return nil
	})
	s.prune()
	s.db.bolt.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bSeen).Get([]byte("thon-1/old")) != nil || tx.Bucket(bSeen).Get([]byte("thon-1/new")) == nil {
			t.Error("seen ids: the old one must go, the recent one stay")
		}
		if tx.Bucket(bSessions).Get([]byte("gone")) != nil || tx.Bucket(bSessions).Get([]byte("live")) == nil {
			t.Error("sessions: the expired one must go, the live one stay")
		}
		return nil
	})
}
