// Command camera benchmarks the camera relay as deployed: bin/loalangd runs
// as its own process, the RTSP cameras (firmware-sim's camsim, 1080p H.264
// over TCP) are added through its HTTP API, and the viewers are pion WHEP
// clients in a child process that decode enough to find the first
// keyframe (`go run ./bench/camera`):
//
//  1. 20 cameras, one viewer each: loalangd's CPU and RSS against plain
//     gortsplib readers of the same cameras (a child process), in the same run;
//  2. one camera, ten viewers: loalangd against one raw reader forwarding its
//     RTP packets to ten bare pion SRTP senders (no interceptors, no GOP
//     cache, no repacketising), a child process;
//  3. WHEP POST -> first decodable keyframe at a new viewer of a live
//     camera, with webrtc.listen_ips set and with the default (every
//     address), on loopback and on a LAN: a veth pair between two network
//     namespaces the benchmark creates and removes (root needed);
//  4. the in-process relay (camera package, no HTTP) for 20 x 1, as a second line.
//
// Each camera stamps every access unit with its send time (an SEI message
// the relay forwards untouched), so latency is camera send -> complete frame
// at the viewer. Everything runs -runs times; the table gives the median and
// the min-max, with the load average before each run. Results are merged
// into bench/results.json under "camera".
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/loalang/loalang/bench/results"
	"github.com/loalang/loalang/camera"
)

func main() {
	role := flag.String("role", "", "internal: cams, viewers, readers or srtpbase")
	clip := flag.String("clip", "", "internal: clip path for -role=cams")
	urls := flag.String("urls", "", "internal: camera URLs for -role=readers/srtpbase, comma-separated")
	per := flag.Int("per", 1, "internal: readers per camera for -role=readers")
	iface := flag.String("iface", "lo", "internal: the viewers' ICE interface")
	n := flag.Int("n", 20, "number of cameras in scenario 1")
	fps := flag.Int("fps", 25, "camera frame rate")
	window := flag.Duration("window", 10*time.Second, "measurement window per scenario")
	tries := flag.Int("tries", 20, "offers measured per first-frame case")
	runs := flag.Int("runs", 3, "runs")
	bin := flag.String("loalangd", "bin/loalangd", "loalangd binary (built from ./cmd/loalangd if missing)")
	before := flag.String("before", "", "optional second loalangd binary (e.g. the previous commit's) measured in the same runs")
	lanOn := flag.Bool("lan", true, "also measure the first frame across a veth pair between two network namespaces (needs root)")
	inproc := flag.Bool("inprocess", true, "also measure the in-process relay (20 x 1)")
	profile := flag.String("cpuprofile", "", "write loalangd's CPU profile of the first run's 20 x 1 window here")
	resultsPath := flag.String("results", "bench/results.json", "results file to merge into")
	flag.Parse()
	var err error
	switch *role {
	case "cams":
		err = runCams(*clip, *n, *fps)
	case "viewers":
		err = runViewers(*iface)
	case "readers":
		err = runReaders(strings.Split(*urls, ","), *per)
	case "srtpbase":
		err = runSRTPBase(*urls)
	default:
		err = run(benchOpts{nCams: *n, fps: *fps, window: *window, tries: *tries, runs: *runs, bin: *bin, before: *before,
			lan: *lanOn, inproc: *inproc, profile: *profile, results: *resultsPath})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/camera:", err)
		os.Exit(1)
	}
}

// figures are one scenario's measurements.
type figures struct {
	Streams   int     `json:"streams"`
	Viewers   int     `json:"viewers"`
	CPUPct    float64 `json:"cpu_pct_of_one_core"`
	RSSMiB    float64 `json:"rss_mib"`
	LatP50    float64 `json:"latency_p50_ms"`
	LatP95    float64 `json:"latency_p95_ms"`
	LatMax    float64 `json:"latency_max_ms"`
	Samples   int     `json:"samples"`
	FramesPct float64 `json:"frames_received_pct"`
}

type benchOpts struct {
	nCams, fps, tries, runs int
	window                  time.Duration
	bin, before, profile    string
	lan, inproc             bool
	results                 string
}

// runResult is one run's figures by row name.
type runResult struct {
	Load   string                        `json:"load_average_before"`
	Rows   map[string]figures            `json:"rows"`
	Firsts map[string]map[string]float64 `json:"first_frame_ms"`
}

