package commune

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/loalang/loalang/uplink"
)

// liveChunker batches a live session's 20 ms Opus packets into signed
// chunks of uplink.MaxChunkPackets (80 ms) and hands each to send, which
// publishes it at QoS 0 on the session's live topic (docs/protocol.md,
// "Live speech"). It is the commune side of live speech; the WHIP
// endpoint that feeds it from an approver's browser is not built yet
// (docs/commune.md, "Live speech from the commune").
type liveChunker struct {
	session string
	key     ed25519.PrivateKey
	send    func(ctx context.Context, envelope []byte) error

	mu       sync.Mutex
	seq      uint64
	pending  [][]byte
	captured time.Time
	ended    bool
}

func newLiveChunker(session string, key ed25519.PrivateKey, send func(ctx context.Context, envelope []byte) error) *liveChunker {
	return &liveChunker{session: session, key: key, send: send}
}

// WritePacket adds one Opus packet captured at captured; every fourth
// packet flushes a chunk.
func (c *liveChunker) WritePacket(ctx context.Context, pkt []byte, captured time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return errors.New("live session ended")
	}
	if len(pkt) == 0 || len(pkt) > uplink.MaxPacketBytes {
		return fmt.Errorf("live packet of %d bytes", len(pkt))
	}
	if len(c.pending) == 0 {
		c.captured = captured
	}
	c.pending = append(c.pending, append([]byte(nil), pkt...))
	if len(c.pending) < uplink.MaxChunkPackets {
		return nil
	}
	return c.flushLocked(ctx, false)
}

// End flushes what is pending with the End mark; later packets are
// refused.
func (c *liveChunker) End(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return nil
	}
	c.ended = true
	if c.captured.IsZero() {
		c.captured = time.Now()
	}
	return c.flushLocked(ctx, true)
}

func (c *liveChunker) flushLocked(ctx context.Context, end bool) error {
	c.seq++
	env, err := uplink.SignChunk(uplink.LiveChunk{Session: c.session, Seq: c.seq, Captured: c.captured, Packets: c.pending, End: end}, c.key)
	c.pending = nil
	if err != nil {
		return fmt.Errorf("live chunk %d: %w", c.seq, err)
	}
	if err := c.send(ctx, env); err != nil {
		return fmt.Errorf("publish live chunk %d: %w", c.seq, err)
	}
	return nil
}
