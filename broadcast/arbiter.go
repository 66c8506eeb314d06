package broadcast

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"
)

// arbiter is the engine's arbitration: it decides which broadcast holds
// each zone, following the bulletin priorities of Circular 39/2020/TT-BTTTT.
// A broadcast of higher priority pre-empts lower ones in the zones they
// share; one of equal or lower priority waits (queued) until all its zones
// are free; a pre-empted broadcast resumes in the zones it lost once they
// are free again (PolicyResume) or is interrupted there (PolicyInterrupt).
// It owns every broadcast's state and its zone states and decides when a
// broadcast ends; it publishes nothing itself: it hands each new segment
// (one stream of a broadcast in some zones) to the stream publisher through
// launched, and queues the stop controls that the publisher sends before
// anything else on the zone (zoneStops).
//
// Invariants, all under mu:
//   - owner[z] == s exactly when s.zones[z] and !s.removed: a zone has at
//     most one stream, and a stream knows the zones it holds;
//   - a broadcast is in queue exactly when it is not terminal and has never
//     started; it starts in all its zones at once;
//   - a non-terminal broadcast's state is derived from its zone states
//     (settle), and a terminal one holds no zone and no segment;
//   - every change of a broadcast's state is handed to changed, in order.
//
// Lock order: arbiter.mu may be held while taking deliveries.mu (the hooks
// do); no other engine lock is taken under it, and the stream publisher
// never holds its own lock while calling the arbiter.
type arbiter struct {
	policy  string
	playout time.Duration
	maxDur  time.Duration
	log     *slog.Logger
	// ctx is the parent of every segment's context (the engine's life).
	ctx context.Context

	// Hooks, set by New before the first broadcast and called with mu
	// held; they must not block or call back into the arbiter.
	launched func(s *segment) // start publishing segment s
	changed  func(b *bcast)   // b changed: record it
	pruned   func(b *bcast)   // b is forgotten

	mu        sync.Mutex
	closed    bool
	all       map[string]*bcast
	order     []*bcast
	queue     []*bcast
	owner     map[string]*segment
	zoneStops map[string][]stopMsg
	streams   map[uint32]*bcast
}

func newArbiter(cfg Config, log *slog.Logger, ctx context.Context) *arbiter {
	return &arbiter{
		policy:    cfg.PreemptPolicy,
		playout:   cfg.PlayoutDelay,
		maxDur:    cfg.MaxDuration,
		log:       log,
		ctx:       ctx,
		all:       map[string]*bcast{},
		owner:     map[string]*segment{},
		zoneStops: map[string][]stopMsg{},
		streams:   map[uint32]*bcast{},
	}
}

// close refuses new broadcasts and stops handing zones on.
func (a *arbiter) close() {
	a.mu.Lock()
	a.closed = true
	a.mu.Unlock()
}

// submit registers b and starts it in all its zones, pre-empting lower
// priorities, or queues it when a zone is held by an equal or higher one.
// then runs with mu held once b is in place.
func (a *arbiter) submit(b *bcast, now time.Time, then func()) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	b.created = now
	a.register(b)
	if z := a.blockedBy(b.rank, b.zones); z != "" {
		b.state = StateQueued
		a.queue = append(a.queue, b)
		a.log.Info("broadcast queued", "id", b.id, "zone", z, "priority", b.req.Priority, "actor", b.req.Actor)
		a.changed(b)
	} else {
		a.admit(b, b.zones, now)
	}
	then()
	return nil
}

// submitLive registers live speech b and starts it, pre-empting lower
// priorities. Live speech is never queued: a zone held by an equal or
// higher priority is ErrBusy.
func (a *arbiter) submitLive(b *bcast, now time.Time) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return ErrClosed
	}
	if z := a.blockedBy(b.rank, b.zones); z != "" {
		return fmt.Errorf("live in zone %q held by %s broadcast %s: %w", z, a.owner[z].b.req.Priority, a.owner[z].b.id, ErrBusy)
	}
	b.created = now
	a.register(b)
	a.admit(b, b.zones, now)
	return nil
}

// stop stops broadcast id and returns the zones whose stop controls are
// now pending.
func (a *arbiter) stop(id, reason string, now time.Time) ([]string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	b, ok := a.all[id]
	if !ok {
		return nil, fmt.Errorf("stop %s: %w", id, ErrNotFound)
	}
	if b.terminal {
		return nil, fmt.Errorf("stop %s (%s): %w", id, b.state, ErrNotActive)
	}
	zones := a.stopLocked(b, ReasonStopped, reason, now)
	a.pass(now)
	return zones, nil
}