func run(o benchOpts) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "bench-camera-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if _, err := os.Stat(o.bin); err != nil {
		o.bin = filepath.Join(dir, "loalangd")
		fmt.Fprintln(os.Stderr, "building loalangd...")
		b := exec.Command("go", "build", "-buildvcs=false", "-tags=nolibopusfile", "-o", o.bin, "./cmd/loalangd")
		b.Stdout, b.Stderr = os.Stderr, os.Stderr
		if err := b.Run(); err != nil {
			return fmt.Errorf("build loalangd: %w", err)
		}
	}
	if o.lan && os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "not root: skipping the LAN (network namespace) case")
		o.lan = false
	}
	clip := filepath.Join(dir, "clip1080.h264")
	fmt.Fprintln(os.Stderr, "generating 1080p clip with ffmpeg...")
	gen := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
		"-i", fmt.Sprintf("testsrc2=size=1920x1080:rate=%d", o.fps), "-t", "4",
		"-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-profile:v", "baseline",
		"-b:v", "2M", "-maxrate", "2M", "-bufsize", "1M", "-g", strconv.Itoa(o.fps), "-keyint_min", strconv.Itoa(o.fps),
		"-sc_threshold", "0", "-bf", "0", "-x264-params", "repeat-headers=1", "-f", "h264", clip)
	if out, err := gen.CombinedOutput(); err != nil {
		return fmt.Errorf("ffmpeg: %v: %s", err, out)
	}
	st, _ := os.Stat(clip)
	clipKbps := float64(st.Size()*8) / 4 / 1000
	cmdline := "go run ./bench/camera " + strings.Join(os.Args[1:], " ")

	var all []runResult
	for i := 1; i <= o.runs; i++ {
		load := results.LoadAverage()
		fmt.Fprintf(os.Stderr, "run %d/%d, load average %s\n", i, o.runs, load)
		rr, err := oneRun(self, clip, o, i == 1)
		if err != nil {
			return fmt.Errorf("run %d: %w", i, err)
		}
		rr.Load = load
		all = append(all, rr)
		printRun(i, rr)
	}

	clipDesc := fmt.Sprintf("1080p %d fps, GOP 1 s, %.0f kbit/s H.264 baseline", o.fps, clipKbps)
	fmt.Printf("\ncamera relay benchmark: %s; %d runs, median [min-max]; %d CPUs, %s\n", clipDesc, o.runs, runtime.NumCPU(), runtime.Version())
	fmt.Printf("command: %s\nload average before each run: ", cmdline)
	for _, r := range all {
		fmt.Printf("[%s] ", r.Load)
	}
	fmt.Println()
	summary := summarize(all)
	printSummary(summary, o.tries)
	out := map[string]any{
		"date":     time.Now().UTC().Format(time.RFC3339),
		"go":       runtime.Version(),
		"cpus":     runtime.NumCPU(),
		"clip":     clipDesc,
		"rtsp":     "TCP interleaved, loopback",
		"window_s": o.window.Seconds(),
		"command":  cmdline,
		"runs":     o.runs,
		"note": "loalangd rows: the daemon process (bin/loalangd) with cameras added through the API and pion WHEP viewers in a child process; " +
			"baseline 20x1 = plain gortsplib readers (child process); baseline 1x10 = one gortsplib reader forwarding its RTP to 10 bare pion SRTP senders " +
			"(no interceptors, no GOP cache, no repacketising; child process); first frame = WHEP POST -> first complete IDR access unit at the viewer",
		"per_run": all,
		"summary": summary,
	}
	return results.Merge(o.results, "camera", out)
}

// Row names.
const (
	rowBase20 = "baseline raw RTSP readers 20x1"
	// The baseline again, in the same window as loalangd (…) or as the
	// -before binary.
	rowBase20D   = "baseline 20x1, same window as loalangd"
	rowBase20Old = "baseline 20x1, same window as -before"
	rowD20       = "loalangd 20 cams x 1 viewer"
	rowOld20     = "loalangd -before 20 cams x 1 viewer"
	rowBase10    = "baseline 1 reader + 10 bare SRTP senders"
	rowD10       = "loalangd 1 cam x 10 viewers"
	rowOld10     = "loalangd -before 1 cam x 10 viewers"
	rowInproc20  = "in-process relay 20 cams x 1 viewer"
	ffLoopList   = "loopback, listen_ips [127.0.0.1]"
	ffLoopDef    = "loopback, default (every address)"
	ffLoopOld    = "loopback, -before binary, default"
	ffLANList    = "LAN veth, listen_ips [10.77.0.1]"
	ffLANDef     = "LAN veth, default (every address)"
)

