package broadcast

import (
	"testing"
	"time"

	"github.com/loalang/loalang/device/wire"
)

// TestDeliveryAccounting sums a broadcast that was pre-empted and resumed
// (two streams): each speaker's latest report of each stream counts once,
// a speaker that never reported shows zeros, one that came online during
// the broadcast is added once, and reports of unknown or forgotten streams
// are ignored.
func TestDeliveryAccounting(t *testing.T) {
	d := newDeliveries()
	b := &bcast{id: "b-1"}
	online := map[string]bool{"spk-1": true, "spk-2": true}
	l := newLedger(b, []string{"spk-2", "spk-1", "spk-3"}, func(id string) bool { return online[id] })
	b.acct = l
	d.addStream(l, 11)
	d.addStream(l, 12) // the resume

	t0 := time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC)
	steps := []struct {
		dev string
		r   wire.Report
		at  time.Time
		hit bool
	}{
		{"spk-1", wire.Report{StreamID: 11, Expected: 50, Played: 40, Late: 5, Lost: 5, ClockErrorUS: 300}, t0, true},
		// A later, cumulative report of the same stream replaces the first.
		{"spk-1", wire.Report{StreamID: 11, Expected: 100, Played: 90, Late: 6, Lost: 4, ClockErrorUS: 250}, t0.Add(time.Second), true},
		{"spk-1", wire.Report{StreamID: 12, Expected: 40, Played: 40, ClockErrorUS: -120, Final: true}, t0.Add(2 * time.Second), true},
		{"spk-2", wire.Report{StreamID: 12, Expected: 40, Played: 30, Lost: 10}, t0.Add(3 * time.Second), true},
		// A speaker the directory did not list at the start still counts.
		{"spk-9", wire.Report{StreamID: 11, Expected: 100, Played: 100}, t0.Add(4 * time.Second), true},
		{"spk-1", wire.Report{StreamID: 99, Expected: 1}, t0, false},
	}
	for _, s := range steps {
		got := d.report(s.dev, s.r, s.at)
		if (got == b) != s.hit || (got != nil && got != b) {
			t.Fatalf("report %s stream %d: broadcast %v, want hit=%v", s.dev, s.r.StreamID, got, s.hit)
		}
	}
	d.addMember(l, "spk-4") // came online during an emergency
	d.addMember(l, "spk-4")
	d.addMember(l, "spk-9") // reported already

	want := []Delivery{
		{ID: "spk-1", OnlineAtStart: true, FramesExpected: 140, FramesPlayed: 130, FramesLate: 6, FramesLost: 4, ClockErrorUS: -120, LastReport: t0.Add(2 * time.Second)},
		{ID: "spk-2", OnlineAtStart: true, FramesExpected: 40, FramesPlayed: 30, FramesLost: 10, LastReport: t0.Add(3 * time.Second)},
		{ID: "spk-3"},
		{ID: "spk-4"},
		{ID: "spk-9", FramesExpected: 100, FramesPlayed: 100, LastReport: t0.Add(4 * time.Second)},
	}
	got := d.summary(l)
	if len(got) != len(want) {
		t.Fatalf("summary %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("device %d: %+v, want %+v", i, got[i], want[i])
		}
	}

	d.forget(l)
	if d.report("spk-1", wire.Report{StreamID: 11, Expected: 1}, t0) != nil {
		t.Error("report of a forgotten broadcast's stream was counted")
	}
	if s := d.summary(l); s[0].FramesExpected != 140 {
		t.Errorf("forgetting changed the kept summary: %+v", s[0])
	}
}
