package commune

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/loalang/loalang/uplink"
)

type liveSinkRec struct {
	mu     sync.Mutex
	pkts   [][]byte
	at     []time.Time
	closed bool
}

func (s *liveSinkRec) WritePacket(p []byte, at time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pkts, s.at = append(s.pkts, p), append(s.at, at)
	return nil
}
func (s *liveSinkRec) Close() error { s.mu.Lock(); s.closed = true; s.mu.Unlock(); return nil }

// TestLiveChunkerToVillageReceiver feeds ten packets through the commune's
// chunker into a village's uplink.LiveReceiver: the village gets all ten,
// in order, with their capture times, and the End chunk closes it.
func TestLiveChunkerToVillageReceiver(t *testing.T) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tp := uplink.Topics{Province: "hanoi", Commune: "xa-1", Site: "thon-3"}
	rx := uplink.NewLiveReceiver(tp, []ed25519.PublicKey{pub}, time.Minute, slog.New(slog.NewTextHandler(io.Discard, nil)))
	sink := &liveSinkRec{}
	ended := make(chan string, 1)
	if err := rx.Start("s1", sink, time.Hour, func(r string) { ended <- r }); err != nil {
		t.Fatal(err)
	}
	var envs int
	ch := newLiveChunker("s1", key, func(_ context.Context, env []byte) error {
		envs++
		return rx.Deliver(tp.Live("s1"), env)
	})
	ctx := context.Background()
	t0 := time.Date(2026, 9, 15, 8, 0, 0, 0, time.UTC)
	for i := range 10 {
		if err := ch.WritePacket(ctx, []byte{0x78, byte(i)}, t0.Add(time.Duration(i)*uplink.PacketDuration)); err != nil {
			t.Fatal(err)
		}
	}
	if err := ch.End(ctx); err != nil {
		t.Fatal(err)
	}
	if r := <-ended; r != uplink.LiveEndedByCommune {
		t.Fatalf("ended by %q", r)
	}
	if err := ch.WritePacket(ctx, []byte{1}, t0); err == nil {
		t.Fatal("a packet after End was accepted")
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if envs != 3 || len(sink.pkts) != 10 || !sink.closed {
		t.Fatalf("%d chunks, %d packets, closed %v", envs, len(sink.pkts), sink.closed)
	}
	for i, p := range sink.pkts {
		if p[1] != byte(i) || !sink.at[i].Equal(t0.Add(time.Duration(i)*uplink.PacketDuration)) {
			t.Fatalf("packet %d: %v at %s", i, p, sink.at[i])
		}
	}
}
