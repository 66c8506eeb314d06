package uplink

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
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
	if err := r.Start("s1", sink, time.Hour, func(reason string) { sink.reasons <- reason }); err != nil {
		t.Fatal(err)
	}
	if err := r.Start("s1", sink, time.Hour, nil); err == nil {
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
	r.Start("live-1", sink, time.Hour, nil)
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
	r.Start("s1", stalled, time.Hour, func(reason string) { stalled.reasons <- reason })
	if got := waitReason(t, stalled); got != LiveEndedStalled {
		t.Fatalf("ended by %q, want stalled", got)
	}
	r2 := NewLiveReceiver(tp, []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}, time.Hour, testLog)
	expired := newSinkRec()
	r2.Start("s2", expired, 50*time.Millisecond, func(reason string) { expired.reasons <- reason })
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

// livePlayer stands in for the broadcast engine: it records the live
// plays and hands out recording sinks.
type livePlayer struct {
	recordingPlayer
	lives []Play
	sinks []*sinkRec
}

func (p *livePlayer) PlayLive(_ context.Context, pl Play) (string, LiveSink, error) {
	p.lives = append(p.lives, pl)
	s := newSinkRec()
	p.sinks = append(p.sinks, s)
	return fmt.Sprintf("live%d", len(p.lives)), s, nil
}

// TestCommandsPlayLive runs a signed live command through the handler:
// it starts a live broadcast at the command's priority and zones, the
// session's chunks reach it, and a village without live support refuses
// the command with the reason play instead of playing silence.
func TestCommandsPlayLive(t *testing.T) {
	db := newDB(t)
	clk := newClock()
	tp := testTopics(t)
	ob, err := OpenOutbox(db, tp, 0, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	commune := seedKey(2)
	keys := Keys{Commune: []ed25519.PublicKey{commune.Public().(ed25519.PublicKey)}}
	rx := NewLiveReceiver(tp, keys.Commune, time.Minute, testLog)
	defer rx.Close()
	pl := &livePlayer{}
	h := NewCommands(CommandsConfig{Topics: tp, Keys: keys, Now: clk.Now, Live: rx}, db, ob, pl, testLog)
	cmd := Command{ID: "live-a", Nonce: NewNonce(), Level: LevelCommune, Sender: tp.Commune, Issued: clk.Now(), Expires: clk.Now().Add(10 * time.Minute),
		Target: Target{Province: tp.Province, Commune: tp.Commune, Zones: []string{"north"}}, Urgency: UrgencyRoutine, Live: &LiveRef{Session: "sa"}}
	env, err := Sign(cmd, commune)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Handle(context.Background(), env); err != nil {
		t.Fatalf("live command refused: %v", err)
	}
	if len(pl.lives) != 1 || len(pl.plays) != 0 || pl.lives[0].Priority != "priority" || !slices.Equal(pl.lives[0].Zones, []string{"north"}) {
		t.Fatalf("live plays %+v, plays %+v", pl.lives, pl.plays)
	}
	c := testChunk()
	c.Session = "sa"
	raw, _ := SignChunk(c, commune)
	if err := rx.Deliver(tp.Live("sa"), raw); err != nil {
		t.Fatal(err)
	}
	pl.sinks[0].mu.Lock()
	n := len(pl.sinks[0].packets)
	pl.sinks[0].mu.Unlock()
	if n != 4 {
		t.Fatalf("%d packets reached the live broadcast", n)
	}
	var started bool
	for _, r := range reports(t, ob) {
		if r.Outcome == OutcomeStarted && r.BroadcastID == "live1" {
			started = true
		}
	}
	if !started {
		t.Fatal("no started report for the live broadcast")
	}

	// Without a receiver the same kind of command is refused.
	h2 := NewCommands(CommandsConfig{Topics: tp, Keys: keys, Now: clk.Now}, db, ob, pl, testLog)
	cmd.ID, cmd.Nonce, cmd.Live.Session = "live-b", NewNonce(), "sb"
	env, _ = Sign(cmd, commune)
	if err := h2.Handle(context.Background(), env); !errors.Is(err, ErrPlay) || Code(err) != "play" {
		t.Fatalf("live command without a receiver: %v", err)
	}
	if len(pl.lives) != 1 {
		t.Fatal("a refused live command started a broadcast")
	}
}
