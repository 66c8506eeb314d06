package hall

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/loalang/loalang/hall/modbus"
	"go.bug.st/serial"
)

// ampName is the Status.Board.Coils key and metric label of the amplifier.
const ampName = "amplifier"

// boardCtl owns the serial port and the relay sequence. Only its run
// goroutine touches the port; it reads the broadcasts under Hall.mu.
type boardCtl struct {
	h   *Hall
	cfg BoardConfig
	log *slog.Logger

	lo, hi uint16

	port serial.Port
	cli  *modbus.Client

	// known are the last confirmed coil states lo..hi; valid once read.
	known      []bool
	knownValid bool
	ampOnAt    time.Time // when the amplifier was confirmed on
	zonesOffAt time.Time // when all zones were last confirmed off
	lastIO     time.Time

	attempt  int
	reopenAt time.Time

	// warm is ampOnAt published for WarmupLeft (zero when off).
	warm chan time.Time
}

func newBoardCtl(h *Hall, cfg BoardConfig) *boardCtl {
	b := &boardCtl{h: h, cfg: cfg, log: h.log.With("port", cfg.Port)}
	b.lo, b.hi = cfg.coilRange()
	b.known = make([]bool, int(b.hi-b.lo)+1)
	b.warm = make(chan time.Time, 1)
	b.warm <- time.Time{}
	return b
}

func (b *boardCtl) warmupLeft(now time.Time) time.Duration {
	on := <-b.warm
	b.warm <- on
	if on.IsZero() {
		return b.cfg.Warmup
	}
	return max(0, on.Add(b.cfg.Warmup).Sub(now))
}

func (b *boardCtl) publishWarm() {
	<-b.warm
	on := time.Time{}
	if b.knownValid && b.coil(b.cfg.AmpCoil) {
		on = b.ampOnAt
	}
	b.warm <- on
	b.h.mu.Lock()
	b.h.ampOnAt = on
	b.h.mu.Unlock()
}

func (b *boardCtl) coil(c uint16) bool { return b.known[c-b.lo] }

func (b *boardCtl) run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		next := b.step(ctx)
		if ctx.Err() != nil {
			break
		}
		timer.Reset(max(time.Until(next), time.Millisecond))
		select {
		case <-ctx.Done():
		case <-b.h.wake:
		case <-timer.C:
		}
		if ctx.Err() != nil {
			break
		}
	}
	b.shutdown()
}

// shutdown switches zones then the amplifier off, best effort, and closes
// the port: a stopped daemon must not leave the hall lines live.
func (b *boardCtl) shutdown() {
	if b.port == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*b.cfg.Timeout+time.Second)
	defer cancel()
	img := slices.Clone(b.known)
	for _, c := range b.cfg.Zones {
		img[c-b.lo] = false
	}
	if !slices.Equal(img, b.known) {
		if err := b.cli.WriteCoils(ctx, b.lo, img); err != nil {
			b.log.Warn("relay board shutdown", "err", err)
		}
	}
	if err := b.cli.WriteCoil(ctx, b.cfg.AmpCoil, false); err != nil {
		b.log.Warn("relay board shutdown", "err", err)
	}
	b.port.Close()
	b.port = nil
}

// desired is what the broadcasts ask of the relays at one instant.
type desired struct {
	active  []*bcast
	ended   []*bcast
	zones   map[uint16]bool
	next    time.Time
	anyLive bool
	// prewarm holds the amplifier on for a broadcast being prepared.
	prewarm bool
}

