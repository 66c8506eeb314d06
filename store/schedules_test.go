package store_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loalang/loalang/broadcast/schedule"
	"github.com/loalang/loalang/store"
	"github.com/loalang/loalang/store/storetest"
)

func TestScheduleStoreClaimOnce(t *testing.T) {
	db := storetest.Open(t)
	s := store.NewScheduleStore(db)
	ctx := context.Background()
	occ := time.Date(2026, 3, 1, 6, 0, 0, 0, time.UTC)

	// Concurrent claims of one occurrence: exactly one wins.
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.ClaimFiring(ctx, schedule.Firing{ScheduleID: "sang", Occurrence: occ, Fired: occ, Outcome: schedule.OutcomeClaimed})
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d claims won, want 1", wins.Load())
	}
	if err := s.UpdateFiring(ctx, schedule.Firing{ScheduleID: "sang", Occurrence: occ, Fired: occ, Outcome: schedule.OutcomeFired}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateFiring(ctx, schedule.Firing{ScheduleID: "sang", Occurrence: occ.Add(time.Hour), Outcome: schedule.OutcomeFired}); err == nil {
		t.Fatal("update of an unclaimed firing succeeded")
	}

	// The claim survives reopening the file.
	path := db.Path()
	db.Close()
	db2, err := store.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	s2 := store.NewScheduleStore(db2)
	if ok, err := s2.ClaimFiring(ctx, schedule.Firing{ScheduleID: "sang", Occurrence: occ, Outcome: schedule.OutcomeClaimed}); ok || err != nil {
		t.Fatalf("claim after reopen: %v %v", ok, err)
	}
	f, err := s2.Firings("sang", 0)
	if err != nil || len(f) != 1 || f[0].Outcome != schedule.OutcomeFired {
		t.Fatalf("firings: %+v %v", f, err)
	}
	// Outcomes are audited in the transaction that records them.
	ev, _ := db2.AuditRange(time.Time{}, time.Time{}, 0)
	if len(ev) != 1 || ev[0].Action != "schedule.fired" || ev[0].Target != "sang" || ev[0].Actor != store.SchedulerActor {
		t.Fatalf("audit: %+v", ev)
	}
}

func TestScheduleStoreLastOccurrence(t *testing.T) {
	db := storetest.Open(t)
	s := store.NewScheduleStore(db)
	ctx := context.Background()
	base := time.Date(2026, 3, 1, 6, 0, 0, 0, time.UTC)
	if last, err := s.LastOccurrence(ctx, "a"); err != nil || !last.IsZero() {
		t.Fatalf("empty: %v %v", last, err)
	}
	// Neighbouring ids ("a" < "a-b" < "ab" < "b") must not leak into each
	// other, whatever the outcome and insertion order.
	claims := []struct {
		id      string
		at      time.Duration
		outcome string
	}{
		{"a", 2 * time.Hour, schedule.OutcomeMissed},
		{"a", 1 * time.Hour, schedule.OutcomeClaimed},
		{"a", 3 * time.Hour, schedule.OutcomeSkippedQuiet},
		{"a-b", 9 * time.Hour, schedule.OutcomeClaimed},
		{"ab", 10 * time.Hour, schedule.OutcomeClaimed},
		{"b", 1 * time.Hour, schedule.OutcomeFailed},
		{"c", 500 * time.Hour, schedule.OutcomeClaimed},
	}
	for _, c := range claims {
		if ok, err := s.ClaimFiring(ctx, schedule.Firing{ScheduleID: c.id, Occurrence: base.Add(c.at), Fired: base, Outcome: c.outcome}); !ok || err != nil {
			t.Fatalf("claim %+v: %v %v", c, ok, err)
		}
	}
	for id, want := range map[string]time.Duration{"a": 3 * time.Hour, "a-b": 9 * time.Hour, "ab": 10 * time.Hour, "b": time.Hour, "c": 500 * time.Hour} {
		last, err := s.LastOccurrence(ctx, id)
		if err != nil || !last.Equal(base.Add(want)) {
			t.Errorf("last %s: %v %v, want %v", id, last, err, base.Add(want))
		}
	}
	if last, _ := s.LastOccurrence(ctx, "0"); !last.IsZero() {
		t.Errorf("unknown id: %v", last)
	}
	f, _ := s.Firings("a", 0)
	if len(f) != 3 || !f[0].Occurrence.Equal(base.Add(3*time.Hour)) || !f[2].Occurrence.Equal(base.Add(time.Hour)) {
		t.Fatalf("firings of a, newest first: %+v", f)
	}
	if all, _ := s.Firings("", 0); len(all) != len(claims) {
		t.Fatalf("all firings: %d", len(all))
	}
	if _, err := store.FiringKey("", base); err == nil {
		t.Fatal("empty id accepted")
	}
}

// TestScheduleStoreDrivesScheduler runs the real scheduler on a fake clock
// over the bbolt store, then a second scheduler over the same file, as a
// restart would: the occurrence plays once.
func TestScheduleStoreDrivesScheduler(t *testing.T) {
	db := storetest.Open(t)
	st := store.NewScheduleStore(db)
	now := time.Date(2026, 3, 1, 5, 59, 0, 0, time.UTC)
	sc := schedule.Schedule{ID: "sang", Name: "Bản tin sáng", RRule: "FREQ=MINUTELY", Zones: []string{"a"},
		Source: schedule.Source{Kind: schedule.SourceText, Text: "xin chào"}, Priority: "normal", Volume: 80,
		Enabled: true, CreatedAt: now, UpdatedAt: now}
	if err := store.Put(db, store.Schedules, sc.ID, sc); err != nil {
		t.Fatal(err)
	}
	fired := make(chan time.Time, 10)
	trig := triggerFunc(func(ctx context.Context, s schedule.Schedule, occ time.Time) error { fired <- occ; return nil })
	for round := range 2 {
		clock := schedule.NewFakeClock(now.Add(61 * time.Second))
		sched := schedule.New(schedule.Config{}, st, trig, clock, nil)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- sched.Run(ctx) }()
		if round == 0 {
			select {
			case occ := <-fired:
				if !occ.Equal(now.Add(time.Minute)) {
					t.Fatalf("fired %v", occ)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("did not fire")
			}
		} else {
			// Once the restarted scheduler sleeps on a timer it has loaded
			// and evaluated everything due: it must not have fired.
			deadline := time.Now().Add(5 * time.Second)
			for {
				if _, ok := clock.NextTimer(); ok {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("restarted scheduler never slept")
				}
				time.Sleep(time.Millisecond)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if len(fired) != 0 {
		t.Fatalf("fired again after restart: %v", <-fired)
	}
	f, _ := st.Firings("sang", 0)
	if len(f) != 1 || f[0].Outcome != schedule.OutcomeFired {
		t.Fatalf("records: %+v", f)
	}
}

type triggerFunc func(ctx context.Context, s schedule.Schedule, occ time.Time) error

func (f triggerFunc) Fire(ctx context.Context, s schedule.Schedule, occ time.Time) error {
	return f(ctx, s, occ)
}
