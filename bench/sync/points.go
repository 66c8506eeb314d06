package main

// Long-programme mode (-points): the skew between speakers at several time
// points of one long broadcast (issue 16: a 10-minute programme, measured at
// the start, at 5 minutes and at the end). A 10-minute recording is 58 MB
// per speaker, so only a window around each point is read from each WAV.
//
// For a chirp at content position c, speaker i's play time is found in two
// steps:
//   - which recorded sample holds c: the sidecar's first_seq gives a
//     nominal position, which cross-correlation on the window's chirps
//     against the reference speaker refines (±10 ms);
//   - when that sample played, in host time: recorded samples are slots
//     back to back from first_seq, and the sidecar's marks give the host
//     play time of every 50th slot (firmware-sim/speaker.SlotMark); the
//     time is interpolated linearly between the marks around it.
// The marks carry the speaker's drift and every change of its clock
// estimate during the programme, which the first sample alone cannot show.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/loalang/loalang/bench/fanout/harness"
	"github.com/loalang/loalang/bench/results"
	"github.com/loalang/loalang/firmware-sim/speaker"
)

// point is one time point of the programme.
type point struct {
	name string
	at   time.Duration // content time of the window's start
}

// parsePoints turns "start,5m,end" into windows of length window within a
// clip of length clip: "start" is the first window, "end" the last, and a
// duration is a window centred there.
func parsePoints(spec string, clip, window time.Duration) ([]point, error) {
	var out []point
	for _, f := range strings.Split(spec, ",") {
		f = strings.TrimSpace(f)
		var at time.Duration
		switch f {
		case "":
			continue
		case "start":
			at = 0
		case "end":
			at = clip - window
		default:
			d, err := time.ParseDuration(f)
			if err != nil {
				return nil, fmt.Errorf("bad -points entry %q: want start, end or a duration", f)
			}
			at = d - window/2
		}
		at = max(0, min(at, clip-window))
		out = append(out, point{name: f, at: at})
	}
	if len(out) == 0 {
		return nil, errors.New("-points names no point")
	}
	return out, nil
}

// pointResult is one time point's figures in one run, in milliseconds.
type pointResult struct {
	Point       string  `json:"point"`
	ContentS    float64 `json:"window_start_s"`
	Markers     int     `json:"markers"`
	Speakers    int     `json:"speakers"`
	P50         float64 `json:"abs_vs_median_p50_ms"`
	P99         float64 `json:"abs_vs_median_p99_ms"`
	Max         float64 `json:"abs_vs_median_max_ms"`
	Spread      float64 `json:"spread_max_minus_min_ms"`
	MarksOnlyP9 float64 `json:"marks_only_p99_ms"`
	RefineMaxMS float64 `json:"xcorr_refinement_max_ms"`
	MinCorr     float64 `json:"min_correlation"`
	DeliveryPct float64 `json:"delivery_pct"`
	Error       string  `json:"error,omitempty"`
}

// sidecarFile is one speaker's sidecar and the path of its WAV.
type sidecarFile struct {
	side speaker.Sidecar
	wav  string
}

// loadSidecars waits for the sidecars of stream and reads them, leaving the
// WAVs on disk.
func loadSidecars(ctx context.Context, dir string, stream uint32, want int, within time.Duration) ([]sidecarFile, error) {
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
	var out []sidecarFile
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var sc speaker.Sidecar
		if err := json.Unmarshal(raw, &sc); err != nil {
			return nil, fmt.Errorf("read %s: %w", f, err)
		}
		if len(sc.Marks) == 0 {
			return nil, fmt.Errorf("%s has no marks: firmware-sim/speaker too old for -points", f)
		}
		out = append(out, sidecarFile{side: sc, wav: strings.TrimSuffix(f, ".json") + ".wav"})
	}
	if len(out) < 2 {
		return nil, fmt.Errorf("only %d recordings of stream %d", len(out), stream)
	}
	return out, nil
}

// wavHeaderLen is the canonical header firmware-sim writes (mono 16-bit
// PCM, firmware-sim/speaker/record.go).
const wavHeaderLen = 44

// readWindow returns n samples of a recording from sample index from; the
// part before the recording's start or after its end is zero.
func readWindow(path string, from, n int) ([]float32, error) {
	out := make([]float32, n)
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	skip := 0
	if from < 0 {
		skip, from = -from, 0
	}
	if skip >= n {
		return out, nil
	}
	buf := make([]byte, 2*(n-skip))
	k, err := f.ReadAt(buf, int64(wavHeaderLen+2*from))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	for i := 0; i+1 < k; i += 2 {
		out[skip+i/2] = float32(int16(binary.LittleEndian.Uint16(buf[i:]))) / 32768
	}
	return out, nil
}