func oneRun(self, clip string, o benchOpts, first bool) (runResult, error) {
	rr := runResult{Rows: map[string]figures{}, Firsts: map[string]map[string]float64{}}
	cams, err := startCams(self, "", clip, o.nCams, o.fps)
	if err != nil {
		return rr, err
	}
	defer cams.close()
	views, err := startViewers(self, "", "lo")
	if err != nil {
		return rr, err
	}
	defer views.close()
	expected := func(streams, readers int) float64 { return float64(streams*readers*o.fps) * o.window.Seconds() }

	// Baseline 1: one raw RTSP reader per camera.
	fmt.Fprintln(os.Stderr, "baseline: raw RTSP readers, one per camera...")
	b, err := startBase(self, "-role=readers", "-urls", strings.Join(cams.urls, ","), "-per", "1")
	if err != nil {
		return rr, err
	}
	rr.Rows[rowBase20] = measurePid(b.child.pid(), 2*time.Second, o.window, b.stats, expected(o.nCams, 1))
	b.close()

	type binRows struct {
		bin                string
		row20, base20, r10 string
		ffDef              string
	}
	bins := []binRows{{o.bin, rowD20, rowBase20D, rowD10, ffLoopDef}}
	if o.before != "" {
		bins = append(bins, binRows{o.before, rowOld20, rowBase20Old, rowOld10, ffLoopOld})
	}
	for bi, bb := range bins {
		// The new binary runs with webrtc.listen_ips; the -before binary
		// has no such key and runs with its default.
		opts := daemonOpts{httpIP: "127.0.0.1", loopback: true}
		if bi == 0 {
			opts.listenIPs = []string{"127.0.0.1"}
			if first && o.profile != "" {
				opts.pprof = "127.0.0.1:16061"
			}
		}
		fmt.Fprintf(os.Stderr, "%s: 20 cameras x 1 viewer...\n", bb.row20)
		d, err := startDaemon(bb.bin, opts, views)
		if err != nil {
			return rr, err
		}
		// The same baseline again, reading the same cameras over the same
		// window as loalangd.
		side, err := startBase(self, "-role=readers", "-urls", strings.Join(cams.urls, ","), "-per", "1")
		if err != nil {
			d.close()
			return rr, err
		}
		f, sf, err := daemonScenario(d, cams.urls, 1, o.window, expected(o.nCams, 1), opts.pprof, o.profile,
			&probe{side.child.pid(), side.stats, expected(o.nCams, 1)})
		side.close()
		if err != nil {
			d.close()
			return rr, err
		}
		rr.Rows[bb.row20], rr.Rows[bb.base20] = f, sf
		fmt.Fprintf(os.Stderr, "%s: 1 camera x 10 viewers...\n", bb.r10)
		if f, _, err = daemonScenario(d, cams.urls[:1], 10, o.window, expected(1, 10), "", "", nil); err != nil {
			d.close()
			return rr, err
		}
		rr.Rows[bb.r10] = f
		if bi == 0 {
			fmt.Fprintln(os.Stderr, "first frame:", ffLoopList)
			if rr.Firsts[ffLoopList], err = firstFrames(d, cams.urls[0], o.tries); err != nil {
				d.close()
				return rr, err
			}
		}
		d.close()
		fmt.Fprintln(os.Stderr, "first frame:", bb.ffDef)
		d, err = startDaemon(bb.bin, daemonOpts{httpIP: "127.0.0.1", loopback: true}, views)
		if err != nil {
			return rr, err
		}
		rr.Firsts[bb.ffDef], err = firstFrames(d, cams.urls[0], o.tries)
		d.close()
		if err != nil {
			return rr, err
		}
	}

	// Baseline 2: one reader, ten bare SRTP senders.
	fmt.Fprintln(os.Stderr, "baseline: one raw reader + 10 bare SRTP senders...")
	b, err = startBase(self, "-role=srtpbase", "-urls", cams.urls[0])
	if err != nil {
		return rr, err
	}
	var ids []string
	for k := 0; k < 10; k++ {
		id := views.nextID()
		if _, err := views.call(msg{Op: "watch", ID: id, URL: b.url}, "watching"); err != nil {
			b.close()
			return rr, err
		}
		ids = append(ids, id)
	}
	rr.Rows[rowBase10] = measurePid(b.child.pid(), 3*time.Second, o.window, viewerLat(views), expected(1, 10))
	for _, id := range ids {
		_, _ = views.call(msg{Op: "unwatch", ID: id}, "unwatched")
	}
	b.close()

	if o.inproc {
		fmt.Fprintln(os.Stderr, "in-process relay: 20 cameras x 1 viewer...")
		f, err := relayScenario(cams.urls, 1, views, o.window, expected(o.nCams, 1))
		if err != nil {
			return rr, err
		}
		rr.Rows[rowInproc20] = f
	}

	if o.lan {
		if err := lanFirstFrames(self, clip, o, rr.Firsts); err != nil {
			return rr, err
		}
	}
	return rr, nil
}

