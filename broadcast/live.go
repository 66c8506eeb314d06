package broadcast

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/loalang/loalang/device/wire"
)

// liveQueue is how many packets (20 ms each) WritePacket buffers ahead of
// the publishing goroutine before it drops.
const liveQueue = 64

type livePacket struct {
	pkt []byte
	at  time.Time
}

// Live is live speech in progress. WritePacket feeds it 20 ms Opus packets;
// Close ends it cleanly.
type Live struct {
	id      string
	pkts    chan livePacket
	closing chan struct{}
	done    chan struct{}

	mu      sync.Mutex
	ended   bool
	closed  bool
	dropped int
}

// ID returns the broadcast id of the live speech.
func (l *Live) ID() string { return l.id }

// Done is closed when the live broadcast has ended for any reason.
func (l *Live) Done() <-chan struct{} { return l.done }

func (l *Live) markEnded() {
	l.mu.Lock()
	l.ended = true
	l.mu.Unlock()
}

// WritePacket queues one 20 ms Opus packet (RFC 6716) for broadcast. The
// packet is copied. captured is its capture time on the engine's clock —
// ideally mapped from the sender's RTP timestamps, arrival time otherwise;
// zero means now. It never blocks: when the publisher falls behind by more
// than 64 packets, the packet is dropped and counted. It returns ErrEnded
// once the broadcast has ended.
func (l *Live) WritePacket(pkt []byte, captured time.Time) error {
	if len(pkt) == 0 || len(pkt) > wire.MaxOpusPacket {
		return fmt.Errorf("%w: packet of %d bytes, want 1–%d", ErrInvalid, len(pkt), wire.MaxOpusPacket)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended || l.closed {
		return ErrEnded
	}
	select {
	case l.pkts <- livePacket{pkt: append([]byte(nil), pkt...), at: captured}:
	default:
		l.dropped++
	}
	return nil
}

// Close ends the live speech: queued packets are sent, the last frame is
// flagged, and stop (reason "done") is published. It waits for that and is
// idempotent.
func (l *Live) Close() error {
	l.mu.Lock()
	if !l.closed {
		l.closed = true
		close(l.closing)
	}
	l.mu.Unlock()
	<-l.done
	return nil
}

// Live starts live speech in req's zones, pre-empting lower priorities.
// Live speech is never queued: if a zone is held by equal or higher
// priority it returns ErrBusy naming the zone. The stream's start control
// is published with the first packet, whose capture time becomes start_at.
func (e *Engine) Live(ctx context.Context, req Request) (*Live, error) {
	b, err := e.prepare(ctx, req, true)
	if err != nil {
		return nil, err
	}
	b.live = &Live{
		id:      b.id,
		pkts:    make(chan livePacket, liveQueue),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	if err := e.arb.submitLive(b, e.clock.Now()); err != nil {
		return nil, err
	}
	return b.live, nil
}

// runLive publishes live packets as they come: frames of PacketsPerFrame
// consecutive packets (fewer when a frame has waited its own duration),
// PlayAt = start_at + seq·20 ms with the live play-out delay and FlagLive.
func (p *streamer) runLive(seg *segment, l *Live) {
	defer p.wg.Done()
	defer close(l.done)
	b := seg.b
	ppf := p.ppf
	frameDur := time.Duration(ppf) * packetDur

	maxAt := p.arb.liveLimit(seg)
	p.mu.Lock()
	delay := newLiveDelay(ppf, p.liveDelay, p.liveJitter)
	p.mu.Unlock()
	defer func() {
		// The next live stream starts from this one's jitter.
		if delay.est.have {
			p.mu.Lock()
			p.liveJitter = delay.est.jitter()
			p.mu.Unlock()
		}
	}()
	lastPkt := p.clock.Now()
	started := false
	var (
		ctlBytes []byte
		h        *hall
		buf      [][]byte
		bufSeq   uint32
		bufAt    time.Time
		nextSeq  uint32
	)
	defer func() {
		if h != nil {
			h.stop()
		}
	}()

	flush := func(last bool) {
		if len(buf) == 0 {
			return
		}
		f := wire.Frame{
			Flags:    wire.FlagLive,
			StreamID: seg.id,
			Seq:      bufSeq,
			PlayAt:   seg.startAt.Add(time.Duration(bufSeq) * packetDur).UnixMicro(),
			DelayMS:  uint16(delay.cur / time.Millisecond),
			Packets:  buf,
		}
		if last {
			f.Flags |= wire.FlagLast
		}
		p.sendFrame(seg, h, f)
		p.arb.liveProgress(seg, int(bufSeq)+len(buf))
		buf = nil
	}
	handle := func(pk livePacket) bool {
		now := p.clock.Now()
		lastPkt = now
		at := pk.at
		if at.IsZero() {
			at = now
		}
		// A talkspurt starts with the stream or after a pause that makes
		// the timeline jump (below); the delay may shrink at once there.
		talkspurt := !started || at.Sub(seg.startAt.Add(time.Duration(nextSeq)*packetDur)) > liveGap
		delay.observe(at, now, talkspurt)
		if !started {
			started = true
			// With a cold amplifier the first words are buffered: the
			// stream starts when the hall is ready and keeps that delay
			// until a pause longer than it lets the timeline catch up
			// (liveGap below).
			_, wired := p.owned(seg)
			if r := p.readyStart(now, wired, delay.cur); r.After(now) && r.After(at) {
				at = r
			}
			ctl := p.begin(seg, at)
			ctl.PlayoutDelayMS = int(delay.cur / time.Millisecond)
			var err error
			if ctlBytes, err = wire.Encode(ctl); err != nil {
				return false
			}
			h = &hall{out: p.out, ctx: seg.ctx, ctl: ctl}
			if attempted, ok := p.sendStarts(seg, ctlBytes); attempted > 0 && ok == 0 {
				return false
			}
			h.update(wired)
		}
		seq := nextSeq
		if at.Sub(seg.startAt.Add(time.Duration(seq)*packetDur)) > liveGap {
			seq = uint32((at.Sub(seg.startAt) + packetDur/2) / packetDur)
		}
		if len(buf) > 0 && seq != bufSeq+uint32(len(buf)) {
			flush(false)
		}
		if len(buf) == 0 {
			bufSeq, bufAt = seq, now
		}
		buf = append(buf, pk.pkt)
		nextSeq = seq + 1
		if len(buf) >= ppf {
			flush(false)
		}
		return true
	}
	end := func(wireReason string, state State, reason string) {
		p.sendStops(seg, wireReason)
		if !p.arb.liveEnded(seg, state, reason, p.clock.Now()) {
			return
		}
		l.mu.Lock()
		dropped := l.dropped
		l.mu.Unlock()
		if dropped > 0 {
			p.log.Warn("live packets dropped", "id", b.id, "dropped", dropped)
		}
	}
	fail := func() {
		p.arb.liveFailed(seg, "no zone accepted the stream start", p.clock.Now())
	}

	for {
		now := p.clock.Now()
		if !now.Before(maxAt) {
			flush(true)
			end(ReasonExpired, StateStopped, "maximum duration reached")
			return
		}
		if now.Sub(lastPkt) >= liveIdle {
			flush(true)
			end(ReasonDone, StateStopped, "no live audio for 30s")
			return
		}
		if len(buf) > 0 && now.Sub(bufAt) >= frameDur {
			flush(false)
		}
		if started {
			p.sendStarts(seg, ctlBytes)
		}
		wait := min(maxAt.Sub(now), lastPkt.Add(liveIdle).Sub(now))
		if len(buf) > 0 {
			wait = min(wait, bufAt.Add(frameDur).Sub(now))
		}
		c, stop := p.timer(wait)
		select {
		case pk := <-l.pkts:
			stop()
			if !handle(pk) {
				fail()
				return
			}
		case <-c:
		case <-seg.kick:
			stop()
		case <-l.closing:
			stop()
			for drained := false; !drained; {
				select {
				case pk := <-l.pkts:
					if !handle(pk) {
						fail()
						return
					}
				default:
					drained = true
				}
			}
			flush(true)
			end(ReasonDone, StateDone, "")
			return
		case <-seg.ctx.Done():
			stop()
			return
		}
	}
}
