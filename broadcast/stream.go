package broadcast

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/loalang/loalang/device/wire"
)

// streamer is the engine's stream publisher: for every segment the
// arbiter launches it runs one goroutine that stamps play-at times
// (start_at + seq·20 ms on the engine clock) and publishes the start
// control, the audio frames and the stop control on each zone the segment
// holds, paced publishLead ahead of play-out, and feeds the hall output.
// It decides nothing about who holds a zone: before every publish it asks
// the arbiter (owned, takeStops), and it reports a segment's end back
// (segmentEnded, liveEnded, liveFailed). It also counts what it published
// per zone (Stats).
//
// Invariants: every publish to a zone happens under that zone's lock
// (zoneLock), after the stop controls pending there, so a stop is never
// overtaken by its stream's next frame; a segment's goroutine is the only
// writer of its start time and progress. mu guards zoneLocks, liveJitter
// and the counters only; it is a leaf (nothing else is locked under it).
type streamer struct {
	ppf       int
	playout   time.Duration
	liveDelay time.Duration
	pub       Publisher
	out       Output
	clock     Clock
	topics    wire.Topics
	wired     map[string]bool
	log       *slog.Logger
	arb       *arbiter
	// ctx is the engine's life: stops flushed on behalf of other segments
	// use it, not the flushing segment's.
	ctx context.Context
	wg  sync.WaitGroup

	mu        sync.Mutex
	zoneLocks map[string]*sync.Mutex
	// liveJitter is the last live stream's jitter estimate, the prior of
	// the next one's play-out delay (jitter.go).
	liveJitter time.Duration
	stats      map[string]*ZoneStats
	since      time.Time
}

// start runs seg's goroutine. Called by the arbiter with its lock held.
func (p *streamer) start(seg *segment) {
	p.wg.Add(1)
	if seg.live {
		go p.runLive(seg, seg.b.live)
	} else {
		go p.runFile(seg)
	}
}

// stats returns the per-zone publish counters.
func (p *streamer) counters() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Stats{Since: p.since, Zones: make(map[string]ZoneStats, len(p.stats))}
	for z, v := range p.stats {
		s.Zones[z] = *v
	}
	return s
}

