// Command schedule measures how punctually the broadcast scheduler fires on
// the real clock: firing time minus intended time, over hundreds of
// firings. It compares against a baseline in the same process, a bare
// time.Timer sleeping to the same instants, so the ratio means something on
// a noisy machine. Results are merged into bench/results.json under
// "schedule".
//
//	go run ./bench/schedule [-n 200] [-min 100ms] [-max 300ms] [-recurring 15s]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/loalang/loalang/bench/results"
	"github.com/loalang/loalang/broadcast/schedule"
	"github.com/loalang/loalang/store"
)

func main() {
	n := flag.Int("n", 200, "one-shot schedules")
	minGap := flag.Duration("min", 100*time.Millisecond, "smallest gap between one-shots")
	maxGap := flag.Duration("max", 300*time.Millisecond, "largest gap between one-shots")
	recurring := flag.Duration("recurring", 15*time.Second, "how long to run the every-second RRULE and cron schedules (0 skips)")
	resultsPath := flag.String("results", "bench/results.json", "results file to merge into")
	flag.Parse()
	if err := run(*n, *minGap, *maxGap, *recurring, *resultsPath); err != nil {
		fmt.Fprintln(os.Stderr, "bench/schedule:", err)
		os.Exit(1)
	}
}

// stats summarises lateness samples in milliseconds.
type stats struct {
	Firings int     `json:"firings"`
	P50     float64 `json:"late_p50_ms"`
	P99     float64 `json:"late_p99_ms"`
	Max     float64 `json:"late_max_ms"`
	Early   int     `json:"early"`
	Missing int     `json:"missing"`
}

func summarise(late []time.Duration, want int) stats {
	s := stats{Firings: len(late), Missing: want - len(late)}
	if len(late) == 0 {
		return s
	}
	slices.Sort(late)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	q := func(p float64) time.Duration { return late[min(len(late)-1, int(p*float64(len(late))))] }
	for _, d := range late {
		if d < 0 {
			s.Early++
		}
	}
	s.P50, s.P99, s.Max = ms(q(0.50)), ms(q(0.99)), ms(late[len(late)-1])
	return s
}

// plan returns n instants starting 2 s from now, gaps drawn uniformly from
// [minGap, maxGap] with a fixed seed so runs are comparable.
func plan(n int, minGap, maxGap time.Duration) []time.Time {
	r := rand.New(rand.NewPCG(1, 2))
	t := time.Now().Add(2 * time.Second)
	out := make([]time.Time, n)
	for i := range out {
		t = t.Add(minGap + time.Duration(r.Int64N(int64(maxGap-minGap)+1)))
		out[i] = t
	}
	return out
}

// baseline sleeps to each instant with a bare timer: the floor set by the
// OS and the Go runtime.
func baseline(at []time.Time) []time.Duration {
	late := make([]time.Duration, 0, len(at))
	for _, t := range at {
		timer := time.NewTimer(time.Until(t))
		<-timer.C
		late = append(late, time.Since(t))
	}
	return late
}

// trigger records when the engine would have been asked to play.
type trigger struct {
	mu   sync.Mutex
	late []time.Duration
	seen map[string]int
	done chan struct{}
	want int
}

func (g *trigger) Fire(ctx context.Context, s schedule.Schedule, occ time.Time) error {
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.late = append(g.late, now.Sub(occ))
	g.seen[s.ID+occ.String()]++
	if len(g.late) == g.want {
		close(g.done)
	}
	return nil
}

func newSchedule(id string, created time.Time) schedule.Schedule {
	return schedule.Schedule{
		ID: id, Name: id, Zones: []string{"bench"},
		Source:   schedule.Source{Kind: schedule.SourceText, Text: "bench"},
		Priority: "normal", Volume: 50, Enabled: true,
		CreatedAt: created, UpdatedAt: created,
	}
}

