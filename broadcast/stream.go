package broadcast

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/loalang/loalang/device/wire"
)

// zoneLock returns the lock that orders every publish to one zone, so that
// a stop for a stream is never overtaken by that stream's next frame.
func (e *Engine) zoneLock(z string) *sync.Mutex {
	e.mu.Lock()
	defer e.mu.Unlock()
	l := e.zoneLocks[z]
	if l == nil {
		l = &sync.Mutex{}
		e.zoneLocks[z] = l
	}
	return l
}

// publishZone publishes the stop controls pending for zone and then, if
// topic is set and seg (when non-nil) still holds the zone, payload on
// topic. It reports whether payload was published (attempted).
func (e *Engine) publishZone(ctx context.Context, seg *segment, zone, topic string, qos byte, payload []byte) (bool, error) {
	zl := e.zoneLock(zone)
	zl.Lock()
	defer zl.Unlock()

	e.mu.Lock()
	stops := e.zoneStops[zone]
	delete(e.zoneStops, zone)
	own := seg == nil || (!seg.removed && e.owner[zone] == seg)
	e.mu.Unlock()

	// Stops a segment flushes on behalf of others must not die with it.
	stopCtx := ctx
	if seg != nil {
		stopCtx = e.ctx
	}
	var firstErr error
	for _, st := range stops {
		b, err := wire.Encode(wire.StreamControl{Op: wire.StreamStop, StreamID: st.stream, Reason: st.reason})
		if err == nil {
			err = e.publish(stopCtx, zone, e.topics.ZoneStream(zone), 1, b, ctlTimeout)
		}
		if err != nil {
			e.log.Warn("publish stop", "zone", zone, "stream", st.stream, "reason", st.reason, "err", err)
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
	return true, e.publish(ctx, zone, topic, qos, payload, timeout)
}

// publish sends one message with a bounded wait and counts it.
func (e *Engine) publish(ctx context.Context, zone, topic string, qos byte, payload []byte, timeout time.Duration) error {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	err := e.deps.Publisher.Publish(pctx, topic, qos, false, payload)
	cancel()
	size := uint64(wire.PublishSize(topic, qos, len(payload)))
	e.statsMu.Lock()
	st := e.stats[zone]
	if st == nil {
		st = &ZoneStats{}
		e.stats[zone] = st
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
	e.statsMu.Unlock()
	if err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	return nil
}

// owned returns the zones seg holds, and the wired ones among them.
func (e *Engine) owned(seg *segment) (zones, wired []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for z := range seg.zones {
		zones = append(zones, z)
		if e.wired[z] {
			wired = append(wired, z)
		}
	}
	slices.Sort(zones)
	slices.Sort(wired)
	return zones, wired
}

// startControl is the start message of seg. Called with e.mu held or from
// seg's own goroutine after startAt is set.
func (e *Engine) startControl(seg *segment) wire.StreamControl {
	b := seg.b
	ctl := wire.StreamControl{
		Op:             wire.StreamStart,
		StreamID:       seg.id,
		Codec:          wire.CodecOpus,
		Priority:       string(b.req.Priority),
		Volume:         b.volume,
		StartAt:        seg.startAt.UnixMicro(),
		PlayoutDelayMS: int(e.cfg.PlayoutDelay / time.Millisecond),
	}
	if seg.live {
		ctl.PlayoutDelayMS = int(e.cfg.LiveDelay / time.Millisecond)
	} else {
		ctl.Packets = uint32(len(b.packets) - seg.base)
	}
	return ctl
}

// sendStarts publishes seg's start control on the zones waiting for one and
// returns how many were attempted and how many succeeded.
func (e *Engine) sendStarts(seg *segment, ctl []byte) (attempted, ok int) {
	e.mu.Lock()
	zs := seg.starts
	seg.starts = nil
	e.mu.Unlock()
	for _, z := range zs {
		sent, err := e.publishZone(seg.ctx, seg, z, e.topics.ZoneStream(z), 1, ctl)
		if !sent {
			continue
		}
		attempted++
		if err == nil {
			ok++
		} else {
			e.log.Warn("publish start", "zone", z, "stream", seg.id, "err", err)
		}
	}
	return attempted, ok
}

// readyStart returns the start time of a stream asked for at now: now, or
// later when the hall output needs longer than the play-out delay to be
// ready in the wired zones. Every zone of the stream gets the same start,
// so IP speakers and the hall line stay together.
func (e *Engine) readyStart(now time.Time, wired []string, delay time.Duration) time.Time {
	w, ok := e.deps.Output.(Warmer)
	if !ok || len(wired) == 0 {
		return now
	}
	ready := w.ReadyIn(wired)
	if ready <= delay {
		return now
	}
	e.log.Info("stream start waits for the hall", "ready_in", ready, "delay", delay, "zones", wired)
	return now.Add(ready - delay)
}

// hall tracks a segment's use of the Output.
type hall struct {
	e     *Engine
	ctx   context.Context
	ctl   wire.StreamControl
	zones []string
	on    bool
}

// update (re)starts or stops the hall output to follow the wired zones the
// segment holds.
func (h *hall) update(wired []string) {
	if h.e.deps.Output == nil {
		return
	}
	switch {
	case len(wired) == 0 && h.on:
		h.e.deps.Output.Stop(h.ctl.StreamID)
		h.on = false
	case len(wired) > 0 && (!h.on || !slices.Equal(wired, h.zones)):
		h.e.deps.Output.Start(h.ctx, h.ctl, wired)
		h.on = true
	}
	h.zones = wired
}

func (h *hall) frame(f wire.Frame) {
	if h.on {
		h.e.deps.Output.Frame(f)
	}
}

func (h *hall) stop() {
	if h.on {
		h.e.deps.Output.Stop(h.ctl.StreamID)
		h.on = false
	}
}

// runFile paces a stored-audio segment: every frame is published, one
// message per zone, when its play-at time (start_at + seq·20 ms, on the
// engine clock) is at most publishLead away; then, once the last frame has
// played, stop (reason "done").
func (e *Engine) runFile(seg *segment) {
	defer e.wg.Done()
	total := len(seg.packets) - seg.base
	ppf := e.cfg.PacketsPerFrame

	_, wired := e.owned(seg)
	start := e.readyStart(e.clock.Now(), wired, e.cfg.PlayoutDelay)
	e.mu.Lock()
	seg.startAt = start
	ctl := e.startControl(seg)
	e.mu.Unlock()
	ctlBytes, err := wire.Encode(ctl)
	if err != nil {
		e.segmentEnded(seg, ZoneFailed)
		return
	}
	if attempted, ok := e.sendStarts(seg, ctlBytes); attempted > 0 && ok == 0 {
		e.segmentEnded(seg, ZoneFailed)
		return
	}
	h := &hall{e: e, ctx: seg.ctx, ctl: ctl}
	defer h.stop()
	// The hall starts at once, not with the first frame: a cold amplifier
	// warms up while the start time approaches.
	h.update(wired)

	delayMS := uint16(e.cfg.PlayoutDelay / time.Millisecond)
	for seq := 0; seq < total; {
		if seg.ctx.Err() != nil {
			return
		}
		e.sendStarts(seg, ctlBytes) // re-sends asked for by DeviceOnline
		due := seg.startAt.Add(time.Duration(seq)*packetDur - publishLead)
		if wait := due.Sub(e.clock.Now()); wait > 0 {
			c, stop := e.timer(wait)
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
		e.sendFrame(seg, h, f)
		seq += n
		e.mu.Lock()
		seg.next = seq
		e.mu.Unlock()
	}
	// Hold the zones until the last frame has played out, then stop.
	end := seg.startAt.Add(time.Duration(total)*packetDur + e.cfg.PlayoutDelay)
	for {
		wait := end.Sub(e.clock.Now())
		if wait <= 0 {
			break
		}
		c, stop := e.timer(wait)
		select {
		case <-c:
		case <-seg.kick:
			e.sendStarts(seg, ctlBytes)
		case <-seg.ctx.Done():
		}
		stop()
		if seg.ctx.Err() != nil {
			return
		}
	}
	e.sendStops(seg, ReasonDone)
	h.stop()
	e.segmentEnded(seg, ZoneDone)
}

// sendFrame publishes f once on the audio topic of every zone seg holds and
// hands it to the hall output.
func (e *Engine) sendFrame(seg *segment, h *hall, f wire.Frame) {
	payload, err := f.MarshalBinary()
	if err != nil { // packets were validated; this is a programming error
		e.log.Error("marshal frame", "stream", seg.id, "err", err)
		return
	}
	zones, wired := e.owned(seg)
	for _, z := range zones {
		if _, err := e.publishZone(seg.ctx, seg, z, e.topics.ZoneAudio(z), 0, payload); err != nil && seg.ctx.Err() == nil {
			e.log.Debug("publish frame", "zone", z, "stream", seg.id, "seq", f.Seq, "err", err)
		}
	}
	h.update(wired)
	h.frame(f)
}

// sendStops publishes stop with reason on every zone seg still holds.
func (e *Engine) sendStops(seg *segment, reason string) {
	b, err := wire.Encode(wire.StreamControl{Op: wire.StreamStop, StreamID: seg.id, Reason: reason})
	if err != nil {
		return
	}
	zones, _ := e.owned(seg)
	for _, z := range zones {
		if _, err := e.publishZone(seg.ctx, seg, z, e.topics.ZoneStream(z), 1, b); err != nil {
			e.log.Warn("publish stop", "zone", z, "stream", seg.id, "reason", reason, "err", err)
		}
	}
}

// segmentEnded releases seg's zones with the given zone state, settles its
// broadcast and hands the zones on.
func (e *Engine) segmentEnded(seg *segment, zoneState ZoneStatus) {
	now := e.clock.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if seg.removed {
		return
	}
	b := seg.b
	for z := range seg.zones {
		b.legs[z].state = zoneState
	}
	e.dropSegment(seg)
	e.settle(b, now)
	e.pass(now)
}
