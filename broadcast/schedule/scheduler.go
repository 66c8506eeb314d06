package schedule

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loalang/loalang/device/wire"
)

// Defaults and bounds of the scheduler. See docs/scheduling.md.
const (
	// DefaultGrace is how late an occurrence may still be played.
	DefaultGrace = 5 * time.Minute
	// DefaultTick is the longest the scheduler sleeps between checks, which
	// bounds how long a wall-clock step goes unnoticed.
	DefaultTick = time.Second
	// CatchUpWindow bounds how far back occurrences are enumerated after a
	// restart or a forward clock step; older ones are not recorded.
	CatchUpWindow = 7 * 24 * time.Hour
	// MaxMissedRecords bounds the missed records written per schedule per
	// wake; the oldest record's Detail counts the ones left out.
	MaxMissedRecords = 100
	// JumpThreshold is the wall-versus-monotonic disagreement above which a
	// wall-clock step is reported.
	JumpThreshold = 2 * time.Second
	// FutureRecordLimit: a recorded occurrence more than this far ahead of
	// the clock was written under a wrong clock (a box that booted in the
	// future); it is ignored rather than silencing the schedule until then.
	FutureRecordLimit = 24 * time.Hour
)

// Trigger starts a broadcast; the broadcast engine implements it. Fire
// should hand the firing over and return promptly; it runs on its own
// goroutine so a slow engine never delays other schedules.
type Trigger interface {
	Fire(ctx context.Context, s Schedule, occurrence time.Time) error
}

// Config tunes the scheduler; zero values take the defaults.
type Config struct {
	// Grace is how late an occurrence may still be played (default 5 min).
	Grace time.Duration
	// QuietHours, when set, skips normal and background firings inside it.
	QuietHours *QuietHours
	// Tick is the longest sleep between checks (default 1 s).
	Tick time.Duration
	// Fault, if set, is told whether the scheduler can do its work: the
	// error while re-reading the schedules or recording a firing fails (it
	// retries every Tick), then nil once a check succeeds again. The
	// daemon shows it in /healthz, so a damaged store is never silent.
	Fault func(err error)
}

// Scheduler fires schedules from a Store into a Trigger. See
// docs/scheduling.md for the exact semantics.
type Scheduler struct {
	cfg    Config
	store  Store
	trig   Trigger
	clock  Clock
	log    *slog.Logger
	reload chan struct{}
	run    atomic.Bool
	wg     sync.WaitGroup

	// Owned by the Run goroutine.
	quiet         *quietWindow
	entries       []*entry
	reloadPending bool
	havePrev      bool
	prevWall      time.Time
	prevMono      time.Duration
	monoBase      time.Time
	jump          time.Duration // wall-clock step seen on this wake, or 0
	faulted       bool          // the last check reported a Fault
}

type entry struct {
	s      Schedule
	p      *plan
	cursor time.Time // latest handled occurrence, or the lower bound
	next   time.Time // first occurrence after cursor; zero when none
}

// New returns a scheduler. A nil clock means the system clock and a nil
// logger discards.
func New(cfg Config, store Store, trig Trigger, clock Clock, log *slog.Logger) *Scheduler {
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.Tick <= 0 {
		cfg.Tick = DefaultTick
	}
	if clock == nil {
		clock = NewRealClock()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Scheduler{
		cfg:    cfg,
		store:  store,
		trig:   trig,
		clock:  clock,
		log:    log.With("component", "schedule"),
		reload: make(chan struct{}, 1),
	}
}

// Reload tells a running scheduler that schedules changed (create, update,
// delete); it re-reads the store before its next check. It never blocks.
func (s *Scheduler) Reload() {
	select {
	case s.reload <- struct{}{}:
	default:
	}
}

// Run fires schedules until ctx is cancelled, then waits for in-flight
// Trigger calls and returns nil. It fails only on a bad Config or when the
// first read of the store fails; its owner restarts it (the daemon does
// with health.Supervise). Later store faults are retried and reported to
// Config.Fault.
func (s *Scheduler) Run(ctx context.Context) error {
	if !s.run.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer s.run.Store(false)
	defer s.wg.Wait()
	s.quiet = nil
	if s.cfg.QuietHours != nil {
		w, err := s.cfg.QuietHours.compile()
		if err != nil {
			return fmt.Errorf("scheduler config: %w", err)
		}
		s.quiet = w
	}
	now := s.clock.Now()
	s.observe(now)
	if err := s.load(ctx, now); err != nil {
		return fmt.Errorf("load schedules: %w", err)
	}
	for {
		now = s.clock.Now()
		s.observe(now)
		var fault error
		if s.reloadPending {
			if err := s.load(ctx, now); err != nil {
				s.log.Error("reload schedules failed", "err", err)
				fault = fmt.Errorf("reload schedules: %w", err)
			}
		}
		if err := s.evaluate(ctx, now); err != nil && fault == nil {
			fault = err
		}
		s.report(fault)
		timer := s.clock.NewTimer(s.wait(s.clock.Now()))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C():
		case <-s.reload:
			timer.Stop()
			s.reloadPending = true
		}
	}
}

