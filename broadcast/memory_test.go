package broadcast_test

import (
	"context"
	"runtime"
	"testing"
	"time"
	"weak"

	"github.com/loalang/loalang/broadcast"
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