// stopAll stops every broadcast that has not ended and returns how many,
// and every zone with a stop control pending.
func (a *arbiter) stopAll(wireReason, reason string, now time.Time) (int, []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	zones := map[string]bool{}
	for _, b := range append([]*bcast(nil), a.order...) {
		if b.terminal {
			continue
		}
		n++
		for _, z := range a.stopLocked(b, wireReason, reason, now) {
			zones[z] = true
		}
	}
	for z, msgs := range a.zoneStops {
		if len(msgs) > 0 {
			zones[z] = true
		}
	}
	list := make([]string, 0, len(zones))
	for z := range zones {
		list = append(list, z)
	}
	return n, list
}

// expire fails queued broadcasts that have waited longer than the maximum
// duration and forgets the oldest ended ones beyond keepFinished.
func (a *arbiter) expire(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, b := range append([]*bcast(nil), a.queue...) {
		if now.Sub(b.created) > a.maxDur {
			for _, lg := range b.legs {
				lg.state = ZoneFailed
			}
			a.finish(b, StateFailed, "queued longer than the maximum duration", now)
		}
	}
	a.prune()
}

// prune drops the oldest ended broadcasts beyond keepFinished.
func (a *arbiter) prune() {
	ended := 0
	for _, b := range a.order {
		if b.terminal {
			ended++
		}
	}
	if ended <= keepFinished {
		return
	}
	kept := a.order[:0]
	for _, b := range a.order {
		if b.terminal && ended > keepFinished {
			ended--
			delete(a.all, b.id)
			for _, s := range b.streams {
				if a.streams[s] == b {
					delete(a.streams, s)
				}
			}
			a.pruned(b)
			continue
		}
		kept = append(kept, b)
	}
	clear(a.order[len(kept):])
	a.order = kept
}

// view runs f on broadcast id with the arbitration state stable, and
// reports whether id is known.
func (a *arbiter) view(id string, f func(b *bcast)) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	b, ok := a.all[id]
	if ok {
		f(b)
	}
	return ok
}

// viewAll runs f on every broadcast kept, oldest first, with the
// arbitration state stable.
func (a *arbiter) viewAll(f func(b *bcast)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, b := range a.order {
		f(b)
	}
}

// recordIfEnded hands b to changed again if it has ended (a speaker's
// final report arrived after the end).
func (a *arbiter) recordIfEnded(b *bcast) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if b.terminal {
		a.changed(b)
	}
}

// zoneSeg is one zone a segment holds.
type zoneSeg struct {
	seg  *segment
	zone string
}

// emergencyZones returns the zones where an emergency is streaming.
func (a *arbiter) emergencyZones() []zoneSeg {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []zoneSeg
	for _, b := range a.order {
		if b.terminal || b.rank != PriorityEmergency.Rank() {
			continue
		}
		for _, s := range b.segs {
			for z := range s.zones {
				out = append(out, zoneSeg{s, z})
			}
		}
	}
	return out
}

// resendStart asks seg to publish its start control on zone again, and
// runs then, if seg still holds zone.
func (a *arbiter) resendStart(c zoneSeg, then func()) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c.seg.removed || !c.seg.zones[c.zone] {
		return false
	}
	then()
	if !contains(c.seg.starts, c.zone) {
		c.seg.starts = append(c.seg.starts, c.zone)
	}
	select {
	case c.seg.kick <- struct{}{}:
	default:
	}
	return true
}

// register adds b. Called with mu held.
func (a *arbiter) register(b *bcast) {
	a.all[b.id] = b
	a.order = append(a.order, b)
}

// blockedBy returns a zone among zones held by a broadcast of rank >= rank,
// or "". Called with mu held.
func (a *arbiter) blockedBy(rank int, zones []string) string {
	for _, z := range zones {
		if o := a.owner[z]; o != nil && o.b.rank >= rank {
			return z
		}
	}
	return ""
}

// admit gives zones to b, pre-empting their lower-priority holders, and
// starts a stream there. Called with mu held; zones must not be blocked.
func (a *arbiter) admit(b *bcast, zones []string, now time.Time) {
	for _, z := range zones {
		a.preempt(z, now)
	}
	if b.started.IsZero() {
		b.started = now
	}
	a.launch(b, 0, zones)
	a.log.Info("broadcast started", "id", b.id, "zones", zones, "priority", b.req.Priority,
		"source", b.src, "packets", len(b.packets), "actor", b.req.Actor, "origin", b.req.Origin)
	a.settle(b, now)
	a.changed(b)
}

