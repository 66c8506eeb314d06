package broadcast_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
	"weak"

	"github.com/loalang/loalang/broadcast"
	"github.com/loalang/loalang/device/wire"
)

// TestEndedBroadcastReleasesAudio: an ended broadcast stays listed (up to
// keepFinished of them) with its length, but its audio is garbage. Ended
// broadcasts used to keep their clip, through b.packets and through the
// removed segment left in b.segs' backing array, which is what grew the
// heap in the soak.
func TestEndedBroadcastReleasesAudio(t *testing.T) {
	r := newRig(t)
	pkts := packets(30)
	audio := weak.Make(&pkts[0])
	b, err := r.e.Start(context.Background(), broadcast.Request{Packets: pkts, Zones: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	pkts = nil
	r.waitState(t, b.ID, 10*time.Second, broadcast.StateDone)
	waitFor(t, 5*time.Second, "the ended broadcast's audio collected", func() bool {
		runtime.GC()
		return audio.Value() == nil
	})
	got, err := r.e.Get(b.ID)
	if err != nil || got.Packets != 30 || got.State != broadcast.StateDone {
		t.Fatalf("ended broadcast: %+v %v, want listed with its 30 packets", got, err)
	}
}

// TestEndedBroadcastHistoryBound measures what one ended broadcast costs
// in memory with 50 speakers that each reported on it: the engine keeps
// keepFinished (500) of them, so this times 500 is the bound of the
// in-memory history. It prints the figure and fails above 16 KB.
func TestEndedBroadcastHistoryBound(t *testing.T) {
	members := make([]string, 50)
	for i := range members {
		members[i] = fmt.Sprintf("spk-%02d", i)
	}
	// No broker, listener or recorder: they would keep copies of their
	// own; the publisher drops everything.
	e, err := broadcast.New(broadcast.Config{Site: site, PlayoutDelay: time.Millisecond}, broadcast.Deps{
		Publisher: discard{}, Directory: directory{zones: map[string][]string{"a": members}}, Clock: newFastClock(10),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; e.Close() })
	r := &rig{e: e}
	run := func(n int) {
		for range n {
			b, err := r.e.Start(context.Background(), broadcast.Request{Packets: packets(5), Zones: []string{"a"}})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range members {
				r.e.HandleReport(m, wire.Report{StreamID: b.StreamIDs[0], Expected: 5, Played: 5, ClockErrorUS: 120})
			}
			r.waitState(t, b.ID, 10*time.Second, broadcast.StateDone)
			for _, m := range members {
				r.e.HandleReport(m, wire.Report{StreamID: b.StreamIDs[0], Expected: 5, Played: 5, ClockErrorUS: 120, Final: true})
			}
		}
	}
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	run(5) // warm up
	const n = 60
	before := heap()
	run(n)
	after := heap()
	per := (float64(after) - float64(before)) / n
	t.Logf("one ended broadcast with 50 reporting speakers keeps %.1f KB; 500 of them: %.1f MB", per/1024, per*500/1024/1024)
	if per > 16*1024 {
		t.Errorf("an ended broadcast keeps %.1f KB, want ≤ 16 KB", per/1024)
	}
	if got := len(r.e.List()); got != n+5 {
		t.Fatalf("%d broadcasts listed, want %d", got, n+5)
	}
}

// discard is a Publisher that drops every message.
type discard struct{}

func (discard) Publish(context.Context, string, byte, bool, []byte) error { return nil }
