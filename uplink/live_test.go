package uplink

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"sync"
	"testing"
	"time"
)

// sinkRec records what a live session wrote and how it ended.
type sinkRec struct {
	mu       sync.Mutex
	packets  [][]byte
	captured []time.Time
	closed   int
	reasons  chan string
}

func newSinkRec() *sinkRec { return &sinkRec{reasons: make(chan string, 4)} }
func (s *sinkRec) WritePacket(p []byte, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.packets = append(s.packets, bytes.Clone(p))
	s.captured = append(s.captured, at)
	return nil
}
func (s *sinkRec) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed++
	return nil
}

func waitReason(t *testing.T, s *sinkRec) string {
	t.Helper()
	select {
	case r := <-s.reasons:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("live session never ended")
		return ""
	}
}

func TestLiveReceiverPlaysInOrderAndEnds(t *testing.T) {
	key := seedKey(2)
	tp := Topics{"hanoi", "xa-1", "thon-3"}
	r := NewLiveReceiver(tp, []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}, time.Minute, testLog)
	sink := newSinkRec()
	if err := r.Start("s1", sink, time.Now().Add(time.Hour), func(reason string) { sink.reasons <- reason }); err != nil {
		t.Fatal(err)
	}
	if err := r.Start("s1", sink, time.Now().Add(time.Hour), nil); err == nil {
		t.Fatal("a session started twice")
	}
	c := testChunk()
	c.Session = "s1"
	first, _ := SignChunk(c, key)
	if err := r.Deliver(tp.Live("s1"), first); err != nil {
		t.Fatal(err)
	}
	// A duplicate and an older chunk are dropped.
	if err := r.Deliver(tp.Live("s1"), first); err == nil {
		t.Fatal("duplicate chunk played")
	}
	c.Seq = 3
	third, _ := SignChunk(c, key)
	if err := r.Deliver(tp.Live("s1"), third); err != nil {
		t.Fatal(err)
	}
	c.Seq = 2
	second, _ := SignChunk(c, key)
	if err := r.Deliver(tp.Live("s1"), second); err == nil {
		t.Fatal("old chunk played")
	}
	// A chunk signed for another session, replayed on this one's topic.
	other := testChunk()
	other.Session, other.Seq = "s2", 9
	otherRaw, _ := SignChunk(other, key)
	if err := r.Deliver(tp.Live("s1"), otherRaw); !errors.Is(err, ErrMalformed) {
		t.Fatalf("cross-session chunk: %v", err)
	}
	end, _ := SignChunk(LiveChunk{Session: "s1", Seq: 4, Captured: c.Captured, End: true}, key)
	if err := r.Deliver(tp.Live("s1"), end); err != nil {
		t.Fatal(err)
	}
	if got := waitReason(t, sink); got != LiveEndedByCommune {
		t.Fatalf("ended by %q", got)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.packets) != 8 || sink.closed != 1 {
		t.Fatalf("%d packets, closed %d times", len(sink.packets), sink.closed)
	}
	for i := range 4 {
		if want := c.Captured.Add(time.Duration(i) * PacketDuration); !sink.captured[i].Equal(want) {
			t.Fatalf("packet %d captured %s, want %s", i, sink.captured[i], want)
		}
	}
	st := r.Stats()
	if st.Packets != 8 || st.Stale != 2 || st.Bad != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestLiveReceiverDropsUnknownAndForged checks that a chunk of a session
// the village is not playing is dropped before any signature check, and
// that a chunk signed by someone else (a speaker's stolen credentials can
// publish, but not sign) never reaches the sink.
func TestLiveReceiverDropsUnknownAndForged(t *testing.T) {
	key, mallory := seedKey(2), seedKey(3)
	tp := Topics{"hanoi", "xa-1", "thon-3"}
	r := NewLiveReceiver(tp, []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}, time.Minute, testLog)
	raw, _ := SignChunk(testChunk(), key)
	if err := r.Deliver(tp.Live("live-1"), raw); err != nil {
		t.Fatal(err)
	}
	if st := r.Stats(); st.Unknown != 1 || st.Verified != 0 {
		t.Fatalf("unknown session was verified: %+v", st)
	}
	sink := newSinkRec()
	r.Start("live-1", sink, time.Now().Add(time.Hour), nil)
	forged, _ := SignChunk(testChunk(), mallory)
	if err := r.Deliver(tp.Live("live-1"), forged); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("forged chunk: %v", err)
	}
	if err := r.Deliver(tp.Live("live-1"), []byte("not json")); !errors.Is(err, ErrMalformed) {
		t.Fatalf("garbage: %v", err)
	}
	sink.mu.Lock()
	n := len(sink.packets)
	sink.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d forged packets played", n)
	}
	r.Close()
	if sink.closed != 1 {
		t.Fatalf("closed %d times", sink.closed)
	}
}

func TestLiveReceiverStallAndExpiry(t *testing.T) {
	key := seedKey(2)
	tp := Topics{"hanoi", "xa-1", "thon-3"}
	r := NewLiveReceiver(tp, []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}, 100*time.Millisecond, testLog)
	stalled := newSinkRec()
	r.Start("s1", stalled, time.Now().Add(time.Hour), func(reason string) { stalled.reasons <- reason })
	if got := waitReason(t, stalled); got != LiveEndedStalled {
		t.Fatalf("ended by %q, want stalled", got)
	}
	r2 := NewLiveReceiver(tp, []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}, time.Hour, testLog)
	expired := newSinkRec()
	r2.Start("s2", expired, time.Now().Add(50*time.Millisecond), func(reason string) { expired.reasons <- reason })
	if got := waitReason(t, expired); got != LiveEndedExpired {
		t.Fatalf("ended by %q, want expired", got)
	}
	// After its end, the session's chunks are unknown again.
	c := testChunk()
	c.Session = "s1"
	raw, _ := SignChunk(c, key)
	r.Deliver(tp.Live("s1"), raw)
	if st := r.Stats(); st.Unknown != 1 || st.Packets != 0 {
		t.Fatalf("stats after stall %+v", st)
	}
}
