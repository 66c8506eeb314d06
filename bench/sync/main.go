// Command sync measures how closely simulated speakers with wrong, drifting
// clocks play the same broadcast at the same moment. 50 speakers
// (firmware-sim/speaker, in this process) get random clock offsets within
// ±2 s and drift within ±100 ppm, and record what they play. loalangd runs
// as its own process (bin/loalangd). One broadcast of a tone with a
// distinct chirp every second is uploaded and played; afterwards every
// speaker's <speaker>-<stream>.wav and .json sidecar are read. A speaker's
// play time of content position c, in host time, is
//
//	first_sample_unix_ns + (c − c0) / 48 kHz
//
// where c0, the content position of its first recorded sample, is first
// found from first_seq and then refined by cross-correlating its recording
// against a reference speaker's around the chirps. The figures are the
// play-time differences of every chirp against the median speaker. Results
// are merged into bench/results.json under "sync".
//
//	go run ./bench/sync [-speakers 50] [-clip 15s] [-runs 3]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/loalang/loalang/bench/fanout/harness"
	"github.com/loalang/loalang/bench/results"
	"github.com/loalang/loalang/firmware-sim/speaker"
)

const site = "bench"

type options struct {
	speakers  int
	zones     int
	clip      time.Duration
	runs      int
	offsetMax time.Duration
	driftMax  float64
	warmup    time.Duration
	loalangd  string
	results   string
	seed      uint64
	// points, when set, selects the long-programme mode (points.go).
	points []point
	window time.Duration
}