func viewerLat(views *viewersChild) func() []float64 {
	return func() []float64 {
		st, err := views.stats()
		if err != nil {
			return nil
		}
		return st.Lat
	}
}

// probe is a process to measure: its pid, the latencies it collects and
// the frames it should have received in the window.
type probe struct {
	pid            int
	collect        func() []float64
	expectedFrames float64
}

// measurePid measures pid's CPU and RSS over window after warm-up, and
// the latencies collect returns.
func measurePid(pid int, warm, window time.Duration, collect func() []float64, expectedFrames float64) figures {
	return measurePids(warm, window, probe{pid, collect, expectedFrames})[0]
}

// measurePids measures several processes over the same window, so that a
// change in the machine's speed (shared, paravirtualised hosts) affects
// each of them alike.
func measurePids(warm, window time.Duration, ps ...probe) []figures {
	time.Sleep(warm)
	c0 := make([]time.Duration, len(ps))
	for i, p := range ps {
		p.collect() // drop warm-up samples
		c0[i] = cpuOf(p.pid)
	}
	t0 := time.Now()
	time.Sleep(window)
	out := make([]figures, len(ps))
	for i, p := range ps {
		out[i].CPUPct = float64(cpuOf(p.pid) - c0[i])
	}
	elapsed := float64(time.Since(t0))
	for i := range out {
		out[i].CPUPct *= 100 / elapsed
	}
	for i, p := range ps {
		lat := p.collect()
		f := &out[i]
		f.RSSMiB, f.Samples = rssOf(p.pid), len(lat)
		f.LatP50, f.LatP95, f.LatMax = percentiles(lat)
		if p.expectedFrames > 0 {
			f.FramesPct = 100 * float64(len(lat)) / p.expectedFrames
		}
	}
	return out
}

// daemonScenario adds the cameras through the API (on demand), opens
// perCam WHEP viewers on each and measures loalangd; then it closes the
// viewers and deletes the cameras.
//
// With side set, that process (a baseline) is measured over the same window
// and its figures are returned second.
func daemonScenario(d *loalangd, urls []string, perCam int, window time.Duration, expectedFrames float64, pprofAddr, profilePath string, side *probe) (figures, figures, error) {
	var camIDs []string
	for i, u := range urls {
		id := fmt.Sprintf("cam%02d", i)
		if err := d.addCamera(id, u, false); err != nil {
			return figures{}, figures{}, err
		}
		camIDs = append(camIDs, id)
	}
	type sess struct{ id, loc string }
	var ss []sess
	for _, c := range camIDs {
		for k := 0; k < perCam; k++ {
			id, loc, err := d.watch(c)
			if err != nil {
				return figures{}, figures{}, err
			}
			ss = append(ss, sess{id, loc})
		}
	}
	var profDone chan error
	if pprofAddr != "" && profilePath != "" {
		profDone = make(chan error, 1)
		go func() {
			time.Sleep(3 * time.Second)
			profDone <- fetchProfile(pprofAddr, window, profilePath)
		}()
	}
	ps := []probe{{d.proc.pid(), viewerLat(d.views), expectedFrames}}
	if side != nil {
		ps = append(ps, *side)
	}
	fs := measurePids(3*time.Second, window, ps...)
	f := fs[0]
	f.Streams, f.Viewers = len(urls), len(ss)
	if profDone != nil {
		if err := <-profDone; err != nil {
			fmt.Fprintln(os.Stderr, "cpu profile:", err)
		} else {
			fmt.Fprintln(os.Stderr, "loalangd CPU profile written to", profilePath)
		}
	}
	for _, s := range ss {
		d.unwatch(s.id, s.loc)
	}
	for _, c := range camIDs {
		_ = d.api("DELETE", "/api/v1/cameras/"+c, "", nil)
	}
	var sf figures
	if side != nil {
		sf = fs[1]
	}
	return f, sf, nil
}

