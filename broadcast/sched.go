package broadcast

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/loalang/loalang/device/wire"
)

// Start validates req, loads its audio and starts it in every zone, pre-empting
// broadcasts of lower priority there. If a zone is held by a broadcast of
// equal or higher priority, the whole broadcast is queued (state queued) and
// starts once all its zones are free. ctx bounds loading the audio only; the
// broadcast outlives it.
func (e *Engine) Start(ctx context.Context, req Request) (Broadcast, error) {
	b, err := e.prepare(ctx, req, false)
	if err != nil {
		return Broadcast{}, err
	}
	now := e.clock.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return Broadcast{}, ErrClosed
	}
	b.created = now
	e.register(b)
	if z := e.blockedBy(b.rank, b.zones); z != "" {
		b.state = StateQueued
		e.queue = append(e.queue, b)
		e.log.Info("broadcast queued", "id", b.id, "zone", z, "priority", b.req.Priority, "actor", b.req.Actor)
		e.record(b)
	} else {
		e.admit(b, b.zones, now)
	}
	return e.snapshot(b), nil
}

// Stop stops broadcast id (playing, pre-empted or queued) on behalf of actor,
// publishing stop (reason "stopped") in every zone it holds.
func (e *Engine) Stop(ctx context.Context, id, actor string) error {
	now := e.clock.Now()
	e.mu.Lock()
	b, ok := e.all[id]
	if !ok {
		e.mu.Unlock()
		return fmt.Errorf("stop %s: %w", id, ErrNotFound)
	}
	if b.terminal {
		e.mu.Unlock()
		return fmt.Errorf("stop %s (%s): %w", id, b.state, ErrNotActive)
	}
	zones := e.stopLocked(b, ReasonStopped, "stopped by "+actorName(actor), now)
	e.pass(now)
	e.mu.Unlock()
	e.log.Info("broadcast stopped", "id", id, "actor", actor)
	ctx, cancel := context.WithTimeout(ctx, ctlTimeout)
	defer cancel()
	return e.flushZones(ctx, zones)
}

// StopAll is the kill switch: it stops every playing, pre-empted and queued
// broadcast and publishes stop (reason "stop_all") on every zone that had a
// stream, concurrently, within well under a second. It returns how many
// broadcasts it stopped.
func (e *Engine) StopAll(ctx context.Context, actor string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, stopAllBudget)
	defer cancel()
	n, err := e.stopEverything(ctx, ReasonStopAll, "stop all by "+actorName(actor))
	e.log.Warn("stop all", "actor", actor, "broadcasts", n)
	return n, err
}

func (e *Engine) stopEverything(ctx context.Context, wireReason, reason string) (int, error) {
	now := e.clock.Now()
	e.mu.Lock()
	n := 0
	zones := map[string]bool{}
	for _, b := range append([]*bcast(nil), e.order...) {
		if b.terminal {
			continue
		}
		n++
		for _, z := range e.stopLocked(b, wireReason, reason, now) {
			zones[z] = true
		}
	}
	for z, msgs := range e.zoneStops {
		if len(msgs) > 0 {
			zones[z] = true
		}
	}
	e.mu.Unlock()
	list := make([]string, 0, len(zones))
	for z := range zones {
		list = append(list, z)
	}
	return n, e.flushZones(ctx, list)
}