// hostMS returns the host play time, in ms, of recorded sample index k of
// a speaker: slot FirstSeq + k/slot, interpolated between its marks (or
// extrapolated at the nominal 20 ms per slot past the last mark).
func hostMS(sc speaker.Sidecar, k float64) float64 {
	pos := float64(sc.FirstSeq) + k/slot
	m := sc.Marks
	i, _ := slices.BinarySearchFunc(m, pos, func(x speaker.SlotMark, p float64) int {
		switch {
		case float64(x.Seq) < p:
			return -1
		case float64(x.Seq) > p:
			return 1
		}
		return 0
	})
	// m[i-1].Seq < pos <= m[i].Seq; interpolate between them when both exist.
	switch {
	case i > 0 && i < len(m):
		a, b := m[i-1], m[i]
		frac := (pos - float64(a.Seq)) / float64(b.Seq-a.Seq)
		return (float64(a.HostNS) + frac*float64(b.HostNS-a.HostNS)) / 1e6
	case i == 0:
		return (float64(m[0].HostNS) + (pos-float64(m[0].Seq))*20e6) / 1e6
	default:
		last := m[len(m)-1]
		return (float64(last.HostNS) + (pos-float64(last.Seq))*20e6) / 1e6
	}
}

// analysePoint measures the skew between speakers over the chirps of the
// content window [at, at+window).
func analysePoint(recs []sidecarFile, p point, window time.Duration) (pointResult, error) {
	// The reference is the speaker that lost the fewest slots (concealed
	// slots carry no chirp), the first of those on a tie.
	ref := 0
	for i, r := range recs {
		if r.side.Lost+r.side.Late < recs[ref].side.Lost+recs[ref].side.Late {
			ref = i
		}
	}
	cLo := int(p.at.Seconds() * harness.Rate)
	n := int(window.Seconds() * harness.Rate)
	refSide := recs[ref].side
	kRef := cLo - int(refSide.FirstSeq)*slot
	rp, err := readWindow(recs[ref].wav, kRef, n)
	if err != nil {
		return pointResult{}, err
	}
	regions, markers := markerRegions(rp)
	if len(markers) == 0 {
		return pointResult{}, fmt.Errorf("point %s: no chirps in the reference recording's window", p.name)
	}
	res := pointResult{Point: p.name, ContentS: p.at.Seconds(), Markers: len(markers), Speakers: len(recs), MinCorr: 1}
	// kAt[i](j): recorded sample index on speaker i of window position j.
	kStart := make([]int, len(recs))
	lag := make([]float64, len(recs))
	for i, r := range recs {
		kStart[i] = cLo - int(r.side.FirstSeq)*slot - searchLag
		if i == ref {
			lag[i] = -searchLag
			continue
		}
		x, err := readWindow(r.wav, kStart[i], n+2*searchLag)
		if err != nil {
			return res, err
		}
		d, corr := bestLag(rp, x, regions, -searchLag)
		lag[i] = d
		res.MinCorr = math.Min(res.MinCorr, corr)
		res.RefineMaxMS = math.Max(res.RefineMaxMS, math.Abs(d+searchLag)*1000/harness.Rate)
	}
	var abs, absMarks, spreads []float64
	for _, m := range markers {
		ts := make([]float64, len(recs))
		tn := make([]float64, len(recs))
		for i, r := range recs {
			ts[i] = hostMS(r.side, float64(kStart[i])+float64(m)-lag[i])
			tn[i] = hostMS(r.side, float64(kStart[i]+m+searchLag))
		}
		med, medN := harness.Median(ts), harness.Median(tn)
		for i := range recs {
			abs = append(abs, math.Abs(ts[i]-med))
			absMarks = append(absMarks, math.Abs(tn[i]-medN))
		}
		spreads = append(spreads, slices.Max(ts)-slices.Min(ts))
	}
	res.P50 = harness.Round(harness.Percentile(abs, .5), 3)
	res.P99 = harness.Round(harness.Percentile(abs, .99), 3)
	res.Max = harness.Round(harness.Percentile(abs, 1), 3)
	res.Spread = harness.Round(harness.Median(spreads), 3)
	res.MarksOnlyP9 = harness.Round(harness.Percentile(absMarks, .99), 3)
	res.RefineMaxMS = harness.Round(res.RefineMaxMS, 3)
	res.MinCorr = harness.Round(res.MinCorr, 3)
	return res, nil
}