// fetchProfile saves loalangd's CPU profile (net/http/pprof) over window.
func fetchProfile(addr string, window time.Duration, path string) error {
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(window.Seconds())))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// firstFrames adds an always-on camera, waits until its GOP cache is
// filled, and measures WHEP POST -> first decodable keyframe tries times.
func firstFrames(d *loalangd, url string, tries int) (map[string]float64, error) {
	if err := d.addCamera("ff", url, true); err != nil {
		return nil, err
	}
	if err := d.waitLive("ff", 20*time.Second); err != nil {
		return nil, err
	}
	time.Sleep(1500 * time.Millisecond) // a filled GOP cache at a random point of the GOP
	var firsts []float64
	failed := 0
	for i := 0; i < tries; i++ {
		id, loc, err := d.watch("ff")
		if err != nil {
			return nil, err
		}
		var ms float64
		got := false
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end) && !got; {
			st, err := d.views.stats()
			if err != nil {
				return nil, err
			}
			ms, got = st.First[id]
			if !got {
				time.Sleep(5 * time.Millisecond)
			}
		}
		d.unwatch(id, loc)
		if got {
			firsts = append(firsts, ms)
		} else {
			failed++
		}
		time.Sleep(137 * time.Millisecond) // land at different points of the GOP
	}
	p50, p95, mx := percentiles(firsts)
	return map[string]float64{"p50": p50, "p95": p95, "max": mx, "n": float64(len(firsts)), "failed": float64(failed)}, nil
}

// lanFirstFrames runs the first-frame cases across a veth pair: camera and
// loalangd in namespace A, viewers in namespace B.
func lanFirstFrames(self, clip string, o benchOpts, out map[string]map[string]float64) error {
	l, err := setupLAN()
	if err != nil {
		return err
	}
	defer l.remove()
	cams, err := startCams(self, l.a, clip, 1, o.fps)
	if err != nil {
		return err
	}
	defer cams.close()
	views, err := startViewers(self, l.b, l.vethB)
	if err != nil {
		return err
	}
	defer views.close()
	for _, c := range []struct {
		name   string
		listen []string
	}{{ffLANList, []string{"10.77.0.1"}}, {ffLANDef, nil}} {
		fmt.Fprintln(os.Stderr, "first frame:", c.name)
		d, err := startDaemon(o.bin, daemonOpts{netns: l.a, httpIP: "10.77.0.1", listenIPs: c.listen}, views)
		if err != nil {
			return err
		}
		out[c.name], err = firstFrames(d, cams.urls[0], o.tries)
		d.close()
		if err != nil {
			return err
		}
	}
	return nil
}

func printRun(i int, rr runResult) {
	fmt.Fprintf(os.Stderr, "run %d (load %s):", i, rr.Load)
	for _, k := range slices.Sorted(maps.Keys(rr.Rows)) {
		fmt.Fprintf(os.Stderr, " [%s: %.1f%% %.0f MiB]", k, rr.Rows[k].CPUPct, rr.Rows[k].RSSMiB)
	}
	for _, k := range slices.Sorted(maps.Keys(rr.Firsts)) {
		fmt.Fprintf(os.Stderr, " [%s: p50 %.0f p95 %.0f ms]", k, rr.Firsts[k]["p50"], rr.Firsts[k]["p95"])
	}
	fmt.Fprintln(os.Stderr)
}

type summaryT struct {
	Rows   map[string]map[string]results.Spread `json:"rows"`
	Firsts map[string]map[string]results.Spread `json:"first_frame_ms"`
	Ratios map[string]results.Spread            `json:"ratios"`
}