// observe compares wall time against monotonic time to detect steps.
func (s *Scheduler) observe(now time.Time) {
	var mono time.Duration
	if m, ok := s.clock.(Monotonic); ok {
		mono = m.Monotonic()
	} else {
		if s.monoBase.IsZero() {
			s.monoBase = now
		}
		mono = now.Sub(s.monoBase) // monotonic when both readings carry one
	}
	s.jump = 0
	if s.havePrev {
		j := now.Round(0).Sub(s.prevWall.Round(0)) - (mono - s.prevMono)
		if j > JumpThreshold || j < -JumpThreshold {
			s.jump = j
			s.log.Warn("wall clock stepped", "jump", j.String(), "now", now.UTC())
		}
	}
	s.havePrev, s.prevWall, s.prevMono = true, now, mono
}

// load (re)reads the schedules and computes each one's lower bound.
func (s *Scheduler) load(ctx context.Context, now time.Time) error {
	list, err := s.store.Schedules(ctx)
	if err != nil {
		return err
	}
	old := make(map[string]*entry, len(s.entries))
	for _, e := range s.entries {
		old[e.s.ID] = e
	}
	entries := make([]*entry, 0, len(list))
	for _, sc := range list {
		if !sc.Enabled {
			continue
		}
		p, err := sc.compile()
		if err != nil {
			s.log.Warn("invalid schedule skipped", "schedule", sc.ID, "err", err)
			continue
		}
		last, err := s.store.LastOccurrence(ctx, sc.ID)
		if err != nil {
			return fmt.Errorf("last occurrence of %s: %w", sc.ID, err)
		}
		if last.After(now.Add(FutureRecordLimit)) {
			s.log.Warn("recorded occurrence ahead of clock ignored", "schedule", sc.ID, "occurrence", last.UTC())
			last = now
		}
		// Occurrences before the latest record, creation or edit are not
		// owed: a new or re-enabled schedule does not "miss" past days.
		lower := latest(last, sc.CreatedAt, sc.UpdatedAt)
		if o := old[sc.ID]; o != nil && o.cursor.After(lower) && !o.cursor.After(now.Add(FutureRecordLimit)) {
			lower = o.cursor
		}
		sc.Zones = slices.Clone(sc.Zones)
		e := &entry{s: sc, p: p, cursor: lower}
		e.next, _ = p.iter(lower)()
		entries = append(entries, e)
	}
	// Higher priorities are handed to the engine first when due together.
	slices.SortFunc(entries, func(a, b *entry) int {
		if c := cmp.Compare(wire.PriorityRank(b.s.Priority), wire.PriorityRank(a.s.Priority)); c != 0 {
			return c
		}
		return cmp.Compare(a.s.ID, b.s.ID)
	})
	s.entries = entries
	s.reloadPending = false
	s.log.Debug("schedules loaded", "enabled", len(entries), "total", len(list))
	return nil
}

func latest(ts ...time.Time) time.Time {
	var m time.Time
	for _, t := range ts {
		if t.After(m) {
			m = t
		}
	}
	return m
}

// wait returns how long to sleep: until the earliest due occurrence,
// bounded by Tick. Entries still due (a failed claim) retry after Tick.
func (s *Scheduler) wait(now time.Time) time.Duration {
	w := s.cfg.Tick
	for _, e := range s.entries {
		if e.next.IsZero() {
			continue
		}
		if d := e.next.Sub(now); d > 0 && d < w {
			w = d
		}
	}
	return w
}

// report tells Config.Fault about a change of state.
func (s *Scheduler) report(err error) {
	if s.cfg.Fault == nil || (err == nil && !s.faulted) {
		return
	}
	s.faulted = err != nil
	s.cfg.Fault(err)
}