func main() {
	var o options
	flag.IntVar(&o.speakers, "speakers", 50, "simulated speakers")
	flag.IntVar(&o.zones, "zones", 5, "zones the speakers are spread over")
	flag.DurationVar(&o.clip, "clip", 15*time.Second, "length of the marker clip")
	flag.IntVar(&o.runs, "runs", 3, "broadcasts; figures are the median over runs")
	flag.DurationVar(&o.offsetMax, "offset-max", 2*time.Second, "random clock offset within ±this per speaker")
	flag.Float64Var(&o.driftMax, "drift-max-ppm", 100, "random clock drift within ±this per speaker")
	flag.DurationVar(&o.warmup, "warmup", 25*time.Second, "time after clock sync before the first broadcast, so speakers can estimate drift")
	flag.StringVar(&o.loalangd, "loalangd", "bin/loalangd", "loalangd binary (built from ./cmd/loalangd if missing)")
	flag.StringVar(&o.results, "results", "bench/results.json", "results file to merge into")
	flag.Uint64Var(&o.seed, "seed", 1, "seed of the clock offsets and drifts")
	pointSpec := flag.String("points", "", "long-programme mode: time points to measure, e.g. start,5m,end (windows of -window)")
	flag.DurationVar(&o.window, "window", 10*time.Second, "content window analysed around each -points entry")
	flag.Parse()
	o.runs = max(1, o.runs)
	if *pointSpec != "" {
		var err error
		if o.points, err = parsePoints(*pointSpec, o.clip, o.window); err != nil {
			fmt.Fprintln(os.Stderr, "bench/sync:", err)
			os.Exit(2)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/sync:", err)
		os.Exit(1)
	}
}

// runResult is one broadcast's alignment figures, in milliseconds.
type runResult struct {
	Speakers      int     `json:"speakers"`
	Recorded      int     `json:"recorded"`
	Markers       int     `json:"markers"`
	P50           float64 `json:"abs_vs_median_p50_ms"`
	P99           float64 `json:"abs_vs_median_p99_ms"`
	Max           float64 `json:"abs_vs_median_max_ms"`
	Spread        float64 `json:"spread_max_minus_min_ms"`
	SidecarP99    float64 `json:"sidecar_only_p99_ms"`
	RefineMaxMS   float64 `json:"xcorr_refinement_max_ms"`
	MinCorr       float64 `json:"min_correlation"`
	DeliveryPct   float64 `json:"delivery_pct"`
	ClockErrP50US float64 `json:"reported_clock_error_p50_us"`
}

func run(ctx context.Context, o options) error {
	work, err := os.MkdirTemp("", "loalang-bench-sync-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin, err := harness.Binary(ctx, o.loalangd, "./cmd/loalangd", work, "loalangd")
	if err != nil {
		return err
	}
	dir := filepath.Join(work, "daemon")
	recDir := filepath.Join(work, "rec")
	for _, p := range []string{dir, recDir} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
	}
	cfgYAML := harness.VillageConfig(site, o.speakers, o.zones)
	if wavBytes := int64(o.clip.Seconds()*harness.Rate)*2 + 1024; wavBytes > 16<<20 {
		// A long programme's WAV is over the default upload limit (20 MiB).
		cfgYAML += fmt.Sprintf("broadcast:\n  max_upload_bytes: %d\n", 2*wavBytes)
	}
	d, err := harness.StartDaemon(ctx, bin, dir, cfgYAML)
	if err != nil {
		return err
	}
	defer d.Close()
	clip := markerClip(o.clip)
	mediaID, err := d.Upload(ctx, "markers.wav", harness.EncodeWAV(clip, harness.Rate))
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(o.seed, 7))
	offsets := map[string]time.Duration{}
	drifts := map[string]float64{}
	fleet, err := harness.StartFleet(d.Bundle, func(_ int, c *speaker.Config) {
		c.ClockOffset = time.Duration((rng.Float64()*2 - 1) * float64(o.offsetMax))
		c.DriftPPM = (rng.Float64()*2 - 1) * o.driftMax
		c.RecordDir = recDir
		c.KeepPlayed = -1
		offsets[c.ID], drifts[c.ID] = c.ClockOffset, c.DriftPPM
	})
	if err != nil {
		return err
	}
	defer fleet.Close()
	if err := fleet.WaitReady(ctx, 60*time.Second); err != nil {
		return err
	}
	if err := d.WaitOnline(ctx, o.speakers, 60*time.Second); err != nil {
		return err
	}
	fmt.Printf("%d speakers synced (offsets ±%v, drift ±%.0f ppm); warming up %v\n", o.speakers, o.offsetMax, o.driftMax, o.warmup)
	if err := sleep(ctx, o.warmup); err != nil {
		return err
	}
	if len(o.points) > 0 {
		return runPoints(ctx, d, mediaID, recDir, o)
	}
	var runs []runResult
	for i := 1; i <= o.runs; i++ {
		r, err := oneRun(ctx, d, mediaID, recDir, o)
		if err != nil {
			return fmt.Errorf("run %d: %w", i, err)
		}
		runs = append(runs, r)
		fmt.Printf("  run %d: %d/%d recorded, %d markers: |Δ| vs median p50 %.3f p99 %.3f max %.3f ms, spread %.3f ms (sidecar only p99 %.3f ms; xcorr moved ≤ %.3f ms, min corr %.3f)\n",
			i, r.Recorded, r.Speakers, r.Markers, r.P50, r.P99, r.Max, r.Spread, r.SidecarP99, r.RefineMaxMS, r.MinCorr)
		if i < o.runs {
			if err := sleep(ctx, 2*time.Second); err != nil {
				return err
			}
		}
	}
	med := func(f func(r runResult) float64) float64 {
		var xs []float64
		for _, r := range runs {
			xs = append(xs, f(r))
		}
		return harness.Round(harness.Median(xs), 3)
	}
	summary := map[string]any{
		"p50_ms":                  med(func(r runResult) float64 { return r.P50 }),
		"p99_ms":                  med(func(r runResult) float64 { return r.P99 }),
		"max_ms":                  med(func(r runResult) float64 { return r.Max }),
		"spread_ms":               med(func(r runResult) float64 { return r.Spread }),
		"sidecar_only_p99_ms":     med(func(r runResult) float64 { return r.SidecarP99 }),
		"delivery_pct":            med(func(r runResult) float64 { return r.DeliveryPct }),
		"goal_p99_ms":             5,
		"reported_clock_error_us": med(func(r runResult) float64 { return r.ClockErrP50US }),
	}
	w := tabwriter.NewWriter(os.Stdout, 2, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "speakers\toffsets\tdrift\truns\t|Δ| p50 ms\t|Δ| p99 ms\t|Δ| max ms\tspread ms\tdelivered %\tgoal p99\t")
	fmt.Fprintf(w, "%d\t±%v\t±%.0f ppm\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t≤ 5 ms\t\n", o.speakers, o.offsetMax, o.driftMax, len(runs),
		summary["p50_ms"], summary["p99_ms"], summary["max_ms"], summary["spread_ms"], summary["delivery_pct"])
	w.Flush()
	out := map[string]any{
		"date":          time.Now().UTC().Format(time.RFC3339),
		"go":            runtime.Version(),
		"cpus":          runtime.NumCPU(),
		"speakers":      o.speakers,
		"offset_max_ms": o.offsetMax.Milliseconds(),
		"drift_max_ppm": o.driftMax,
		"clip_s":        o.clip.Seconds(),
		"warmup_s":      o.warmup.Seconds(),
		"runs":          runs,
		"median":        summary,
		"method":        "play time of each chirp in host time = first_sample_unix_ns + (c - c0)/48 kHz, c0 from first_seq refined by cross-correlation against a reference speaker; |Δ| = against the median speaker, over every speaker and chirp",
		"note":          "the simulator stamps only the first recorded sample with host time and records slots back to back, so this measures alignment as of the first slot, plus any content slip the cross-correlation finds; per-slot drift correction inside the stream is not visible in the recording",
	}
	if err := results.Merge(o.results, "sync", out); err != nil {
		return err
	}
	fmt.Printf("merged into %s under \"sync\"\n", o.results)
	return nil
}