// runPoints is the long-programme mode: o.runs broadcasts of the clip, each
// measured at every point; recordings are removed after each run.
func runPoints(ctx context.Context, d *harness.Daemon, mediaID, recDir string, o options) error {
	var all [][]pointResult
	var loads []string
	for i := 1; i <= o.runs; i++ {
		loads = append(loads, results.LoadAverage())
		id, err := d.StartBroadcast(ctx, mediaID, harness.ZoneIDs(o.zones), 80)
		if err != nil {
			return err
		}
		b, err := d.WaitFinal(ctx, id, o.clip, o.clip+120*time.Second)
		if err != nil {
			return err
		}
		if b.State != "done" || len(b.StreamIDs) != 1 {
			return fmt.Errorf("broadcast %s ended %s (%s) with %d streams", id, b.State, b.Reason, len(b.StreamIDs))
		}
		if b, err = d.WaitReports(ctx, id, 30*time.Second); err != nil {
			return err
		}
		var exp, played uint64
		for _, dv := range b.Devices {
			exp += max(dv.FramesExpected, uint64(b.Packets))
			played += dv.FramesPlayed
		}
		recs, err := loadSidecars(ctx, recDir, b.StreamIDs[0], o.speakers, 60*time.Second)
		if err != nil {
			return err
		}
		var prs []pointResult
		for _, p := range o.points {
			pr, err := analysePoint(recs, p, o.window)
			if err != nil {
				// Reported, not fatal: one bad window (a reference with
				// no chirp left, on an overloaded machine) must not lose
				// the other points and runs.
				fmt.Printf("  run %d %s: %v\n", i, p.name, err)
				pr = pointResult{Point: p.name, ContentS: p.at.Seconds(), Error: err.Error()}
			}
			pr.DeliveryPct = harness.Round(100*harness.Ratio(float64(played), float64(exp)), 3)
			prs = append(prs, pr)
			fmt.Printf("  run %d (load %s) %-6s at %5.0f s: %d speakers × %d markers: |Δ| vs median p50 %.3f p99 %.3f max %.3f ms, spread %.3f ms (marks only p99 %.3f; xcorr moved ≤ %.3f ms, min corr %.3f); delivered %.3f%%\n",
				i, loads[i-1], p.name, pr.ContentS, pr.Speakers, pr.Markers, pr.P50, pr.P99, pr.Max, pr.Spread, pr.MarksOnlyP9, pr.RefineMaxMS, pr.MinCorr,
				100*harness.Ratio(float64(played), float64(exp)))
		}
		all = append(all, prs)
		for _, r := range recs {
			os.Remove(r.wav)
			os.Remove(strings.TrimSuffix(r.wav, ".wav") + ".json")
		}
	}
	w := tabwriter.NewWriter(os.Stdout, 2, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "point\twindow s\truns\t|Δ| p50 ms\t|Δ| p99 ms (min–max)\t|Δ| max ms\tspread ms\tgoal p99\t")
	var summary []map[string]any
	for k, p := range o.points {
		col := func(f func(pointResult) float64) (med, lo, hi float64) {
			var xs []float64
			for _, prs := range all {
				if prs[k].Error == "" {
					xs = append(xs, f(prs[k]))
				}
			}
			if len(xs) == 0 {
				return -1, -1, -1 // no run measured this point (JSON has no NaN)
			}
			return harness.Round(harness.Median(xs), 3), slices.Min(xs), slices.Max(xs)
		}
		p50, _, _ := col(func(r pointResult) float64 { return r.P50 })
		p99, lo, hi := col(func(r pointResult) float64 { return r.P99 })
		pmax, _, _ := col(func(r pointResult) float64 { return r.Max })
		spread, _, _ := col(func(r pointResult) float64 { return r.Spread })
		fmt.Fprintf(w, "%s\t%.0f\t%d\t%.3f\t%.3f (%.3f–%.3f)\t%.3f\t%.3f\t≤ 2 ms\t\n", p.name, p.at.Seconds(), len(all), p50, p99, lo, hi, pmax, spread)
		summary = append(summary, map[string]any{"point": p.name, "window_start_s": p.at.Seconds(), "p50_ms": p50, "p99_ms": p99,
			"p99_min_ms": lo, "p99_max_ms": hi, "max_ms": pmax, "spread_ms": spread})
	}
	w.Flush()
	out := map[string]any{
		"date":          time.Now().UTC().Format(time.RFC3339),
		"command":       "go run ./bench/sync " + strings.Join(os.Args[1:], " "),
		"speakers":      o.speakers,
		"offset_max_ms": o.offsetMax.Milliseconds(),
		"drift_max_ppm": o.driftMax,
		"clip_s":        o.clip.Seconds(),
		"window_s":      o.window.Seconds(),
		"warmup_s":      o.warmup.Seconds(),
		"load_avg":      loads,
		"runs":          all,
		"median":        summary,
		"goal_p99_ms":   2,
		"method":        "per point: chirps in the window located in each recording by cross-correlation against a reference speaker, their host play times interpolated from the sidecar's per-second slot marks; |Δ| against the median speaker over every speaker and chirp",
	}
	if err := results.Merge(o.results, "sync_long", out); err != nil {
		return err
	}
	fmt.Printf("merged into %s under \"sync_long\"\n", o.results)
	return nil
}
