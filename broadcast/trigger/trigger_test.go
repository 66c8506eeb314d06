package trigger

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/loalang/loalang/broadcast/schedule"
)

// TestTriggerSpacing: a schedule stored before schedule.min_interval
// existed (FREQ=SECONDLY) is not re-validated, so the trigger itself
// refuses occurrences closer than the minimum to the previous firing.
func TestTriggerSpacing(t *testing.T) {
	tr := &Trigger{cfg: Config{MinInterval: 5 * time.Minute}}
	base := time.Date(2026, 3, 1, 6, 0, 0, 0, time.UTC)
	if err := tr.spaced("s", base); err != nil {
		t.Fatal(err)
	}
	if err := tr.spaced("s", base.Add(time.Second)); !errors.Is(err, schedule.ErrTooFrequent) {
		t.Fatalf("one second later: %v", err)
	}
	if err := tr.spaced("other", base.Add(time.Second)); err != nil {
		t.Fatalf("another schedule: %v", err)
	}
	if err := tr.spaced("s", base.Add(5*time.Minute)); err != nil {
		t.Fatalf("five minutes later: %v", err)
	}
}

// TestAssembleAndWindow: the chime is 1 s (50 packets, and the
// encoder's look-ahead); a chimed source
// played twice is chime, source, 600 ms of silence, source; a relay window
// is judged on the timetable's clock, so one that ended on it is refused
// before the engine is asked; an unknown source kind is invalid.
func TestAssembleAndWindow(t *testing.T) {
	if n := len(Chime()); n != 48000 {
		t.Fatalf("chime: %d samples, want 1 s at 48 kHz", n)
	}
	now := time.Date(2031, 5, 4, 6, 0, 0, 0, time.UTC)
	tr, err := New(context.Background(), Config{Bitrate: 24000, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	// EncodePCM pads the input to cover the encoder's look-ahead: one more packet.
	if len(tr.chime) < 50 || len(tr.chime) > 51 || len(tr.gap) < int(RepeatGap/(20*time.Millisecond)) {
		t.Fatalf("chime %d packets, gap %d", len(tr.chime), len(tr.gap))
	}
	src := [][]byte{{0xAA}, {0xBB}}
	out := tr.assemble(true, src, 2)
	if len(out) != len(tr.chime)+2+len(tr.gap)+2 || out[len(tr.chime)][0] != 0xAA || out[len(out)-1][0] != 0xBB {
		t.Fatalf("assembled %d packets", len(out))
	}
	if out := tr.assemble(false, src, 1); len(out) != 2 {
		t.Fatalf("plain source: %d packets", len(out))
	}
	// On the wall clock this window (2031) is in the future; on the
	// timetable's clock it ended a minute ago.
	relay := schedule.Schedule{ID: "radio", Source: schedule.Source{Kind: schedule.SourceRelay, URL: "http://radio.example/", Duration: time.Minute}}
	if err := tr.Fire(context.Background(), relay, now.Add(-2*time.Minute)); err == nil || !strings.Contains(err.Error(), "already over") {
		t.Fatalf("relay window over on the timetable's clock: %v", err)
	}
	bad := schedule.Schedule{ID: "bad", Source: schedule.Source{Kind: "tape"}}
	if err := tr.Fire(context.Background(), bad, now); !errors.Is(err, schedule.ErrInvalid) {
		t.Fatalf("unknown source: %v", err)
	}
}
