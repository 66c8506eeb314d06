package schedule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

var hcm = func() *time.Location {
	loc, err := time.LoadLocation(DefaultTimeZone)
	if err != nil {
		panic(err)
	}
	return loc
}()

// at returns a wall time in Asia/Ho_Chi_Minh on March 2025 (the 10th is a
// Monday).
func at(day, h, m int) time.Time { return time.Date(2025, 3, day, h, m, 0, 0, hcm) }

type fire struct {
	id       string
	occ, now time.Time
}

// recorder is a Trigger that records what the engine was asked to play and
// the (fake) clock reading at that moment.
type recorder struct {
	clock Clock
	mu    sync.Mutex
	fires []fire
	fail  map[string]error
}

func (r *recorder) Fire(ctx context.Context, s Schedule, occ time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fires = append(r.fires, fire{s.ID, occ, r.clock.Now()})
	return r.fail[s.ID]
}

func (r *recorder) take() []fire {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.fires
	r.fires = nil
	return f
}

type harness struct {
	t      *testing.T
	clock  *FakeClock
	store  *MemStore
	trig   *recorder
	sched  *Scheduler
	cancel context.CancelFunc
	done   chan error
}

func testLogger() *slog.Logger {
	if testing.Verbose() && os.Getenv("SCHEDULE_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// start runs a Scheduler over store on clock; call inside synctest.Test.
func start(t *testing.T, clock *FakeClock, store *MemStore, trig *recorder, cfg Config) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	h := &harness{t: t, clock: clock, store: store, trig: trig, cancel: cancel, done: make(chan error, 1)}
	h.sched = New(cfg, store, trig, clock, testLogger())
	go func() { h.done <- h.sched.Run(ctx) }()
	synctest.Wait()
	return h
}

// stop cancels Run, as a crash would (the MemStore survives), and checks
// it returned cleanly.
func (h *harness) stop() {
	h.t.Helper()
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Fatalf("Run: %v", err)
	}
}

// runUntil advances the fake clock timer by timer up to wall time until,
// letting the scheduler settle after each step, so each wake happens at
// exactly the instant the scheduler asked for.
func (h *harness) runUntil(until time.Time) {
	h.t.Helper()
	for {
		synctest.Wait()
		now := h.clock.Now()
		d, ok := h.clock.NextTimer()
		if !ok {
			h.t.Fatal("scheduler is not waiting on a timer")
		}
		if now.Add(d).After(until) {
			h.clock.Advance(until.Sub(now))
			synctest.Wait()
			return
		}
		h.clock.Advance(d)
	}
}

func sched(id, prio string, mod func(*Schedule)) Schedule {
	s := Schedule{
		ID: id, Name: id, Zones: []string{"thon-1"},
		Source:   Source{Kind: SourceMedia, MediaID: "m-" + id},
		Priority: prio, Volume: 70, Enabled: true,
		CreatedAt: at(9, 23, 59), UpdatedAt: at(9, 23, 59),
	}
	mod(&s)
	return s
}

func rule(r string) func(*Schedule) { return func(s *Schedule) { s.RRule = r } }

// outcomes maps "id@15:04 Jan 2" to outcome for compact assertions.
func outcomes(store *MemStore) map[string]string {
	m := map[string]string{}
	for _, f := range store.Firings() {
		m[f.ScheduleID+"@"+f.Occurrence.In(hcm).Format("Jan 2 15:04")] = f.Outcome
	}
	return m
}

func checkOutcomes(t *testing.T, store *MemStore, want map[string]string) {
	t.Helper()
	got := outcomes(store)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: outcome %q, want %q", k, got[k], v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected record %s: %s", k, v)
		}
	}
}