func summarize(all []runResult) summaryT {
	s := summaryT{Rows: map[string]map[string]results.Spread{}, Firsts: map[string]map[string]results.Spread{}, Ratios: map[string]results.Spread{}}
	rows := map[string]bool{}
	ffs := map[string]bool{}
	for _, r := range all {
		for k := range r.Rows {
			rows[k] = true
		}
		for k := range r.Firsts {
			ffs[k] = true
		}
	}
	pick := func(get func(runResult) (float64, bool)) results.Spread {
		var xs []float64
		for _, r := range all {
			if v, ok := get(r); ok {
				xs = append(xs, v)
			}
		}
		return results.SpreadOf(xs)
	}
	for k := range rows {
		s.Rows[k] = map[string]results.Spread{}
		for name, fn := range map[string]func(figures) float64{
			"cpu_pct": func(f figures) float64 { return f.CPUPct }, "rss_mib": func(f figures) float64 { return f.RSSMiB },
			"lat_p50_ms": func(f figures) float64 { return f.LatP50 }, "lat_p95_ms": func(f figures) float64 { return f.LatP95 },
			"frames_pct": func(f figures) float64 { return f.FramesPct },
		} {
			s.Rows[k][name] = pick(func(r runResult) (float64, bool) { f, ok := r.Rows[k]; return fn(f), ok })
		}
	}
	for k := range ffs {
		s.Firsts[k] = map[string]results.Spread{}
		for _, q := range []string{"p50", "p95", "max", "failed"} {
			s.Firsts[k][q] = pick(func(r runResult) (float64, bool) { f, ok := r.Firsts[k]; return f[q], ok })
		}
	}
	ratio := func(name, a, b string) {
		st := pick(func(r runResult) (float64, bool) {
			x, ok1 := r.Rows[a]
			y, ok2 := r.Rows[b]
			return ratio(x.CPUPct, y.CPUPct), ok1 && ok2 && y.CPUPct > 0
		})
		if st != (results.Spread{}) {
			s.Ratios[name] = st
		}
	}
	ratio("loalangd/baseline CPU 20x1 (goal <= 1.6)", rowD20, rowBase20)
	ratio("loalangd/baseline CPU 1x10 (goal <= 1.3)", rowD10, rowBase10)
	ratio("-before/baseline CPU 20x1", rowOld20, rowBase20)
	ratio("-before/baseline CPU 1x10", rowOld10, rowBase10)
	ratio("in-process relay/baseline CPU 20x1", rowInproc20, rowBase20)
	ratio("loalangd/baseline CPU 20x1, same window", rowD20, rowBase20D)
	ratio("-before/baseline CPU 20x1, same window", rowOld20, rowBase20Old)
	return s
}

func printSummary(s summaryT, tries int) {
	fmt.Printf("%-44s %-20s %-20s %-20s %-20s %-20s\n", "scenario", "CPU % of a core", "RSS MiB", "lat p50 ms", "lat p95 ms", "frames %")
	for _, k := range []string{rowBase20, rowD20, rowBase20D, rowOld20, rowBase20Old, rowInproc20, rowBase10, rowD10, rowOld10} {
		r, ok := s.Rows[k]
		if !ok {
			continue
		}
		fmt.Printf("%-44s %-20s %-20s %-20s %-20s %-20s\n", k, r["cpu_pct"], r["rss_mib"], r["lat_p50_ms"], r["lat_p95_ms"], r["frames_pct"])
	}
	for _, k := range slices.Sorted(maps.Keys(s.Ratios)) {
		fmt.Printf("ratio %-50s %s\n", k, s.Ratios[k])
	}
	fmt.Printf("WHEP POST -> first decodable keyframe, live camera, %d tries per run (goal p95 <= 150 ms):\n", tries)
	for _, k := range []string{ffLoopList, ffLoopDef, ffLoopOld, ffLANList, ffLANDef} {
		f, ok := s.Firsts[k]
		if !ok {
			continue
		}
		fmt.Printf("  %-40s p50 %-20s p95 %-20s max %-20s no frame in 5 s: %s\n", k, f["p50"], f["p95"], f["max"], f["failed"])
	}
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func percentiles(lat []float64) (p50, p95, mx float64) {
	if len(lat) == 0 {
		return 0, 0, 0
	}
	slices.Sort(lat)
	// Nearest rank: the smallest sample with at least q of all at or below
	// it (with 20 samples p95 is the 19th, not the maximum).
	at := func(q float64) float64 { return lat[max(0, int(math.Ceil(q*float64(len(lat))))-1)] }
	return at(0.5), at(0.95), lat[len(lat)-1]
}

// measure runs a window and fills CPU, RSS and latency figures.
func measure(window time.Duration, collect func() []float64, expectedFrames float64) figures {
	runtime.GC()
	return measurePids(0, window, probe{os.Getpid(), collect, expectedFrames})[0]
}

// relayScenario runs the relay in this process with viewers in the child.
func relayScenario(urls []string, perCam int, views *viewersChild, window time.Duration, expectedFrames float64) (figures, error) {
	cfg := camera.Config{UDPPort: 0, ListenIP: "127.0.0.1", LoopbackCandidates: true, IdleClose: time.Second}
	r, err := camera.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return figures{}, err
	}
	defer r.Close()
	var cams []camera.Camera
	for i, u := range urls {
		cams = append(cams, camera.Camera{ID: fmt.Sprintf("cam%02d", i), URL: u})
	}
	r.SetCameras(cams)
	var ids []string
	for _, c := range cams {
		for k := 0; k < perCam; k++ {
			id, err := views.watch(r, c.ID)
			if err != nil {
				return figures{}, err
			}
			ids = append(ids, id)
		}
	}
	time.Sleep(3 * time.Second) // warm-up: every viewer connected and past its first GOP
	collect := func() []float64 {
		st, err := views.stats()
		if err != nil {
			return nil
		}
		return st.Lat
	}
	f := measure(window, collect, expectedFrames)
	f.Streams, f.Viewers = len(urls), len(ids)
	for _, id := range ids {
		views.closeViewer(id)
	}
	return f, nil
}