// launch creates a segment of b carrying packets from base in zones and
// hands it to the stream publisher. Called with mu held.
func (a *arbiter) launch(b *bcast, base int, zones []string) *segment {
	ctx, cancel := context.WithCancel(a.ctx)
	s := &segment{
		b:       b,
		packets: b.packets,
		id:      a.newStreamID(),
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
		a.owner[z] = s
		b.legs[z].state = ZonePlaying
		b.legs[z].stream = s.id
	}
	b.segs = append(b.segs, s)
	b.streams = append(b.streams, s.id)
	a.streams[s.id] = b
	if s.live {
		b.liveSeg = s
	}
	a.launched(s)
	return s
}

// newStreamID returns a random non-zero stream id not in use. Called with
// mu held.
func (a *arbiter) newStreamID() uint32 {
	for {
		var b [4]byte
		_, _ = rand.Read(b[:])
		id := binary.BigEndian.Uint32(b[:])
		if _, used := a.streams[id]; id != 0 && !used {
			return id
		}
	}
}

// preempt takes zone away from its current holder, queueing a stop
// (reason "preempted") for it. Called with mu held.
func (a *arbiter) preempt(z string, now time.Time) {
	s := a.owner[z]
	if s == nil {
		return
	}
	b := s.b
	delete(s.zones, z)
	delete(a.owner, z)
	a.zoneStops[z] = append(a.zoneStops[z], stopMsg{stream: s.id, reason: ReasonPreempted})
	lg := b.legs[z]
	switch {
	case a.policy == PolicyInterrupt:
		lg.state = ZoneInterrupted
	case s.live:
		lg.state = ZoneSuspended
	default:
		lg.cutAt = s.base + a.heard(s, now)
		lg.state = ZoneSuspended
		if lg.cutAt >= len(b.packets) {
			lg.state = ZoneDone
		}
	}
	a.log.Info("broadcast preempted", "id", b.id, "zone", z, "stream", s.id, "zone_state", lg.state, "resume_at_packet", lg.cutAt)
	if len(s.zones) == 0 && !s.live {
		a.dropSegment(s)
	}
	a.settle(b, now)
	a.changed(b)
}

// heard returns the index, relative to the segment, of the packet speakers
// were playing at now: frames play at PlayAt + play-out delay.
func (a *arbiter) heard(s *segment, now time.Time) int {
	if s.startAt.IsZero() {
		return 0
	}
	d := now.Sub(s.startAt) - a.playout
	if d <= 0 {
		return 0
	}
	return min(int(d/packetDur), s.next)
}

// dropSegment ends a segment's goroutine without further publishes. Called
// with mu held.
func (a *arbiter) dropSegment(s *segment) {
	if s.removed {
		return
	}
	s.removed = true
	s.cancel()
	for z := range s.zones {
		if a.owner[z] == s {
			delete(a.owner, z)
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
// it holds, and returns those zones. Called with mu held.
func (a *arbiter) stopLocked(b *bcast, wireReason, reason string, now time.Time) []string {
	var zones []string
	for _, s := range append([]*segment(nil), b.segs...) {
		for z := range s.zones {
			zones = append(zones, z)
			a.zoneStops[z] = append(a.zoneStops[z], stopMsg{stream: s.id, reason: wireReason})
			delete(a.owner, z)
		}
		a.dropSegment(s)
	}
	for _, lg := range b.legs {
		switch lg.state {
		case ZoneWaiting, ZonePlaying, ZoneSuspended:
			lg.state = ZoneStopped
		}
	}
	a.finish(b, StateStopped, reason, now)
	return zones
}

// finish makes b terminal. Called with mu held.
func (a *arbiter) finish(b *bcast, state State, reason string, now time.Time) {
	if b.terminal {
		return
	}
	for _, s := range append([]*segment(nil), b.segs...) {
		a.dropSegment(s)
	}
	a.dequeue(b)
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
	a.log.Info("broadcast ended", "id", b.id, "state", state, "reason", reason)
	a.changed(b)
}

// dequeue removes b from the queue. Called with mu held.
func (a *arbiter) dequeue(b *bcast) {
	for i, q := range a.queue {
		if q == b {
			a.queue = append(a.queue[:i], a.queue[i+1:]...)
			break
		}
	}
}

// settle derives b's state from its zones, ending it when no zone is left
// playing or waiting to resume. Called with mu held.
func (a *arbiter) settle(b *bcast, now time.Time) {
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
		a.finish(b, StateFailed, fmt.Sprintf("failed in zones %v", failed), now)
		return
	case len(interrupted) > 0:
		a.finish(b, StateInterrupted, fmt.Sprintf("pre-empted in zones %v", interrupted), now)
		return
	default:
		a.finish(b, StateDone, "", now)
		return
	}
	if prev != b.state {
		a.changed(b)
	}
}

// pass hands free zones to pre-empted broadcasts waiting to resume and to
// queued broadcasts, highest priority first, then oldest first. Called
// with mu held whenever zones are released.
func (a *arbiter) pass(now time.Time) {
	if a.closed {
		return
	}
	type unit struct {
		b      *bcast
		zones  []string
		cutAt  int
		resume bool
	}
	var units []unit
	for _, b := range a.order {
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
		if u.b.terminal || a.blockedBy(u.b.rank, u.zones) != "" {
			continue
		}
		if !u.resume {
			a.dequeue(u.b)
			a.admit(u.b, u.zones, now)
			continue
		}
		for _, z := range u.zones {
			a.preempt(z, now)
		}
		if s := u.b.liveSeg; u.b.live != nil && s != nil && !s.removed {
			for _, z := range u.zones {
				s.zones[z] = true
				s.starts = append(s.starts, z)
				a.owner[z] = s
				u.b.legs[z].state = ZonePlaying
			}
			select {
			case s.kick <- struct{}{}:
			default:
			}
		} else {
			a.launch(u.b, u.cutAt, u.zones)
		}
		a.log.Info("broadcast resumed", "id", u.b.id, "zones", u.zones, "from_packet", u.cutAt)
		a.settle(u.b, now)
		a.changed(u.b)
	}
}

// The methods below are the stream publisher's view of its segments: the
// zones a segment holds and its progress are arbitration state, read and
// written under mu.

// owned returns the zones seg holds, sorted.
func (a *arbiter) owned(seg *segment) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	zones := make([]string, 0, len(seg.zones))
	for z := range seg.zones {
		zones = append(zones, z)
	}
	slices.Sort(zones)
	return zones
}

// takeStarts returns the zones waiting for seg's start control.
func (a *arbiter) takeStarts(seg *segment) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	zs := seg.starts
	seg.starts = nil
	return zs
}

