package hall

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/firmware-sim/relayboard"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Test timings: short, but long enough to order on a loaded 2-core host.
const (
	testWarmup = 200 * time.Millisecond
	testTail   = 100 * time.Millisecond
	testIdle   = 300 * time.Millisecond
)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func newTestBoard(t *testing.T) *relayboard.Board {
	t.Helper()
	b, err := relayboard.New(relayboard.Options{Link: filepath.Join(t.TempDir(), "relay0"), Coils: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func boardConfig(path string) *BoardConfig {
	return &BoardConfig{
		Port: path, Baud: 9600, SlaveID: 1, AmpCoil: 0,
		Zones:  map[string]uint16{"hall-line-1": 1, "hall-line-2": 2},
		Warmup: testWarmup, Tail: testTail, IdleOff: testIdle,
		Timeout: 150 * time.Millisecond, Poll: 100 * time.Millisecond,
		ReopenMin: 50 * time.Millisecond, ReopenMax: 400 * time.Millisecond,
	}
}

// runHall starts a Hall and stops it at cleanup, checking Run's result.
func runHall(t *testing.T, cfg Config) *Hall {
	t.Helper()
	h, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- h.Run(context.Background()) }()
	t.Cleanup(func() {
		h.Close()
		if err := <-errc; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return h
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func coilsAre(b *relayboard.Board, want ...bool) func() bool {
	return func() bool {
		got := b.Coils()
		for i, w := range want {
			if got[i] != w {
				return false
			}
		}
		return true
	}
}

func startCtl(id uint32, prio string) wire.StreamControl {
	return wire.StreamControl{Op: wire.StreamStart, StreamID: id, Codec: wire.CodecOpus, Priority: prio, Volume: 100}
}

// checkSequence asserts the board saw amp on, zone on after the warm-up,
// zone off after audioEnd+tail, amp off after the idle delay, and nothing
// else on the given zone coil.
func checkSequence(t *testing.T, hist []relayboard.Change, zone int, audioEnd time.Time) {
	t.Helper()
	var ampOn, zoneOn, zoneOff, ampOff time.Time
	for _, c := range hist {
		switch {
		case c.Coil == 0 && c.On && ampOn.IsZero():
			ampOn = c.At
		case c.Coil == zone && c.On && zoneOn.IsZero():
			zoneOn = c.At
		case c.Coil == zone && !c.On && zoneOff.IsZero():
			zoneOff = c.At
		case c.Coil == 0 && !c.On && ampOff.IsZero():
			ampOff = c.At
		}
	}
	if ampOn.IsZero() || zoneOn.IsZero() || zoneOff.IsZero() || ampOff.IsZero() {
		t.Fatalf("incomplete sequence %+v", hist)
	}
	if w := zoneOn.Sub(ampOn); w < testWarmup {
		t.Errorf("zone on %v after amp on, want >= warm-up %v", w, testWarmup)
	}
	if zoneOff.Before(audioEnd.Add(testTail)) {
		t.Errorf("zone off %v before audio end + tail", audioEnd.Add(testTail).Sub(zoneOff))
	}
	if w := ampOff.Sub(zoneOff); w < testIdle {
		t.Errorf("amp off %v after zone off, want >= idle %v", w, testIdle)
	}
	t.Logf("sequence: amp on +0, zone on +%v, zone off +%v, amp off +%v",
		zoneOn.Sub(ampOn).Round(time.Millisecond), zoneOff.Sub(ampOn).Round(time.Millisecond), ampOff.Sub(ampOn).Round(time.Millisecond))
}

func TestRelaySequence(t *testing.T) {
	b := newTestBoard(t)
	h := runHall(t, Config{Board: boardConfig(b.Path())})
	waitFor(t, 2*time.Second, "board open", func() bool { return h.Status().Board.OK })
	if left := h.WarmupLeft(); left != testWarmup {
		t.Errorf("WarmupLeft with amp off = %v, want %v", left, testWarmup)
	}

	start := time.Now()
	h.Start(context.Background(), startCtl(7, wire.PriorityNormal), []string{"hall-line-1", "ip-zone-x"})
	// 400 ms of audio, announced by one frame; the stop comes early, as the
	// engine sends frames ahead of their play-out time.
	audioEnd := start.Add(400 * time.Millisecond)
	h.Frame(wire.Frame{StreamID: 7, PlayAt: audioEnd.Add(-20 * time.Millisecond).UnixMicro(), Packets: [][]byte{{0xf8}}})
	waitFor(t, 2*time.Second, "amp and zone on", coilsAre(b, true, true, false))
	h.Stop(7)
	waitFor(t, 3*time.Second, "all off", coilsAre(b, false, false, false))

	checkSequence(t, b.History(), 1, audioEnd)
	d := h.Delivery(7)
	if len(d.Zones) != 1 || d.Zones[0] != "hall-line-1" {
		t.Errorf("delivery zones %v", d.Zones)
	}
	waitFor(t, time.Second, "amp_off step", func() bool { _, ok := h.Delivery(7).Step(StepAmpOff); return ok })
	d = h.Delivery(7)
	names := []string{}
	for i, s := range d.Steps {
		names = append(names, s.Name)
		if i > 0 && s.At.Before(d.Steps[i-1].At) {
			t.Errorf("step %s at %v before %s", s.Name, s.At, d.Steps[i-1].Name)
		}
	}
	if strings.Join(names, ",") != "amp_on,zones_on,zones_off,amp_off" {
		t.Errorf("steps %v", names)
	}
	st := h.Status()
	if st.Board.Alarm || st.Board.Coils[ampName] || st.Board.Coils["hall-line-1"] {
		t.Errorf("status at end %+v", st.Board)
	}
	if st.Sink.Configured {
		t.Errorf("sink configured without config")
	}
}

func TestEmergencyAllZones(t *testing.T) {
	b := newTestBoard(t)
	h := runHall(t, Config{Board: boardConfig(b.Path())})
	h.Start(context.Background(), startCtl(9, wire.PriorityEmergency), nil)
	waitFor(t, 2*time.Second, "every zone on", coilsAre(b, true, true, true))
	if d := h.Delivery(9); !d.Emergency || len(d.Zones) != 2 {
		t.Errorf("delivery %+v", d)
	}
	// A second broadcast while the amplifier is warm switches at once.
	h.Stop(9)
	waitFor(t, 2*time.Second, "zones off", coilsAre(b, true, false, false))
	h.Start(context.Background(), startCtl(10, wire.PriorityNormal), []string{"hall-line-2"})
	waitFor(t, time.Second, "zone 2 on", coilsAre(b, true, false, true))
	waitFor(t, time.Second, "zones_on step", func() bool { _, ok := h.Delivery(10).Step(StepZonesOn); return ok })
	if d, _ := h.Delivery(10).Step(StepZonesOn); d.At.Sub(h.Delivery(10).Started) > testWarmup {
		t.Errorf("warm amplifier still waited: %+v", h.Delivery(10))
	}
}

func TestUnplugReplug(t *testing.T) {
	b := newTestBoard(t)
	h := runHall(t, Config{Board: boardConfig(b.Path())})
	h.Start(context.Background(), startCtl(3, wire.PriorityNormal), []string{"hall-line-2"})
	waitFor(t, 2*time.Second, "zone on", coilsAre(b, true, false, true))

	unplugged := time.Now()
	if err := b.Unplug(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "alarm", func() bool { return h.Status().Board.Alarm })
	st := h.Status().Board
	t.Logf("alarm %v after unplug: %s", time.Since(unplugged).Round(time.Millisecond), st.Reason)
	if st.OK || st.Reason == "" || st.Since.IsZero() {
		t.Errorf("status %+v", st)
	}
	if got := metricValue(t, h.metrics.boardAlarm); got != 1 {
		t.Errorf("alarm gauge %v", got)
	}
	// The IP side is never blocked: Start, Frame and Stop return at once.
	t0 := time.Now()
	h.Start(context.Background(), startCtl(4, wire.PriorityNormal), []string{"hall-line-1"})
	h.Frame(wire.Frame{StreamID: 4, PlayAt: time.Now().UnixMicro(), Packets: [][]byte{{0xf8}}})
	if d := time.Since(t0); d > 50*time.Millisecond {
		t.Errorf("Start+Frame took %v with the board unplugged", d)
	}

	// The board lost power meanwhile: its relays dropped.
	b.SetCoils(make([]bool, 8))
	if err := b.Replug(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "alarm cleared", func() bool { return !h.Status().Board.Alarm })
	waitFor(t, 3*time.Second, "state re-applied", coilsAre(b, true, true, true))
	if got := metricValue(t, h.metrics.boardAlarm); got != 0 {
		t.Errorf("alarm gauge %v after recovery", got)
	}
}

func TestCRCAndTimeoutAlarms(t *testing.T) {
	for _, tc := range []struct {
		kind   string
		inject func(*relayboard.Board)
	}{
		{"crc", func(b *relayboard.Board) { b.InjectCRCErrors(1) }},
		{"timeout", func(b *relayboard.Board) { b.InjectTimeouts(1) }},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			b := newTestBoard(t)
			h := runHall(t, Config{Board: boardConfig(b.Path())})
			waitFor(t, 2*time.Second, "board open", func() bool { return h.Status().Board.OK })
			tc.inject(b)
			h.Start(context.Background(), startCtl(5, wire.PriorityNormal), []string{"hall-line-1"})
			waitFor(t, 2*time.Second, "alarm", func() bool { return h.Status().Board.Faults > 0 })
			if st := h.Status().Board; !strings.HasPrefix(st.Reason, tc.kind+":") {
				t.Errorf("reason %q, want kind %s", st.Reason, tc.kind)
			}
			if got := metricValue(t, h.metrics.boardFaults.WithLabelValues(tc.kind)); got < 1 {
				t.Errorf("faults{kind=%s} = %v", tc.kind, got)
			}
			// It recovers and completes the step.
			waitFor(t, 3*time.Second, "zone on after recovery", coilsAre(b, true, true))
			waitFor(t, time.Second, "alarm cleared", func() bool { return !h.Status().Board.Alarm })
		})
	}
}

func TestBoardAbsentAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nothing-here")
	h := runHall(t, Config{Board: boardConfig(path)})
	waitFor(t, 2*time.Second, "open alarm", func() bool { return h.Status().Board.Alarm })
	if st := h.Status().Board; !strings.HasPrefix(st.Reason, "open:") {
		t.Errorf("reason %q", st.Reason)
	}
	// Plugged in later at the configured path, it is found.
	b, err := relayboard.New(relayboard.Options{Link: path})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	waitFor(t, 3*time.Second, "board found", func() bool { return h.Status().Board.OK })
}

func TestConfigValidate(t *testing.T) {
	bad := []Config{
		{Board: &BoardConfig{}},
		{Board: &BoardConfig{Port: "/dev/x", Zones: map[string]uint16{"a": 0}}},
		{Board: &BoardConfig{Port: "/dev/x", SlaveID: 250}},
		{Board: &BoardConfig{Port: "/dev/x", Zones: map[string]uint16{"a": 3000}}},
		{Sink: &SinkConfig{Channels: 3}},
	}
	for i, c := range bad {
		if _, err := New(c, nil); err == nil {
			t.Errorf("config %d accepted", i)
		}
	}
	h, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := h.Status(); st.Board.Configured || st.Sink.Configured {
		t.Errorf("empty config status %+v", st)
	}
	h.Close()
	h.Close()
}

// metricValue reads a single-series gauge or counter.
func metricValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.Counter.GetValue()
}

// TestReadyInAndPrewarm: a cold hall needs a relay step, the warm-up and a
// step; Prewarm switches the amplifier on without a broadcast (zones stay
// off) so the wait shrinks to what is left of the warm-up and a step; a
// warm amplifier with the zone on needs nothing; and without a Start the
// pre-warmed amplifier goes off again.
func TestReadyInAndPrewarm(t *testing.T) {
	board := newTestBoard(t)
	cfg := boardConfig(board.Path())
	h := runHall(t, Config{Board: cfg})
	waitFor(t, 3*time.Second, "board open", func() bool { return h.Status().Board.OK })
	step := relayStep(cfg.Baud, 3)
	zones := []string{"hall-line-1"}
	if got, want := h.ReadyIn(zones), 2*step+testWarmup; got != want {
		t.Fatalf("cold ReadyIn %v, want %v", got, want)
	}
	if got := h.ReadyIn([]string{"not-on-the-board"}); got != 0 {
		t.Fatalf("ReadyIn of a zone not on the board %v, want 0", got)
	}
	t.Logf("relay step at 9600 Bd: %v; cold hall ready in %v", step, h.ReadyIn(zones))

	h.Prewarm()
	waitFor(t, 2*time.Second, "amplifier on after Prewarm", func() bool { return h.Status().Board.Coils[ampName] })
	if got := h.ReadyIn(zones); got > testWarmup+step || got < step {
		t.Fatalf("warming ReadyIn %v, want between %v and %v", got, step, testWarmup+step)
	}
	if c := board.Coils(); c[1] || c[2] {
		t.Fatalf("Prewarm switched zones on: %v", c[:3])
	}
	waitFor(t, 2*time.Second, "warm-up over", func() bool { return h.ReadyIn(zones) == step })

	h.Start(context.Background(), startCtl(7, wire.PriorityNormal), zones)
	waitFor(t, 2*time.Second, "zone on", coilsAre(board, true, true, false))
	waitFor(t, time.Second, "zone confirmed", func() bool { return h.ReadyIn(zones) == 0 })
	if got := h.ReadyIn([]string{"hall-line-2"}); got != step {
		t.Fatalf("ReadyIn of the other zone %v, want one step %v", got, step)
	}
	h.Stop(7)
	waitFor(t, 3*time.Second, "all off after the broadcast", coilsAre(board, false, false, false))
}

// TestPrewarmExpires: a pre-warm that no broadcast follows (the speech
// failed) lets the amplifier go off after prewarmHold.
func TestPrewarmExpires(t *testing.T) {
	board := newTestBoard(t)
	h := runHall(t, Config{Board: boardConfig(board.Path())})
	clock := time.Now()
	h.mu.Lock()
	h.now = func() time.Time { return clock.Add(-prewarmHold + 500*time.Millisecond) } // expires 0.5 s from now
	h.mu.Unlock()
	h.Prewarm()
	waitFor(t, 2*time.Second, "amplifier on after Prewarm", coilsAre(board, true))
	waitFor(t, 3*time.Second, "amplifier off after the pre-warm expired", coilsAre(board, false))
}