func checkFires(t *testing.T, got []fire, want ...string) {
	t.Helper()
	// Firings due together go to the engine on separate goroutines, so
	// compare in (occurrence, id) order.
	slices.SortStableFunc(got, func(a, b fire) int {
		if c := a.occ.Compare(b.occ); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	var ids []string
	for _, f := range got {
		ids = append(ids, f.id+"@"+f.occ.In(hcm).Format("Jan 2 15:04"))
	}
	if !slices.Equal(ids, want) {
		t.Errorf("fired %v, want %v", ids, want)
	}
}

// TestDayOfTimetable runs a realistic village timetable for a day and a
// half on the fake clock.
func TestDayOfTimetable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clock := NewFakeClock(at(10, 0, 0)) // Monday 00:00
		store := NewMemStore()
		store.Put(sched("morning", "normal", rule("FREQ=DAILY;BYHOUR=6;BYMINUTE=0")))
		store.Put(sched("evening", "normal", func(s *Schedule) { s.Cron = "30 17 * * 1-5" }))
		store.Put(sched("monday", "priority", rule("FREQ=WEEKLY;BYDAY=MO;BYHOUR=7;BYMINUTE=0")))
		store.Put(sched("relay", "background", func(s *Schedule) {
			s.RRule = "FREQ=DAILY;BYHOUR=11"
			s.Source = Source{Kind: SourceRelay, URL: "https://vov1.example/live.mp3", Duration: 30 * time.Minute}
		}))
		store.Put(sched("late-notice", "normal", rule("FREQ=DAILY;BYHOUR=23")))
		store.Put(sched("dawn-music", "background", rule("FREQ=DAILY;BYHOUR=4;BYMINUTE=30")))
		store.Put(sched("siren-test", "emergency", rule("FREQ=DAILY;BYHOUR=22;BYMINUTE=30")))
		store.Put(sched("disabled", "normal", func(s *Schedule) { s.RRule = "FREQ=HOURLY"; s.Enabled = false }))
		for _, s := range must(store.Schedules(t.Context())) {
			if err := s.Validate(nil); err != nil {
				t.Fatalf("timetable invalid: %v", err)
			}
		}
		trig := &recorder{clock: clock}
		cfg := Config{Tick: 10 * time.Minute, QuietHours: &QuietHours{Start: "22:00", End: "05:00"}}
		h := start(t, clock, store, trig, cfg)
		h.runUntil(at(11, 12, 0))
		h.stop()

		fires := trig.take()
		for _, f := range fires {
			if !f.now.Equal(f.occ) {
				t.Errorf("%s fired at %v, intended %v", f.id, f.now, f.occ)
			}
		}
		checkFires(t, fires,
			"morning@Mar 10 06:00", "monday@Mar 10 07:00", "relay@Mar 10 11:00", "evening@Mar 10 17:30",
			"siren-test@Mar 10 22:30", "morning@Mar 11 06:00", "relay@Mar 11 11:00")
		checkOutcomes(t, store, map[string]string{
			"dawn-music@Mar 10 04:30":  OutcomeSkippedQuiet,
			"morning@Mar 10 06:00":     OutcomeFired,
			"monday@Mar 10 07:00":      OutcomeFired,
			"relay@Mar 10 11:00":       OutcomeFired,
			"evening@Mar 10 17:30":     OutcomeFired,
			"siren-test@Mar 10 22:30":  OutcomeFired,
			"late-notice@Mar 10 23:00": OutcomeSkippedQuiet,
			"dawn-music@Mar 11 04:30":  OutcomeSkippedQuiet,
			"morning@Mar 11 06:00":     OutcomeFired,
			"relay@Mar 11 11:00":       OutcomeFired,
		})
		for _, f := range store.Firings() {
			if f.Outcome == OutcomeSkippedQuiet && !f.Fired.Equal(f.Occurrence) {
				t.Errorf("%s skipped at %v, intended %v", f.ScheduleID, f.Fired, f.Occurrence)
			}
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestCrashRestart keeps one MemStore across Scheduler instances.
func TestCrashRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clock := NewFakeClock(at(10, 5, 50))
		store := NewMemStore()
		store.Put(sched("morning", "normal", rule("FREQ=DAILY;BYHOUR=6")))
		store.Put(sched("later", "normal", rule("FREQ=DAILY;BYHOUR=6;BYMINUTE=10")))
		store.Put(sched("noon", "normal", rule("FREQ=DAILY;BYHOUR=11")))
		trig := &recorder{clock: clock}

		// Run A plays 06:00 and dies at 06:03.
		a := start(t, clock, store, trig, Config{})
		a.runUntil(at(10, 6, 3))
		a.stop()
		checkFires(t, trig.take(), "morning@Mar 10 06:00")

		// Restart at once: 06:00 is within grace but already played.
		b := start(t, clock, store, trig, Config{})
		b.stop()
		checkFires(t, trig.take())

		// Down from 06:03 to 06:12: 06:10 is 2 min late, played late.
		clock.Advance(9 * time.Minute)
		c := start(t, clock, store, trig, Config{})
		fires := trig.take()
		checkFires(t, fires, "later@Mar 10 06:10")
		if len(fires) == 1 && fires[0].now.Sub(fires[0].occ) != 2*time.Minute {
			t.Errorf("late firing at %v", fires[0].now)
		}
		c.runUntil(at(10, 10, 55))
		c.stop()

		// Down from 10:55 to 11:20: 11:00 is 20 min late, recorded missed.
		clock.Advance(25 * time.Minute)
		d := start(t, clock, store, trig, Config{})
		d.stop()
		checkFires(t, trig.take())

		// A claim that was written just before a crash, with the engine
		// never reached: the occurrence is not played on restart.
		if ok, _ := store.ClaimFiring(t.Context(), Firing{ScheduleID: "later", Occurrence: at(11, 6, 10), Fired: at(11, 6, 10), Outcome: OutcomeClaimed}); !ok {
			t.Fatal("claim refused")
		}
		// Down for three days: 11th–13th missed, 14th 06:00 played at 06:02.
		clock.Set(at(14, 6, 2))
		e := start(t, clock, store, trig, Config{})
		e.stop()
		checkFires(t, trig.take(), "morning@Mar 14 06:00")

		checkOutcomes(t, store, map[string]string{
			"morning@Mar 10 06:00": OutcomeFired,
			"later@Mar 10 06:10":   OutcomeFired,
			"noon@Mar 10 11:00":    OutcomeMissed,
			"later@Mar 11 06:10":   OutcomeClaimed,
			"morning@Mar 11 06:00": OutcomeMissed, "morning@Mar 12 06:00": OutcomeMissed, "morning@Mar 13 06:00": OutcomeMissed,
			"morning@Mar 14 06:00": OutcomeFired,
			"later@Mar 12 06:10":   OutcomeMissed, "later@Mar 13 06:10": OutcomeMissed,
			"noon@Mar 11 11:00": OutcomeMissed, "noon@Mar 12 11:00": OutcomeMissed, "noon@Mar 13 11:00": OutcomeMissed,
		})
	})
}