// streamInfo is what a start control says about its broadcast.
type streamInfo struct {
	priority Priority
	volume   int
	packets  int // packets left from the segment's base (stored audio)
}

// begin fixes seg's start time (play-at of its packet 0).
func (a *arbiter) begin(seg *segment, at time.Time) streamInfo {
	a.mu.Lock()
	defer a.mu.Unlock()
	seg.startAt = at
	b := seg.b
	return streamInfo{priority: b.req.Priority, volume: b.volume, packets: len(b.packets) - seg.base}
}

// progress records that seg has published its packets before next.
func (a *arbiter) progress(seg *segment, next int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	seg.next = next
}

// liveProgress records that live seg has published sent packets.
func (a *arbiter) liveProgress(seg *segment, sent int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	seg.b.sent = sent
	seg.next = sent
}

// liveLimit returns when live seg's broadcast reaches the maximum duration.
func (a *arbiter) liveLimit(seg *segment) time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return seg.b.started.Add(a.maxDur)
}

// takeStops returns the stop controls pending for zone, and whether seg
// (nil: nobody) still holds it.
func (a *arbiter) takeStops(zone string, seg *segment) ([]stopMsg, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	stops := a.zoneStops[zone]
	delete(a.zoneStops, zone)
	return stops, seg == nil || (!seg.removed && a.owner[zone] == seg)
}

// segmentEnded releases seg's zones with the given zone state, settles its
// broadcast and hands the zones on.
func (a *arbiter) segmentEnded(seg *segment, zoneState ZoneStatus, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if seg.removed {
		return
	}
	b := seg.b
	for z := range seg.zones {
		b.legs[z].state = zoneState
	}
	a.dropSegment(seg)
	a.settle(b, now)
	a.pass(now)
}

// liveEnded ends live speech whose segment is seg: done when state is
// StateDone (closed by its sender), otherwise stopped with reason. It
// reports whether seg was still running.
func (a *arbiter) liveEnded(seg *segment, state State, reason string, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if seg.removed {
		return false
	}
	b := seg.b
	for z := range seg.zones {
		b.legs[z].state = ZoneDone
	}
	for _, lg := range b.legs {
		if lg.state == ZoneSuspended {
			lg.state = ZoneDone
		}
	}
	a.dropSegment(seg)
	if state == StateDone {
		a.settle(b, now)
	} else {
		for _, lg := range b.legs {
			if lg.state == ZoneDone {
				lg.state = ZoneStopped
			}
		}
		a.finish(b, state, reason, now)
	}
	a.pass(now)
	return true
}

// liveFailed fails live speech whose segment is seg.
func (a *arbiter) liveFailed(seg *segment, reason string, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if seg.removed {
		return
	}
	b := seg.b
	for z := range seg.zones {
		b.legs[z].state = ZoneFailed
	}
	a.dropSegment(seg)
	a.finish(b, StateFailed, reason, now)
	a.pass(now)
}