// camsChild is the camera simulator child process.
type camsChild struct {
	proc *childProc
	in   io.WriteCloser
	urls []string
}

func startCams(self, netns, clip string, n, fps int) (*camsChild, error) {
	p, in, sc, err := startChildProc(self, netns, "-role=cams", "-clip", clip, "-n", strconv.Itoa(n), "-fps", strconv.Itoa(fps))
	if err != nil {
		return nil, err
	}
	c := &camsChild{proc: p, in: in}
	for sc.Scan() {
		if sc.Text() == "ready" {
			return c, nil
		}
		c.urls = append(c.urls, sc.Text())
	}
	c.close()
	return nil, errors.New("camera child exited before ready")
}

func (c *camsChild) close() {
	_ = c.in.Close()
	c.proc.close()
}

// viewersChild drives the pion viewers child process.
type viewersChild struct {
	proc  *childProc
	enc   *json.Encoder
	in    io.WriteCloser
	mu    sync.Mutex
	next  int
	waits map[string]chan msg
}

func startViewers(self, netns, iface string) (*viewersChild, error) {
	p, in, sc, err := startChildProc(self, netns, "-role=viewers", "-iface", iface)
	if err != nil {
		return nil, err
	}
	v := &viewersChild{proc: p, enc: json.NewEncoder(in), in: in, waits: map[string]chan msg{}}
	go func() { // ends when the child's stdout closes
		for sc.Scan() {
			var m msg
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				continue
			}
			key := m.Op + "/" + m.ID
			v.mu.Lock()
			ch := v.waits[key]
			delete(v.waits, key)
			v.mu.Unlock()
			if ch != nil {
				ch <- m
			}
		}
	}()
	return v, nil
}

func (v *viewersChild) nextID() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.next++
	return "v" + strconv.Itoa(v.next)
}

func (v *viewersChild) call(req msg, replyOp string) (msg, error) {
	ch := make(chan msg, 1)
	v.mu.Lock()
	v.waits[replyOp+"/"+req.ID] = ch
	err := v.enc.Encode(req)
	v.mu.Unlock()
	if err != nil {
		return msg{}, err
	}
	select {
	case m := <-ch:
		if m.Err != "" {
			return m, errors.New(m.Err)
		}
		return m, nil
	case <-time.After(20 * time.Second):
		return msg{}, fmt.Errorf("viewers child: no %s reply", replyOp)
	}
}

// watch creates a viewer in the child and connects it through r.Offer.
func (v *viewersChild) watch(r *camera.Relay, camID string) (string, error) {
	id := v.nextID()
	offer, err := v.call(msg{Op: "new", ID: id}, "offer")
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	sess, err := r.Offer(ctx, camID, offer.SDP, "bench")
	if err != nil {
		return "", err
	}
	v.mu.Lock()
	err = v.enc.Encode(msg{Op: "answer", ID: id, SDP: sess.AnswerSDP})
	v.mu.Unlock()
	return id, err
}

func (v *viewersChild) stats() (msg, error) { return v.call(msg{Op: "stats"}, "stats") }

func (v *viewersChild) closeViewer(id string) { _, _ = v.call(msg{Op: "close", ID: id}, "closed") }

func (v *viewersChild) close() {
	_ = v.in.Close()
	v.proc.close()
}