// TestClockJumps steps the wall clock +3 h and -3 h under a running
// scheduler with the default 1 s tick.
func TestClockJumps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clock := NewFakeClock(at(10, 8, 59))
		store := NewMemStore()
		store.Put(sched("hourly", "normal", func(s *Schedule) {
			s.RRule, s.CreatedAt, s.UpdatedAt = "FREQ=HOURLY", at(10, 8, 59), at(10, 8, 59)
		}))
		trig := &recorder{clock: clock}
		h := start(t, clock, store, trig, Config{})
		h.runUntil(at(10, 9, 0).Add(30 * time.Second))
		checkFires(t, trig.take(), "hourly@Mar 10 09:00")

		// NTP steps the clock forward 3 h: within one tick 12:00 plays
		// (31 s late), 10:00 and 11:00 are recorded missed, no burst.
		clock.Set(clock.Now().Add(3 * time.Hour))
		clock.Advance(time.Second)
		synctest.Wait()
		fires := trig.take()
		checkFires(t, fires, "hourly@Mar 10 12:00")
		if len(fires) == 1 && fires[0].now.Sub(fires[0].occ) != 31*time.Second {
			t.Errorf("fired %v late", fires[0].now.Sub(fires[0].occ))
		}
		for _, f := range store.Firings() {
			if f.Outcome == OutcomeMissed && !containsAll(f.Detail, "superseded", "wall clock stepped +3h0m0s") {
				t.Errorf("missed record detail %q", f.Detail)
			}
		}

		// NTP steps it back 3 h: 10:00, 11:00 and 12:00 come round again
		// on the wall clock and must not replay; 13:00 plays on time.
		clock.Set(clock.Now().Add(-3 * time.Hour))
		h.runUntil(at(10, 13, 0).Add(time.Second))
		h.stop()
		fires = trig.take()
		checkFires(t, fires, "hourly@Mar 10 13:00")
		if len(fires) == 1 && !fires[0].now.Equal(fires[0].occ) {
			t.Errorf("13:00 fired at %v", fires[0].now)
		}
		checkOutcomes(t, store, map[string]string{
			"hourly@Mar 10 09:00": OutcomeFired,
			"hourly@Mar 10 10:00": OutcomeMissed,
			"hourly@Mar 10 11:00": OutcomeMissed,
			"hourly@Mar 10 12:00": OutcomeFired,
			"hourly@Mar 10 13:00": OutcomeFired,
		})

		// A restart after the backward step is guarded by the store too.
		clock.Set(at(10, 12, 0).Add(10 * time.Second))
		r := start(t, clock, store, trig, Config{})
		r.stop()
		checkFires(t, trig.take())
	})
}

func containsAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}