// oneRun plays the clip once and analyses the recordings of its stream.
func oneRun(ctx context.Context, d *harness.Daemon, mediaID, recDir string, o options) (runResult, error) {
	id, err := d.StartBroadcast(ctx, mediaID, harness.ZoneIDs(o.zones), 80)
	if err != nil {
		return runResult{}, err
	}
	b, err := d.WaitFinal(ctx, id, o.clip, o.clip+60*time.Second)
	if err != nil {
		return runResult{}, err
	}
	if b.State != "done" {
		return runResult{}, fmt.Errorf("broadcast %s ended %s: %s", id, b.State, b.Reason)
	}
	b, err = d.WaitReports(ctx, id, 15*time.Second)
	if err != nil {
		return runResult{}, err
	}
	if len(b.StreamIDs) != 1 {
		return runResult{}, fmt.Errorf("broadcast used %d streams, want 1", len(b.StreamIDs))
	}
	var exp, played uint64
	var clockErr []float64
	for _, dv := range b.Devices {
		exp += max(dv.FramesExpected, uint64(b.Packets))
		played += dv.FramesPlayed
		clockErr = append(clockErr, float64(dv.ClockErrorUS))
	}
	recs, err := loadRecordings(ctx, recDir, b.StreamIDs[0], o.speakers, 20*time.Second)
	if err != nil {
		return runResult{}, err
	}
	r, err := analyse(recs)
	if err != nil {
		return r, err
	}
	r.Speakers = o.speakers
	r.DeliveryPct = harness.Round(100*harness.Ratio(float64(played), float64(exp)), 3)
	r.ClockErrP50US = harness.Median(clockErr)
	return r, nil
}

// recording is one speaker's sidecar and samples.
type recording struct {
	side speaker.Sidecar
	pcm  []float32
}

