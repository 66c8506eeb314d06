package uplink

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// LiveSink is a started local live broadcast, as broadcast.Live is: the
// receiver writes Opus packets into it and closes it when the session
// ends.
type LiveSink interface {
	WritePacket(pkt []byte, captured time.Time) error
	Close() error
}

// LiveStall is how long a live session may go without a chunk before the
// village ends it: the commune or the link is gone.
const LiveStall = 5 * time.Second

// Reasons a live session ended.
const (
	LiveEndedByCommune = "end"
	LiveEndedStalled   = "stalled"
	LiveEndedExpired   = "expired"
	LiveEndedClosed    = "closed"
)

// LiveReceiver routes signed live chunks (docs/protocol.md, "Live
// speech") to the village's active live broadcasts, by session. Chunks of
// a session it is not playing are dropped before any signature check, so
// a flood on the live topics costs a map lookup, not an Ed25519 verify.
type LiveReceiver struct {
	topics  Topics
	trusted []ed25519.PublicKey
	stall   time.Duration
	log     *slog.Logger

	ending sync.WaitGroup // sinks being closed

	mu       sync.Mutex
	sessions map[string]*liveSession
	stats    LiveStats
}

// LiveStats counts what the receiver did with chunks.
type LiveStats struct {
	// Unknown chunks were dropped unverified (no such session).
	Unknown uint64
	// Verified chunks had their signature checked; Bad failed it or the
	// field checks; Stale had a seq not above the last one.
	Verified, Bad, Stale uint64
	// Packets were written to a sink.
	Packets uint64
}

type liveSession struct {
	sink    LiveSink
	lastSeq uint64
	stall   *time.Timer
	expire  *time.Timer
	onEnd   func(reason string)
	ended   bool
}

// NewLiveReceiver returns a receiver that trusts the commune's keys.
// stall <= 0 means LiveStall.
func NewLiveReceiver(t Topics, commune []ed25519.PublicKey, stall time.Duration, log *slog.Logger) *LiveReceiver {
	if stall <= 0 {
		stall = LiveStall
	}
	return &LiveReceiver{topics: t, trusted: commune, stall: stall, log: log.With("component", "uplink-live"), sessions: map[string]*liveSession{}}
}

// Start registers a session announced by a verified live command: its
// chunks go to sink until an End chunk, LiveStall without a chunk, or
// the command's expiry (after lifetime, measured on the caller's clock),
// whichever comes first; then sink is closed and onEnd called
// once with the reason.
func (r *LiveReceiver) Start(session string, sink LiveSink, lifetime time.Duration, onEnd func(reason string)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.sessions[session]; ok {
		return fmt.Errorf("live session %q: already playing", session)
	}
	s := &liveSession{sink: sink, onEnd: onEnd}
	r.sessions[session] = s
	s.stall = time.AfterFunc(r.stall, func() { r.end(session, s, LiveEndedStalled) })
	s.expire = time.AfterFunc(lifetime, func() { r.end(session, s, LiveEndedExpired) })
	return nil
}

// Deliver handles one message from the live filter. It returns nil for a
// chunk played or dropped as unknown, and the reason otherwise.
func (r *LiveReceiver) Deliver(topic string, raw []byte) error {
	session := r.topics.LiveSession(topic)
	r.mu.Lock()
	s := r.sessions[session]
	if s == nil {
		r.stats.Unknown++
		r.mu.Unlock()
		return nil
	}
	r.stats.Verified++
	r.mu.Unlock()
	c, err := OpenChunk(raw, r.trusted)
	if err == nil && c.Session != session {
		err = fmt.Errorf("%w: chunk of session %q on the topic of %q", ErrMalformed, c.Session, session)
	}
	r.mu.Lock()
	if err != nil {
		r.stats.Bad++
		r.mu.Unlock()
		r.log.Warn("live chunk refused", "session", session, "err", err)
		return err
	}
	if s.ended || c.Seq <= s.lastSeq {
		r.stats.Stale++
		r.mu.Unlock()
		return fmt.Errorf("live chunk %d of %q: stale (last %d)", c.Seq, session, s.lastSeq)
	}
	s.lastSeq = c.Seq
	s.stall.Reset(r.stall)
	r.stats.Packets += uint64(len(c.Packets))
	r.mu.Unlock()
	var werr error
	for i, p := range c.Packets {
		werr = errors.Join(werr, s.sink.WritePacket(p, c.Captured.Add(time.Duration(i)*PacketDuration)))
	}
	if c.End {
		r.end(session, s, LiveEndedByCommune)
	}
	if werr != nil {
		return fmt.Errorf("live chunk %d of %q: %w", c.Seq, session, werr)
	}
	return nil
}

// end closes a session once.
func (r *LiveReceiver) end(session string, s *liveSession, reason string) {
	r.mu.Lock()
	if s.ended {
		r.mu.Unlock()
		return
	}
	s.ended = true
	s.stall.Stop()
	s.expire.Stop()
	if r.sessions[session] == s {
		delete(r.sessions, session)
	}
	r.ending.Add(1)
	r.mu.Unlock()
	// Closing a broadcast.Live waits for its last frame to be published;
	// end may run on paho's delivery goroutine, which must not block.
	go func() {
		defer r.ending.Done()
		if err := s.sink.Close(); err != nil {
			r.log.Warn("live sink close", "session", session, "err", err)
		}
		r.log.Info("live session ended", "session", session, "reason", reason)
		if s.onEnd != nil {
			s.onEnd(reason)
		}
	}()
}

// Close ends every session and waits until their sinks are closed.
func (r *LiveReceiver) Close() {
	r.mu.Lock()
	all := make(map[string]*liveSession, len(r.sessions))
	for k, v := range r.sessions {
		all[k] = v
	}
	r.mu.Unlock()
	for k, s := range all {
		r.end(k, s, LiveEndedClosed)
	}
	r.ending.Wait()
}

// Stats returns the chunk counters.
func (r *LiveReceiver) Stats() LiveStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}