func (b *boardCtl) desire(now time.Time) desired {
	d := desired{zones: map[uint16]bool{}}
	b.h.mu.Lock()
	defer b.h.mu.Unlock()
	for _, bc := range b.h.bcasts {
		off := bc.offAt(b.cfg.Tail)
		if now.Before(off) {
			d.active = append(d.active, bc)
			for _, z := range bc.zones {
				d.zones[b.cfg.Zones[z]] = true
			}
			d.next = earliest(d.next, off)
		} else {
			d.ended = append(d.ended, bc)
		}
	}
	d.anyLive = len(d.active) > 0
	if now.Before(b.h.prewarmUntil) {
		d.prewarm = true
		d.next = earliest(d.next, b.h.prewarmUntil)
	}
	return d
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// step moves the relays one step towards what the broadcasts need and
// returns when it wants to run again.
func (b *boardCtl) step(ctx context.Context) time.Time {
	now := time.Now()
	if b.port == nil {
		if now.Before(b.reopenAt) {
			return b.reopenAt
		}
		if !b.open(ctx) {
			return b.reopenAt
		}
		now = time.Now()
	}
	d := b.desire(now)
	next := now.Add(b.cfg.Poll)
	next = earliest(next, d.next)

	// Zones follow the broadcasts once the amplifier is warm; otherwise off.
	ampOn := b.coil(b.cfg.AmpCoil)
	warm := ampOn && !now.Before(b.ampOnAt.Add(b.cfg.Warmup))
	img := slices.Clone(b.known)
	for _, c := range b.cfg.Zones {
		img[c-b.lo] = warm && d.zones[c]
	}
	if ampOn && !warm && d.anyLive {
		next = earliest(next, b.ampOnAt.Add(b.cfg.Warmup))
	}
	if !slices.Equal(img, b.known) {
		if !b.write(ctx, func(ctx context.Context) error { return b.cli.WriteCoils(ctx, b.lo, img) }, img) {
			return b.reopenAt
		}
		now = time.Now()
		if b.zonesAllOff() {
			b.zonesOffAt = now
		}
		b.record(now)
	}

	// The amplifier is on while anything is live, and for IdleOff after the
	// zones last went off; it goes off only with every zone off.
	wantAmp := d.anyLive || d.prewarm || (ampOn && now.Before(b.zonesOffAt.Add(b.cfg.IdleOff)))
	if idleEnd := b.zonesOffAt.Add(b.cfg.IdleOff); ampOn && !d.anyLive && wantAmp && now.Before(idleEnd) {
		next = earliest(next, idleEnd)
	}
	if wantAmp != ampOn && (wantAmp || b.zonesAllOff()) {
		img := slices.Clone(b.known)
		img[b.cfg.AmpCoil-b.lo] = wantAmp
		if !b.write(ctx, func(ctx context.Context) error { return b.cli.WriteCoil(ctx, b.cfg.AmpCoil, wantAmp) }, img) {
			return b.reopenAt
		}
		now = time.Now()
		if wantAmp {
			b.ampOnAt = now
			next = earliest(next, now.Add(b.cfg.Warmup))
		}
		b.publishWarm()
		b.record(now)
	} else if d.anyLive {
		b.record(now) // an already-warm amplifier confirms amp_on for newcomers
	}

	// Poll so that an unplugged or reset board is noticed while idle.
	if time.Since(b.lastIO) >= b.cfg.Poll {
		got, err := b.cli.ReadCoils(ctx, b.lo, uint16(len(b.known)))
		b.lastIO = time.Now()
		if err != nil {
			b.fault(err)
			return b.reopenAt
		}
		if !slices.Equal(got, b.known) {
			b.log.Warn("relay board state changed behind our back", "want", b.known, "got", got)
			copy(b.known, got)
			b.publish()
			return time.Now() // re-apply at once
		}
	}
	b.prune(d, now)
	return next
}

// write performs one write transaction, reads the coils back and checks
// them against img. It returns false after a fault.
func (b *boardCtl) write(ctx context.Context, do func(context.Context) error, img []bool) bool {
	err := do(ctx)
	b.lastIO = time.Now()
	if err == nil {
		var got []bool
		got, err = b.cli.ReadCoils(ctx, b.lo, uint16(len(img)))
		b.lastIO = time.Now()
		if err == nil {
			copy(b.known, got)
			b.publish()
			if !slices.Equal(got, img) {
				err = fmt.Errorf("%w: wrote %v, read %v", ErrVerify, img, got)
			}
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			b.fault(err)
		}
		return false
	}
	return true
}

func (b *boardCtl) zonesAllOff() bool {
	for _, c := range b.cfg.Zones {
		if b.coil(c) {
			return false
		}
	}
	return true
}

// record derives the confirmed steps of each broadcast from the confirmed
// coils.
func (b *boardCtl) record(now time.Time) {
	ampOn := b.coil(b.cfg.AmpCoil)
	h := b.h
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, bc := range h.bcasts {
		off := !now.Before(bc.offAt(b.cfg.Tail))
		allOn, allOff := true, true
		for _, z := range bc.zones {
			if b.coil(b.cfg.Zones[z]) {
				allOff = false
			} else {
				allOn = false
			}
		}
		if ampOn && !off {
			at := b.ampOnAt
			if at.Before(bc.started) {
				at = now
			}
			h.addStepLocked(id, StepAmpOn, at)
		}
		if ampOn && allOn && !off && h.hasStepLocked(id, StepAmpOn) {
			h.addStepLocked(id, StepZonesOn, now)
		}
		if off && allOff && h.hasStepLocked(id, StepZonesOn) {
			h.addStepLocked(id, StepZonesOff, now)
		}
		if off && !ampOn && allOff && h.hasStepLocked(id, StepAmpOn) {
			h.addStepLocked(id, StepAmpOff, now)
		}
	}
}

// prune forgets ended broadcasts once the amplifier is off (their sequence
// is complete) or after a long time, so a board that never comes back
// cannot grow the map.
func (b *boardCtl) prune(d desired, now time.Time) {
	ampOn := b.coil(b.cfg.AmpCoil)
	b.h.mu.Lock()
	defer b.h.mu.Unlock()
	for _, bc := range d.ended {
		if !ampOn || now.Sub(bc.offAt(b.cfg.Tail)) > b.cfg.IdleOff+10*time.Minute {
			delete(b.h.bcasts, bc.id)
		}
	}
}

// open opens the port, reads the coils and clears the alarm. It returns
// false after a fault (the next attempt is then scheduled).
func (b *boardCtl) open(ctx context.Context) bool {
	p, err := serial.Open(b.cfg.Port, &serial.Mode{BaudRate: b.cfg.Baud, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
	if err != nil {
		b.faultKind("open", fmt.Errorf("open %s: %w", b.cfg.Port, err))
		return false
	}
	b.port = p
	b.cli = modbus.NewClient(p, b.cfg.SlaveID, b.cfg.Baud, b.cfg.Timeout)
	got, err := b.cli.ReadCoils(ctx, b.lo, uint16(len(b.known)))
	b.lastIO = time.Now()
	if err != nil {
		b.fault(err)
		return false
	}
	if !b.knownValid || !b.coil(b.cfg.AmpCoil) || !got[b.cfg.AmpCoil-b.lo] {
		// The amplifier's warm-up starts now if it is found on without our
		// having switched it (first start, or the board lost power).
		b.ampOnAt = b.lastIO
	}
	copy(b.known, got)
	b.knownValid = true
	b.attempt = 0
	b.publishWarm()
	b.publish()
	b.h.mu.Lock()
	wasAlarm := b.h.boardSt.Alarm
	b.h.boardSt.OK = true
	b.h.boardSt.Alarm = false
	b.h.boardSt.Reason = ""
	if wasAlarm {
		b.h.boardSt.Since = b.lastIO
	}
	b.h.mu.Unlock()
	b.h.metrics.boardAlarm.Set(0)
	if wasAlarm {
		b.log.Info("relay board recovered")
	} else {
		b.log.Info("relay board open")
	}
	return true
}

// publish copies the confirmed coils into Status and the metrics.
func (b *boardCtl) publish() {
	b.h.mu.Lock()
	defer b.h.mu.Unlock()
	set := func(name string, on bool) {
		b.h.boardSt.Coils[name] = on
		v := 0.0
		if on {
			v = 1
		}
		b.h.metrics.coil.WithLabelValues(name).Set(v)
	}
	set(ampName, b.coil(b.cfg.AmpCoil))
	for z, c := range b.cfg.Zones {
		set(z, b.coil(c))
	}
}

func faultKind(err error) string {
	switch {
	case errors.Is(err, modbus.ErrTimeout):
		return "timeout"
	case errors.Is(err, modbus.ErrCRC):
		return "crc"
	case errors.Is(err, ErrVerify):
		return "verify"
	case errors.Is(err, modbus.ErrMalformed), errors.Is(err, modbus.ErrException):
		return "protocol"
	}
	return "io"
}

func (b *boardCtl) fault(err error) { b.faultKind(faultKind(err), err) }

// faultKind raises the alarm, closes the port and schedules a reopen with
// exponential backoff and jitter: the n-th attempt waits a random time in
// [d/2, d) with d = ReopenMin·2ⁿ capped at ReopenMax, so many daemons that
// lost a shared bus do not retry in lockstep.
func (b *boardCtl) faultKind(kind string, err error) {
	now := time.Now()
	if b.port != nil {
		b.port.Close()
		b.port = nil
	}
	d := b.cfg.ReopenMin << min(b.attempt, 20)
	if d > b.cfg.ReopenMax || d <= 0 {
		d = b.cfg.ReopenMax
	}
	wait := d/2 + rand.N(d/2+1)
	b.attempt++
	b.reopenAt = now.Add(wait)

	b.h.metrics.boardFaults.WithLabelValues(kind).Inc()
	b.h.metrics.boardAlarm.Set(1)
	reason := kind + ": " + err.Error()
	b.h.mu.Lock()
	first := !b.h.boardSt.Alarm
	changed := b.h.boardSt.Reason != reason
	b.h.boardSt.OK = false
	b.h.boardSt.Faults++
	b.h.boardSt.Reason = reason
	if first {
		b.h.boardSt.Alarm = true
		b.h.boardSt.Since = now
	}
	b.h.mu.Unlock()
	if first || changed {
		b.log.Warn("relay board alarm", "kind", kind, "err", err, "retry_in", wait)
	} else {
		b.log.Debug("relay board still failing", "kind", kind, "err", err, "retry_in", wait)
	}
}