// evaluate handles every due entry and returns the first error, after
// trying them all.
func (s *Scheduler) evaluate(ctx context.Context, now time.Time) error {
	var first error
	for _, e := range s.entries {
		if e.next.IsZero() || e.next.After(now) {
			continue
		}
		if err := s.handle(ctx, e, now); err != nil {
			s.log.Error("schedule not handled, retrying", "schedule", e.s.ID, "err", err)
			if first == nil {
				first = fmt.Errorf("schedule %s: %w", e.s.ID, err)
			}
		}
	}
	return first
}

// handle applies the grace rule to the occurrences in (cursor, now].
func (s *Scheduler) handle(ctx context.Context, e *entry, now time.Time) error {
	lo := e.cursor
	if floor := now.Add(-CatchUpWindow); floor.After(lo) {
		lo = floor
	}
	var occ []time.Time
	total := 0
	next := e.p.iter(lo)
	for {
		t, ok := next()
		if !ok || t.After(now) {
			break
		}
		total++
		occ = append(occ, t)
		if len(occ) > 2*(MaxMissedRecords+1) {
			occ = append(occ[:0], occ[len(occ)-(MaxMissedRecords+1):]...)
		}
	}
	if len(occ) > MaxMissedRecords+1 {
		occ = occ[len(occ)-(MaxMissedRecords+1):]
	}
	if total == 0 {
		e.next, _ = e.p.iter(e.cursor)()
		return nil
	}
	jump := ""
	if s.jump != 0 {
		sign := "+"
		if s.jump < 0 {
			sign = ""
		}
		jump = fmt.Sprintf("; wall clock stepped %s%v", sign, s.jump)
	}
	last := occ[len(occ)-1]
	for i, t := range occ[:len(occ)-1] {
		detail := "superseded by a later occurrence" + jump
		if dropped := total - len(occ); i == 0 && dropped > 0 {
			detail += fmt.Sprintf("; %d earlier occurrences not recorded", dropped)
		}
		if _, err := s.record(ctx, e, t, now, OutcomeMissed, detail); err != nil {
			s.log.Error("missed record failed", "schedule", e.s.ID, "occurrence", t, "err", err)
		}
	}
	late := now.Sub(last)
	var err error
	switch {
	case late >= s.cfg.Grace:
		_, err = s.record(ctx, e, last, now, OutcomeMissed,
			fmt.Sprintf("late %v, grace %v%s", late, s.cfg.Grace, jump))
	case s.quiet.contains(last) && !ExemptFromQuiet(e.s.Priority):
		_, err = s.record(ctx, e, last, now, OutcomeSkippedQuiet, "inside quiet hours")
	default:
		err = s.fire(ctx, e, last, now)
	}
	if err != nil {
		return err
	}
	e.cursor = last
	e.next, _ = e.p.iter(last)()
	return nil
}

func (s *Scheduler) record(ctx context.Context, e *entry, occ, now time.Time, outcome, detail string) (bool, error) {
	f := Firing{ScheduleID: e.s.ID, Occurrence: occ, Fired: now, Outcome: outcome, Detail: detail}
	ok, err := s.store.ClaimFiring(ctx, f)
	if err != nil {
		return false, fmt.Errorf("claim %s at %s: %w", e.s.ID, occ.UTC().Format(time.RFC3339Nano), err)
	}
	if ok && outcome != OutcomeClaimed {
		s.log.Info("occurrence not played", "schedule", e.s.ID, "occurrence", occ.UTC(), "outcome", outcome, "detail", detail)
	}
	return ok, nil
}

// fire claims the occurrence durably, then hands it to the engine: a crash
// in between loses this one firing rather than ever playing it twice.
func (s *Scheduler) fire(ctx context.Context, e *entry, occ, now time.Time) error {
	ok, err := s.record(ctx, e, occ, now, OutcomeClaimed, "")
	if err != nil {
		return err
	}
	if !ok {
		s.log.Info("occurrence already recorded", "schedule", e.s.ID, "occurrence", occ.UTC())
		return nil
	}
	sc := e.s
	sc.Zones = slices.Clone(sc.Zones)
	f := Firing{ScheduleID: sc.ID, Occurrence: occ, Fired: now, Outcome: OutcomeFired}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.trig.Fire(ctx, sc, occ); err != nil {
			f.Outcome, f.Detail = OutcomeFailed, err.Error()
			s.log.Error("fire failed", "schedule", sc.ID, "occurrence", occ.UTC(), "err", err)
		} else {
			s.log.Info("fired", "schedule", sc.ID, "occurrence", occ.UTC(), "late", now.Sub(occ).String())
		}
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := s.store.UpdateFiring(uctx, f); err != nil {
			s.log.Error("firing outcome not recorded", "schedule", sc.ID, "err", err)
		}
	}()
	return nil
}