// loadRecordings waits for the sidecars of stream (a sidecar is written
// after its WAV, both atomically) and reads them.
func loadRecordings(ctx context.Context, dir string, stream uint32, want int, within time.Duration) ([]recording, error) {
	pattern := filepath.Join(dir, fmt.Sprintf("*-%d.json", stream))
	deadline := time.Now().Add(within)
	var files []string
	for {
		files, _ = filepath.Glob(pattern)
		if len(files) >= want || time.Now().After(deadline) {
			break
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return nil, err
		}
	}
	slices.Sort(files)
	var out []recording
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var sc speaker.Sidecar
		if err := json.Unmarshal(raw, &sc); err != nil {
			return nil, fmt.Errorf("read %s: %w", f, err)
		}
		pcm, err := harness.ReadWAV(f[:len(f)-len(".json")] + ".wav")
		if err != nil {
			return nil, err
		}
		out = append(out, recording{side: sc, pcm: pcm})
	}
	if len(out) < 2 {
		return nil, fmt.Errorf("only %d recordings of stream %d", len(out), stream)
	}
	return out, nil
}

const (
	slot      = harness.Rate / 50 // samples per 20 ms packet
	block     = harness.Rate / 100
	searchLag = harness.Rate / 100 // ±10 ms around the sidecar's alignment
)

// analyse aligns every recording on the reference (the first complete
// one) and returns the play-time differences of the chirps.
func analyse(recs []recording) (runResult, error) {
	ref := 0
	for i, r := range recs {
		if r.side.Lost == 0 && r.side.Late == 0 && len(r.pcm) > 0 {
			ref = i
			break
		}
	}
	rp := recs[ref].pcm
	regions, markers := markerRegions(rp)
	if len(markers) == 0 {
		return runResult{}, errors.New("no chirps found in the reference recording")
	}
	res := runResult{Recorded: len(recs), Markers: len(markers), MinCorr: 1}
	c0ref := float64(recs[ref].side.FirstSeq) * slot
	// c0[i]: content position of speaker i's first recorded sample.
	c0 := make([]float64, len(recs))
	c0nominal := make([]float64, len(recs))
	for i, r := range recs {
		c0nominal[i] = float64(r.side.FirstSeq) * slot
		if i == ref {
			c0[i] = c0ref
			continue
		}
		d0 := int(c0nominal[i] - c0ref)
		d, corr := bestLag(rp, r.pcm, regions, d0)
		c0[i] = c0ref + d
		res.MinCorr = math.Min(res.MinCorr, corr)
		res.RefineMaxMS = math.Max(res.RefineMaxMS, math.Abs(d-float64(d0))*1000/harness.Rate)
	}
	// Play time (ms, host clock) of content position c on speaker i.
	playAt := func(i int, c, c0i float64) float64 {
		return float64(recs[i].side.FirstSampleUnixNS)/1e6 + (c-c0i)*1000/harness.Rate
	}
	var abs, absNominal, spreads []float64
	for _, m := range markers {
		c := c0ref + float64(m)
		ts := make([]float64, len(recs))
		tn := make([]float64, len(recs))
		for i := range recs {
			ts[i] = playAt(i, c, c0[i])
			tn[i] = playAt(i, c, c0nominal[i])
		}
		med, medN := harness.Median(ts), harness.Median(tn)
		for i := range recs {
			abs = append(abs, math.Abs(ts[i]-med))
			absNominal = append(absNominal, math.Abs(tn[i]-medN))
		}
		spreads = append(spreads, slices.Max(ts)-slices.Min(ts))
	}
	res.P50 = harness.Round(harness.Percentile(abs, .5), 3)
	res.P99 = harness.Round(harness.Percentile(abs, .99), 3)
	res.Max = harness.Round(harness.Percentile(abs, 1), 3)
	res.Spread = harness.Round(harness.Median(spreads), 3)
	res.SidecarP99 = harness.Round(harness.Percentile(absNominal, .99), 3)
	res.RefineMaxMS = harness.Round(res.RefineMaxMS, 3)
	res.MinCorr = harness.Round(res.MinCorr, 3)
	return res, nil
}