// runScheduler runs the real Scheduler over schedules, with the daemon's
// bbolt store (each firing is claimed in an fsync'd transaction before it
// fires), until want firings arrived or the deadline passed. It returns
// the lateness of each firing, the recorded outcomes and the duplicates.
func runScheduler(schedules []schedule.Schedule, want int, deadline time.Duration) ([]time.Duration, map[string]int, int, error) {
	dir, err := os.MkdirTemp("", "loalang-bench-schedule-")
	if err != nil {
		return nil, nil, 0, err
	}
	defer os.RemoveAll(dir)
	db, err := store.Open(filepath.Join(dir, "loalang.db"), time.Second)
	if err != nil {
		return nil, nil, 0, err
	}
	defer db.Close()
	for _, s := range schedules {
		if err := s.Validate(nil); err != nil {
			return nil, nil, 0, err
		}
		if err := store.Put(db, store.Schedules, s.ID, s); err != nil {
			return nil, nil, 0, err
		}
	}
	st := store.NewScheduleStore(db)
	trig := &trigger{seen: map[string]int{}, done: make(chan struct{}), want: want}
	sched := schedule.New(schedule.Config{}, st, trig, schedule.NewRealClock(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- sched.Run(ctx) }()
	select {
	case <-trig.done:
	case <-time.After(deadline):
	case err := <-errc:
		cancel()
		return nil, nil, 0, fmt.Errorf("scheduler stopped: %w", err)
	}
	cancel()
	if err := <-errc; err != nil {
		return nil, nil, 0, err
	}
	outcomes := map[string]int{}
	for _, s := range schedules {
		firings, err := st.Firings(s.ID, 0)
		if err != nil {
			return nil, nil, 0, err
		}
		for _, f := range firings {
			outcomes[f.Outcome]++
		}
	}
	trig.mu.Lock()
	defer trig.mu.Unlock()
	dup := 0
	for _, c := range trig.seen {
		dup += c - 1
	}
	return slices.Clone(trig.late), outcomes, dup, nil
}

func run(n int, minGap, maxGap, recurring time.Duration, resultsPath string) error {
	if n < 1 || minGap <= 0 || maxGap < minGap {
		return errors.New("need n >= 1 and 0 < min <= max")
	}
	// The baseline sleeps to the same instants shifted by 37 ms, concurrently
	// with the scheduler, so both see the same machine noise.
	at := plan(n, minGap, maxGap)
	shifted := make([]time.Time, len(at))
	for i, t := range at {
		shifted[i] = t.Add(37 * time.Millisecond)
	}
	baseDone := make(chan []time.Duration, 1)
	go func() { baseDone <- baseline(shifted) }()
	created := time.Now()
	var list []schedule.Schedule
	for i, t := range at {
		s := newSchedule(fmt.Sprintf("one-%03d", i), created)
		s.At = t
		list = append(list, s)
	}
	span := at[len(at)-1].Sub(created)
	late, outcomes, dup, err := runScheduler(list, n, span+10*time.Second)
	if err != nil {
		return err
	}
	one := summarise(late, n)
	base := summarise(<-baseDone, n)

	var rec stats
	recDup := 0
	if recurring > 0 {
		// Every second, in both syntaxes; start at the next whole second.
		created = time.Now()
		rr := newSchedule("rrule-secondly", created)
		rr.RRule = "FREQ=SECONDLY"
		cr := newSchedule("cron-every-second", created)
		cr.Cron = "* * * * * *"
		want := 2 * int(recurring/time.Second)
		var lat []time.Duration
		lat, _, recDup, err = runScheduler([]schedule.Schedule{rr, cr}, want, recurring+5*time.Second)
		if err != nil {
			return err
		}
		rec = summarise(lat, want)
	}

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\tfirings\tp50 ms\tp99 ms\tmax ms\tearly\tmissing\tduplicates\t")
	row := func(name string, s stats, dup int) {
		fmt.Fprintf(tw, "%s\t%d\t%.3f\t%.3f\t%.3f\t%d\t%d\t%d\t\n", name, s.Firings, s.P50, s.P99, s.Max, s.Early, s.Missing, dup)
	}
	row("bare time.Timer, concurrent baseline", base, 0)
	row("scheduler, one-shots", one, dup)
	if recurring > 0 {
		row("scheduler, every-second rrule+cron", rec, recDup)
	}
	tw.Flush()
	fmt.Printf("store outcomes (one-shots): %v\n", outcomes)

	out := map[string]any{
		"baseline_timer": base,
		"one_shot":       one,
		"one_shot_gap_ms": map[string]int64{
			"min": minGap.Milliseconds(), "max": maxGap.Milliseconds(),
		},
		"one_shot_outcomes": outcomes,
		"duplicates":        dup + recDup,
		"go":                runtime.Version(),
		"cpus":              runtime.NumCPU(),
		"when":              time.Now().UTC().Format(time.RFC3339),
	}
	if base.P99 > 0 {
		out["p99_ratio_to_baseline"] = one.P99 / base.P99
	}
	if recurring > 0 {
		out["every_second"] = rec
	}
	if err := results.Merge(resultsPath, "schedule", out); err != nil {
		return fmt.Errorf("write %s: %w", resultsPath, err)
	}
	if one.Missing > 0 || dup+recDup > 0 || one.Early > 0 {
		return fmt.Errorf("%d missing, %d duplicate, %d early firings", one.Missing, dup+recDup, one.Early)
	}
	return nil
}