// flushZones publishes the pending stop controls of zones, one goroutine per
// zone so that one slow zone does not hold up the others.
func (p *streamer) flushZones(ctx context.Context, zones []string) error {
	if len(zones) == 0 {
		return nil
	}
	var wg sync.WaitGroup
	errs := make([]error, len(zones))
	for i, z := range zones {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = p.publishZone(ctx, nil, z, "", 0, nil)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// zoneLock returns the lock that orders every publish to one zone, so that
// a stop for a stream is never overtaken by that stream's next frame.
func (p *streamer) zoneLock(z string) *sync.Mutex {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.zoneLocks[z]
	if l == nil {
		l = &sync.Mutex{}
		p.zoneLocks[z] = l
	}
	return l
}

// publishZone publishes the stop controls pending for zone and then, if
// topic is set and seg (when non-nil) still holds the zone, payload on
// topic. It reports whether payload was published (attempted).
func (p *streamer) publishZone(ctx context.Context, seg *segment, zone, topic string, qos byte, payload []byte) (bool, error) {
	zl := p.zoneLock(zone)
	zl.Lock()
	defer zl.Unlock()

	stops, own := p.arb.takeStops(zone, seg)

	// Stops a segment flushes on behalf of others must not die with it.
	stopCtx := ctx
	if seg != nil {
		stopCtx = p.ctx
	}
	var firstErr error
	for _, st := range stops {
		b, err := wire.Encode(wire.StreamControl{Op: wire.StreamStop, StreamID: st.stream, Reason: st.reason})
		if err == nil {
			err = p.publish(stopCtx, zone, p.topics.ZoneStream(zone), 1, b, ctlTimeout)
		}
		if err != nil {
			p.log.Warn("publish stop", "zone", zone, "stream", st.stream, "reason", st.reason, "err", err)
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	if topic == "" {
		return false, firstErr
	}
	if !own {
		return false, nil
	}
	timeout := frameTimeout
	if qos > 0 {
		timeout = ctlTimeout
	}
	return true, p.publish(ctx, zone, topic, qos, payload, timeout)
}

// publish sends one message with a bounded wait and counts it.
func (p *streamer) publish(ctx context.Context, zone, topic string, qos byte, payload []byte, timeout time.Duration) error {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	err := p.pub.Publish(pctx, topic, qos, false, payload)
	cancel()
	size := uint64(wire.PublishSize(topic, qos, len(payload)))
	p.mu.Lock()
	st := p.stats[zone]
	if st == nil {
		st = &ZoneStats{}
		p.stats[zone] = st
	}
	switch {
	case err != nil:
		st.Errors++
	case qos == 0:
		st.AudioMessages++
		st.AudioBytes += size
	default:
		st.ControlMessages++
		st.ControlBytes += size
	}
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	return nil
}

// owned returns the zones seg holds, and the wired ones among them.
func (p *streamer) owned(seg *segment) (zones, wired []string) {
	zones = p.arb.owned(seg)
	for _, z := range zones {
		if p.wired[z] {
			wired = append(wired, z)
		}
	}
	return zones, wired
}

// begin fixes seg's start time and returns its start control.
func (p *streamer) begin(seg *segment, at time.Time) wire.StreamControl {
	info := p.arb.begin(seg, at)
	ctl := wire.StreamControl{
		Op:             wire.StreamStart,
		StreamID:       seg.id,
		Codec:          wire.CodecOpus,
		Priority:       string(info.priority),
		Volume:         info.volume,
		StartAt:        at.UnixMicro(),
		PlayoutDelayMS: int(p.playout / time.Millisecond),
	}
	if seg.live {
		ctl.PlayoutDelayMS = int(p.liveDelay / time.Millisecond)
	} else {
		ctl.Packets = uint32(info.packets)
	}
	return ctl
}

// sendStarts publishes seg's start control on the zones waiting for one and
// returns how many were attempted and how many succeeded.
func (p *streamer) sendStarts(seg *segment, ctl []byte) (attempted, ok int) {
	for _, z := range p.arb.takeStarts(seg) {
		sent, err := p.publishZone(seg.ctx, seg, z, p.topics.ZoneStream(z), 1, ctl)
		if !sent {
			continue
		}
		attempted++
		if err == nil {
			ok++
		} else {
			p.log.Warn("publish start", "zone", z, "stream", seg.id, "err", err)
		}
	}
	return attempted, ok
}

// readyStart returns the start time of a stream asked for at now: now, or
// later when the hall output needs longer than the play-out delay to be
// ready in the wired zones. Every zone of the stream gets the same start,
// so IP speakers and the hall line stay together.
func (p *streamer) readyStart(now time.Time, wired []string, delay time.Duration) time.Time {
	w, ok := p.out.(Warmer)
	if !ok || len(wired) == 0 {
		return now
	}
	ready := w.ReadyIn(wired)
	if ready <= delay {
		return now
	}
	p.log.Info("stream start waits for the hall", "ready_in", ready, "delay", delay, "zones", wired)
	return now.Add(ready - delay)
}

// hall tracks a segment's use of the Output.
type hall struct {
	out   Output
	ctx   context.Context
	ctl   wire.StreamControl
	zones []string
	on    bool
}

// update (re)starts or stops the hall output to follow the wired zones the
// segment holds.
func (h *hall) update(wired []string) {
	if h.out == nil {
		return
	}
	switch {
	case len(wired) == 0 && h.on:
		h.out.Stop(h.ctl.StreamID)
		h.on = false
	case len(wired) > 0 && (!h.on || !slices.Equal(wired, h.zones)):
		h.out.Start(h.ctx, h.ctl, wired)
		h.on = true
	}
	h.zones = wired
}

func (h *hall) frame(f wire.Frame) {
	if h.on {
		h.out.Frame(f)
	}
}

func (h *hall) stop() {
	if h.on {
		h.out.Stop(h.ctl.StreamID)
		h.on = false
	}
}

// runFile paces a stored-audio segment: every frame is published, one
// message per zone, when its play-at time (start_at + seq·20 ms, on the
// engine clock) is at most publishLead away; then, once the last frame has
// played, stop (reason "done").
func (p *streamer) runFile(seg *segment) {
	defer p.wg.Done()
	total := len(seg.packets) - seg.base
	ppf := p.ppf

	_, wired := p.owned(seg)
	ctl := p.begin(seg, p.readyStart(p.clock.Now(), wired, p.playout))
	ctlBytes, err := wire.Encode(ctl)
	if err != nil {
		p.arb.segmentEnded(seg, ZoneFailed, p.clock.Now())
		return
	}
	if attempted, ok := p.sendStarts(seg, ctlBytes); attempted > 0 && ok == 0 {
		p.arb.segmentEnded(seg, ZoneFailed, p.clock.Now())
		return
	}
	h := &hall{out: p.out, ctx: seg.ctx, ctl: ctl}
	defer h.stop()
	// The hall starts at once, not with the first frame: a cold amplifier
	// warms up while the start time approaches.
	h.update(wired)

	delayMS := uint16(p.playout / time.Millisecond)
	for seq := 0; seq < total; {
		if seg.ctx.Err() != nil {
			return
		}
		p.sendStarts(seg, ctlBytes) // re-sends asked for by DeviceOnline
		due := seg.startAt.Add(time.Duration(seq)*packetDur - publishLead)
		if wait := due.Sub(p.clock.Now()); wait > 0 {
			c, stop := p.timer(wait)
			select {
			case <-c:
			case <-seg.kick:
			case <-seg.ctx.Done():
			}
			stop()
			continue
		}
		n := min(ppf, total-seq)
		f := wire.Frame{
			StreamID: seg.id,
			Seq:      uint32(seq),
			PlayAt:   seg.startAt.Add(time.Duration(seq) * packetDur).UnixMicro(),
			DelayMS:  delayMS,
			Packets:  seg.packets[seg.base+seq : seg.base+seq+n],
		}
		if seq+n == total {
			f.Flags |= wire.FlagLast
		}
		p.sendFrame(seg, h, f)
		seq += n
		p.arb.progress(seg, seq)
	}
	// Hold the zones until the last frame has played out, then stop.
	end := seg.startAt.Add(time.Duration(total)*packetDur + p.playout)
	for {
		wait := end.Sub(p.clock.Now())
		if wait <= 0 {
			break
		}
		c, stop := p.timer(wait)
		select {
		case <-c:
		case <-seg.kick:
			p.sendStarts(seg, ctlBytes)
		case <-seg.ctx.Done():
		}
		stop()
		if seg.ctx.Err() != nil {
			return
		}
	}
	p.sendStops(seg, ReasonDone)
	h.stop()
	p.arb.segmentEnded(seg, ZoneDone, p.clock.Now())
}

// sendFrame publishes f once on the audio topic of every zone seg holds and
// hands it to the hall output.
func (p *streamer) sendFrame(seg *segment, h *hall, f wire.Frame) {
	payload, err := f.MarshalBinary()
	if err != nil { // packets were validated; this is a programming error
		p.log.Error("marshal frame", "stream", seg.id, "err", err)
		return
	}
	zones, wired := p.owned(seg)
	for _, z := range zones {
		if _, err := p.publishZone(seg.ctx, seg, z, p.topics.ZoneAudio(z), 0, payload); err != nil && seg.ctx.Err() == nil {
			p.log.Debug("publish frame", "zone", z, "stream", seg.id, "seq", f.Seq, "err", err)
		}
	}
	h.update(wired)
	h.frame(f)
}

// sendStops publishes stop with reason on every zone seg still holds.
func (p *streamer) sendStops(seg *segment, reason string) {
	b, err := wire.Encode(wire.StreamControl{Op: wire.StreamStop, StreamID: seg.id, Reason: reason})
	if err != nil {
		return
	}
	zones, _ := p.owned(seg)
	for _, z := range zones {
		if _, err := p.publishZone(seg.ctx, seg, z, p.topics.ZoneStream(z), 1, b); err != nil {
			p.log.Warn("publish stop", "zone", z, "stream", seg.id, "reason", reason, "err", err)
		}
	}
}

// timer returns a channel that fires after d on the engine's clock, and a
// function that releases it.
func (p *streamer) timer(d time.Duration) (<-chan time.Time, func()) {
	if d < 0 {
		d = 0
	}
	if ac, ok := p.clock.(afterClock); ok {
		return ac.After(d), func() {}
	}
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}