// flushZones publishes the pending stop controls of zones, one goroutine per
// zone so that one slow zone does not hold up the others.
func (e *Engine) flushZones(ctx context.Context, zones []string) error {
	if len(zones) == 0 {
		return nil
	}
	var wg sync.WaitGroup
	errs := make([]error, len(zones))
	for i, z := range zones {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = e.publishZone(ctx, nil, z, "", 0, nil)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func actorName(a string) string {
	if a == "" {
		return "unknown"
	}
	return a
}

// prepare validates req and resolves its audio.
func (e *Engine) prepare(ctx context.Context, req Request, live bool) (*bcast, error) {
	if len(req.Zones) == 0 {
		return nil, fmt.Errorf("%w: zones: at least one zone is required", ErrInvalid)
	}
	if req.Priority == "" {
		req.Priority = PriorityNormal
	}
	rank := req.Priority.Rank()
	if rank == 0 {
		return nil, fmt.Errorf("%w: priority: %q is not emergency, priority, normal or background", ErrInvalid, req.Priority)
	}
	if req.Volume < 0 || req.Volume > 100 {
		return nil, fmt.Errorf("%w: volume: %d outside 0–100", ErrInvalid, req.Volume)
	}
	switch req.Origin {
	case "":
		req.Origin = OriginAPI
		if live {
			req.Origin = OriginLive
		}
	case OriginAPI, OriginSchedule, OriginLive, OriginUplink:
	default:
		return nil, fmt.Errorf("%w: origin: %q is not api, schedule, live or uplink", ErrInvalid, req.Origin)
	}
	sources := 0
	for _, set := range []bool{req.MediaID != "", req.Text != "", req.Packets != nil} {
		if set {
			sources++
		}
	}
	if live && sources != 0 {
		return nil, fmt.Errorf("%w: source: live speech takes no media_id, text or packets", ErrInvalid)
	}
	if !live && sources != 1 {
		return nil, fmt.Errorf("%w: source: exactly one of media_id, text and packets is required", ErrInvalid)
	}
	if len(req.Text) > maxText {
		return nil, fmt.Errorf("%w: text: %d bytes exceeds %d", ErrInvalid, len(req.Text), maxText)
	}
	var zones []string
	for _, z := range req.Zones {
		if contains(zones, z) {
			continue
		}
		if wire.ValidLevel(z) != nil || !(e.wired[z] || e.deps.Directory.ZoneExists(z)) {
			return nil, fmt.Errorf("%w: %q", ErrUnknownZone, z)
		}
		zones = append(zones, z)
	}
	e.prewarm(zones)
	b := &bcast{
		id:      newBroadcastID(),
		req:     req,
		zones:   zones,
		rank:    rank,
		volume:  req.Volume,
		legs:    map[string]*leg{},
		online:  map[string]bool{},
		reports: map[string]*devReports{},
		state:   StateQueued,
	}
	b.req.Packets = nil
	b.req.Zones = zones
	if req.Priority == PriorityEmergency {
		b.volume = 100
	}
	for _, z := range zones {
		b.legs[z] = &leg{state: ZoneWaiting}
	}
	var err error
	switch {
	case live:
		b.src = SourceLive
	case req.MediaID != "":
		b.src = SourceMedia
		if e.deps.Media == nil {
			return nil, fmt.Errorf("load media %s: %w: no media library", req.MediaID, ErrUnavailable)
		}
		if b.packets, err = e.deps.Media.Packets(ctx, req.MediaID); err != nil {
			return nil, fmt.Errorf("load media %s: %w", req.MediaID, err)
		}
	case req.Text != "":
		b.src = SourceText
		if e.deps.Speaker == nil {
			return nil, fmt.Errorf("speak text: %w: no text-to-speech", ErrUnavailable)
		}
		if b.packets, err = e.deps.Speaker.SpeakPackets(ctx, req.Text, req.Language); err != nil {
			return nil, fmt.Errorf("speak text: %w", err)
		}
	default:
		b.src = SourcePackets
		b.packets = req.Packets
	}
	if !live {
		if len(b.packets) == 0 {
			return nil, fmt.Errorf("%w: packets: no audio", ErrInvalid)
		}
		for i, p := range b.packets {
			if len(p) == 0 || len(p) > wire.MaxOpusPacket {
				return nil, fmt.Errorf("%w: packets[%d]: %d bytes, want 1–%d", ErrInvalid, i, len(p), wire.MaxOpusPacket)
			}
		}
		if d := time.Duration(len(b.packets)) * packetDur; d > e.cfg.MaxDuration {
			return nil, fmt.Errorf("%w: duration %s exceeds the maximum %s", ErrInvalid, d, e.cfg.MaxDuration)
		}
	}
	b.members = e.deps.Directory.Members(zones)
	for _, m := range b.members {
		b.online[m] = e.deps.Directory.Online(m)
	}
	return b, nil
}

// prewarm asks the hall output to get ready when zones include a wired
// one, before the audio is loaded or spoken: text-to-speech of a long
// emergency bulletin takes seconds, which the amplifier's warm-up can use.
func (e *Engine) prewarm(zones []string) {
	w, ok := e.deps.Output.(Warmer)
	if !ok {
		return
	}
	for _, z := range zones {
		if e.wired[z] {
			w.Prewarm()
			return
		}
	}
}

// register adds b to the engine. Called with e.mu held.
func (e *Engine) register(b *bcast) {
	e.all[b.id] = b
	e.order = append(e.order, b)
}

// blockedBy returns a zone among zones held by a broadcast of rank >= rank,
// or "". Called with e.mu held.
func (e *Engine) blockedBy(rank int, zones []string) string {
	for _, z := range zones {
		if o := e.owner[z]; o != nil && o.b.rank >= rank {
			return z
		}
	}
	return ""
}

// admit gives zones to b, pre-empting their lower-priority holders, and
// starts a stream there. Called with e.mu held; zones must not be blocked.
func (e *Engine) admit(b *bcast, zones []string, now time.Time) {
	for _, z := range zones {
		e.preempt(z, now)
	}
	if b.started.IsZero() {
		b.started = now
	}
	e.launch(b, 0, zones)
	e.log.Info("broadcast started", "id", b.id, "zones", zones, "priority", b.req.Priority,
		"source", b.src, "packets", len(b.packets), "actor", b.req.Actor, "origin", b.req.Origin)
	e.settle(b, now)
	e.record(b)
}

// launch creates a segment of b carrying packets from base in zones and
// starts its goroutine. Called with e.mu held.
func (e *Engine) launch(b *bcast, base int, zones []string) *segment {
	ctx, cancel := context.WithCancel(e.ctx)
	s := &segment{
		b:       b,
		packets: b.packets,
		id:      e.newStreamID(),
		base:    base,
		live:    b.live != nil,
		zones:   map[string]bool{},
		starts:  append([]string(nil), zones...),
		ctx:     ctx,
		cancel:  cancel,
		kick:    make(chan struct{}, 1),
	}
	for _, z := range zones {
		s.zones[z] = true
		e.owner[z] = s
		b.legs[z].state = ZonePlaying
		b.legs[z].stream = s.id
	}
	b.segs = append(b.segs, s)
	b.streams = append(b.streams, s.id)
	e.streams[s.id] = b
	e.wg.Add(1)
	if s.live {
		b.liveSeg = s
		go e.runLive(s, b.live)
	} else {
		go e.runFile(s)
	}
	return s
}

// preempt takes zone away from its current holder, queueing a stop
// (reason "preempted") for it. Called with e.mu held.
func (e *Engine) preempt(z string, now time.Time) {
	s := e.owner[z]
	if s == nil {
		return
	}
	b := s.b
	delete(s.zones, z)
	delete(e.owner, z)
	e.zoneStops[z] = append(e.zoneStops[z], stopMsg{stream: s.id, reason: ReasonPreempted})
	lg := b.legs[z]
	switch {
	case e.cfg.PreemptPolicy == PolicyInterrupt:
		lg.state = ZoneInterrupted
	case s.live:
		lg.state = ZoneSuspended
	default:
		lg.cutAt = s.base + e.heard(s, now)
		lg.state = ZoneSuspended
		if lg.cutAt >= len(b.packets) {
			lg.state = ZoneDone
		}
	}
	e.log.Info("broadcast preempted", "id", b.id, "zone", z, "stream", s.id, "zone_state", lg.state, "resume_at_packet", lg.cutAt)
	if len(s.zones) == 0 && !s.live {
		e.dropSegment(s)
	}
	e.settle(b, now)
	e.record(b)
}

// heard returns the index, relative to the segment, of the packet speakers
// were playing at now: frames play at PlayAt + play-out delay.
func (e *Engine) heard(s *segment, now time.Time) int {
	if s.startAt.IsZero() {
		return 0
	}
	d := now.Sub(s.startAt) - e.cfg.PlayoutDelay
	if d <= 0 {
		return 0
	}
	return min(int(d/packetDur), s.next)
}

// dropSegment ends a segment's goroutine without further publishes. Called
// with e.mu held.
func (e *Engine) dropSegment(s *segment) {
	if s.removed {
		return
	}
	s.removed = true
	s.cancel()
	for z := range s.zones {
		if e.owner[z] == s {
			delete(e.owner, z)
		}
	}
	b := s.b
	for i, x := range b.segs {
		if x == s {
			// slices.Delete clears the freed slot: append(segs[:i],
			// segs[i+1:]...) left the segment, and with it the clip's
			// audio, reachable from every ended broadcast kept in memory.
			b.segs = slices.Delete(b.segs, i, i+1)
			break
		}
	}
}

// stopLocked stops b, queueing stop controls with wireReason in the zones
// it holds, and returns those zones. Called with e.mu held.
func (e *Engine) stopLocked(b *bcast, wireReason, reason string, now time.Time) []string {
	var zones []string
	for _, s := range append([]*segment(nil), b.segs...) {
		for z := range s.zones {
			zones = append(zones, z)
			e.zoneStops[z] = append(e.zoneStops[z], stopMsg{stream: s.id, reason: wireReason})
			delete(e.owner, z)
		}
		e.dropSegment(s)
	}
	for _, lg := range b.legs {
		switch lg.state {
		case ZoneWaiting, ZonePlaying, ZoneSuspended:
			lg.state = ZoneStopped
		}
	}
	e.finish(b, StateStopped, reason, now)
	return zones
}

// finish makes b terminal. Called with e.mu held.
func (e *Engine) finish(b *bcast, state State, reason string, now time.Time) {
	if b.terminal {
		return
	}
	for _, s := range append([]*segment(nil), b.segs...) {
		e.dropSegment(s)
	}
	for i, q := range e.queue {
		if q == b {
			e.queue = append(e.queue[:i], e.queue[i+1:]...)
			break
		}
	}
	b.terminal = true
	b.state = state
	b.reason = reason
	b.ended = now
	// An ended broadcast stays in memory for Get and List (keepFinished of
	// them) but its audio is never sent again: keeping it held up to 500
	// clips' worth of Opus, which is what made the heap grow in a soak.
	b.npackets = len(b.packets)
	b.packets, b.req.Packets = nil, nil
	if b.live != nil {
		b.live.markEnded()
	}
	e.log.Info("broadcast ended", "id", b.id, "state", state, "reason", reason)
	e.record(b)
}

// settle derives b's state from its zones, ending it when no zone is left
// playing or waiting to resume. Called with e.mu held.
func (e *Engine) settle(b *bcast, now time.Time) {
	if b.terminal {
		return
	}
	var playing, suspended, waiting, failed, interrupted []string
	for _, z := range b.zones {
		switch b.legs[z].state {
		case ZonePlaying:
			playing = append(playing, z)
		case ZoneSuspended:
			suspended = append(suspended, z)
		case ZoneWaiting:
			waiting = append(waiting, z)
		case ZoneFailed:
			failed = append(failed, z)
		case ZoneInterrupted:
			interrupted = append(interrupted, z)
		}
	}
	prev := b.state
	switch {
	case len(playing) > 0:
		b.state = StatePlaying
	case len(suspended) > 0:
		b.state = StatePreempted
	case len(waiting) > 0:
		b.state = StateQueued
	case len(failed) > 0:
		e.finish(b, StateFailed, fmt.Sprintf("failed in zones %v", failed), now)
		return
	case len(interrupted) > 0:
		e.finish(b, StateInterrupted, fmt.Sprintf("pre-empted in zones %v", interrupted), now)
		return
	default:
		e.finish(b, StateDone, "", now)
		return
	}
	if prev != b.state {
		e.record(b)
	}
}

// pass hands free zones to pre-empted broadcasts waiting to resume and to
// queued broadcasts, highest priority first, then oldest first. Called
// with e.mu held whenever zones are released.
func (e *Engine) pass(now time.Time) {
	if e.closed {
		return
	}
	type unit struct {
		b      *bcast
		zones  []string
		cutAt  int
		resume bool
	}
	var units []unit
	for _, b := range e.order {
		if b.terminal {
			continue
		}
		if b.state == StateQueued && b.started.IsZero() {
			units = append(units, unit{b: b, zones: b.zones})
			continue
		}
		groups := map[int]int{} // cutAt -> index in units
		for _, z := range b.zones {
			lg := b.legs[z]
			if lg.state != ZoneSuspended {
				continue
			}
			key := lg.cutAt
			if i, ok := groups[key]; ok {
				units[i].zones = append(units[i].zones, z)
				continue
			}
			groups[key] = len(units)
			units = append(units, unit{b: b, zones: []string{z}, cutAt: key, resume: true})
		}
	}
	sort.SliceStable(units, func(i, j int) bool {
		if units[i].b.rank != units[j].b.rank {
			return units[i].b.rank > units[j].b.rank
		}
		return units[i].b.created.Before(units[j].b.created)
	})
	for _, u := range units {
		if u.b.terminal || e.blockedBy(u.b.rank, u.zones) != "" {
			continue
		}
		if !u.resume {
			for i, q := range e.queue {
				if q == u.b {
					e.queue = append(e.queue[:i], e.queue[i+1:]...)
					break
				}
			}
			e.admit(u.b, u.zones, now)
			continue
		}
		for _, z := range u.zones {
			e.preempt(z, now)
		}
		if s := u.b.liveSeg; u.b.live != nil && s != nil && !s.removed {
			for _, z := range u.zones {
				s.zones[z] = true
				s.starts = append(s.starts, z)
				e.owner[z] = s
				u.b.legs[z].state = ZonePlaying
			}
			select {
			case s.kick <- struct{}{}:
			default:
			}
		} else {
			e.launch(u.b, u.cutAt, u.zones)
		}
		e.log.Info("broadcast resumed", "id", u.b.id, "zones", u.zones, "from_packet", u.cutAt)
		e.settle(u.b, now)
		e.record(u.b)
	}
}