// markerRegions finds the chirps in a recording: 10 ms blocks whose energy
// exceeds a quarter of the loudest block's. It returns the blocks' sample
// ranges (for correlation) and one position per chirp (its loudest block's
// start).
func markerRegions(pcm []float32) (regions [][2]int, markers []int) {
	nb := len(pcm) / block
	e := make([]float64, nb)
	var top float64
	for b := range nb {
		for _, v := range pcm[b*block : (b+1)*block] {
			e[b] += float64(v) * float64(v)
		}
		top = math.Max(top, e[b])
	}
	if top == 0 {
		return nil, nil
	}
	for b := 0; b < nb; {
		if e[b] < top/4 {
			b++
			continue
		}
		best := b
		start := b
		for b < nb && e[b] >= top/4 {
			if e[b] > e[best] {
				best = b
			}
			b++
		}
		// One block either side, so the correlation sees the edges.
		lo, hi := max(0, start-1)*block, min(nb, b+1)*block
		regions = append(regions, [2]int{lo, hi})
		markers = append(markers, best*block)
	}
	return regions, markers
}

// bestLag returns d (sub-sample, by parabolic interpolation) in
// d0 ± searchLag that maximises Σ ref[j]·x[j−d] over the regions, i.e. such
// that x[i] ≈ ref[i+d], with the normalised correlation at that lag.
func bestLag(ref, x []float32, regions [][2]int, d0 int) (float64, float64) {
	score := func(d int) (s, ex float64) {
		for _, r := range regions {
			for j := r[0]; j < r[1]; j++ {
				k := j - d
				if k < 0 || k >= len(x) {
					continue
				}
				s += float64(ref[j]) * float64(x[k])
				ex += float64(x[k]) * float64(x[k])
			}
		}
		return s, ex
	}
	var er float64
	for _, r := range regions {
		for _, v := range ref[r[0]:r[1]] {
			er += float64(v) * float64(v)
		}
	}
	scores := make([]float64, 2*searchLag+1)
	best := 0
	var bestEx float64
	for i := range scores {
		s, ex := score(d0 - searchLag + i)
		scores[i] = s
		if s > scores[best] {
			best, bestEx = i, ex
		}
	}
	d := float64(d0 - searchLag + best)
	if best > 0 && best < len(scores)-1 {
		a, b, c := scores[best-1], scores[best], scores[best+1]
		if den := a - 2*b + c; den != 0 {
			d += 0.5 * (a - c) / den
		}
	}
	corr := 0.0
	if er > 0 && bestEx > 0 {
		corr = scores[best] / math.Sqrt(er*bestEx)
	}
	return d, corr
}

// markerClip is a quiet 220 Hz tone with a 40 ms Hann-windowed chirp every
// second, starting 0.5 s in. Chirp k sweeps from 600 + 150·(k mod 10) Hz to
// 4 kHz, so that neighbouring markers differ.
func markerClip(d time.Duration) []float32 {
	n := int(d.Seconds() * harness.Rate)
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(0.03 * math.Sin(2*math.Pi*220*float64(i)/harness.Rate))
	}
	chirp := harness.Rate * 40 / 1000
	for k := 0; ; k++ {
		at := harness.Rate/2 + k*harness.Rate
		if at+chirp > n {
			break
		}
		f0, f1 := 600+150*float64(k%10), 4000.0
		for i := 0; i < chirp; i++ {
			t := float64(i) / harness.Rate
			dur := float64(chirp) / harness.Rate
			ph := 2 * math.Pi * (f0*t + (f1-f0)*t*t/(2*dur))
			w := 0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/float64(chirp-1))
			out[at+i] += float32(0.8 * w * math.Sin(ph))
		}
	}
	return out
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