// TestReloadAndFailure covers schedule changes while running, a failing
// engine and a new schedule not "missing" the past.
func TestReloadAndFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clock := NewFakeClock(at(10, 6, 30))
		store := NewMemStore()
		trig := &recorder{clock: clock, fail: map[string]error{"broken": errors.New("no such media")}}
		h := start(t, clock, store, trig, Config{Tick: time.Minute})

		// Created at 06:30 with a daily 06:00 rule: nothing owed today.
		store.Put(sched("new", "normal", func(s *Schedule) {
			s.RRule = "FREQ=DAILY;BYHOUR=6,7"
			s.CreatedAt, s.UpdatedAt = at(10, 6, 30), at(10, 6, 30)
		}))
		store.Put(sched("broken", "normal", func(s *Schedule) { s.At = at(10, 6, 45) }))
		store.Put(sched("bg", "background", func(s *Schedule) { s.At = at(10, 6, 50) }))
		store.Put(sched("urgent", "emergency", func(s *Schedule) { s.At = at(10, 6, 50) }))
		store.Put(sched("gone", "normal", func(s *Schedule) { s.At = at(10, 6, 55) }))
		h.sched.Reload()
		h.runUntil(at(10, 6, 52))
		store.Delete("gone")
		h.sched.Reload()
		h.runUntil(at(10, 7, 1))
		h.stop()
		checkFires(t, trig.take(), "broken@Mar 10 06:45", "bg@Mar 10 06:50", "urgent@Mar 10 06:50", "new@Mar 10 07:00")
		checkOutcomes(t, store, map[string]string{
			"broken@Mar 10 06:45": OutcomeFailed,
			"urgent@Mar 10 06:50": OutcomeFired,
			"bg@Mar 10 06:50":     OutcomeFired,
			"new@Mar 10 07:00":    OutcomeFired,
		})
		for _, f := range store.Firings() {
			if f.ScheduleID == "broken" && f.Detail != "no such media" {
				t.Errorf("failure detail %q", f.Detail)
			}
		}
	})
}

// TestLongOutage bounds the missed records after a long outage of a
// high-frequency schedule.
func TestLongOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clock := NewFakeClock(at(20, 12, 0).Add(30 * time.Second))
		store := NewMemStore()
		store.Put(sched("minutely", "background", func(s *Schedule) {
			s.RRule = "FREQ=MINUTELY"
			s.CreatedAt, s.UpdatedAt = time.Date(2024, 1, 1, 0, 0, 0, 0, hcm), time.Date(2024, 1, 1, 0, 0, 0, 0, hcm)
		}))
		trig := &recorder{clock: clock}
		start(t, clock, store, trig, Config{}).stop()
		checkFires(t, trig.take(), "minutely@Mar 20 12:00")
		recs := store.Firings()
		if len(recs) != MaxMissedRecords+1 {
			t.Fatalf("%d records, want %d", len(recs), MaxMissedRecords+1)
		}
		want := fmt.Sprintf("%d earlier occurrences not recorded", int(CatchUpWindow/time.Minute)-MaxMissedRecords-1)
		if !strings.Contains(recs[0].Detail, want) {
			t.Errorf("oldest record detail %q, want it to say %q", recs[0].Detail, want)
		}
	})
}

// flakyStore fails the first claims, as a full disk might.
type flakyStore struct {
	*MemStore
	mu    sync.Mutex
	fails int
}

func (f *flakyStore) ClaimFiring(ctx context.Context, fr Firing) (bool, error) {
	f.mu.Lock()
	if f.fails > 0 {
		f.fails--
		f.mu.Unlock()
		return false, errors.New("disk full")
	}
	f.mu.Unlock()
	return f.MemStore.ClaimFiring(ctx, fr)
}

// TestClaimFailureRetries: nothing plays without a durable claim, the claim
// is retried every Tick (no busy loop), and the firing then plays once.
// Config.Fault hears of the failure once and of the recovery once.
func TestClaimFailureRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clock := NewFakeClock(at(10, 5, 59))
		mem := NewMemStore()
		mem.Put(sched("morning", "normal", rule("FREQ=DAILY;BYHOUR=6")))
		store := &flakyStore{MemStore: mem, fails: 2}
		trig := &recorder{clock: clock}
		ctx, cancel := context.WithCancel(t.Context())
		var faultMu sync.Mutex
		var faults []string
		cfg := Config{Fault: func(err error) {
			faultMu.Lock()
			defer faultMu.Unlock()
			faults = append(faults, fmt.Sprint(err))
		}}
		s := New(cfg, store, trig, clock, testLogger())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		h := &harness{t: t, clock: clock}
		h.runUntil(at(10, 6, 0).Add(5 * time.Second))
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		faultMu.Lock()
		if len(faults) != 3 || !strings.Contains(faults[0], "disk full") || !strings.Contains(faults[1], "disk full") || faults[2] != "<nil>" {
			t.Errorf("faults reported %q, want the claim error twice then <nil>", faults)
		}
		faultMu.Unlock()
		fires := trig.take()
		checkFires(t, fires, "morning@Mar 10 06:00")
		if len(fires) == 1 && fires[0].now.Sub(fires[0].occ) != 2*time.Second {
			t.Errorf("played %v late, want 2s (two failed claims, 1 s tick)", fires[0].now.Sub(fires[0].occ))
		}
		checkOutcomes(t, mem, map[string]string{"morning@Mar 10 06:00": OutcomeFired})
	})
}
