// Command camera benchmarks the camera relay (`go run ./bench/camera`):
//
//  1. 20 simulated 1080p cameras at ~2 Mbit/s, one WebRTC viewer each;
//  2. one camera with 10 viewers;
//  3. time from WHEP offer to the first decodable frame at a new viewer.
//
// The cameras (camsim) and the viewers (pion) run in child processes, so
// this process's CPU (getrusage) is the relay's. Each camera stamps every
// access unit with its send time (an SEI message the relay forwards
// untouched), so latency is camera send -> viewer receipt of the complete
// frame. The baseline, in the same run, is plain gortsplib clients reading
// the cameras directly. Results are merged into bench/results.json under
// "camera".
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/loalang/loalang/bench/results"
	"github.com/loalang/loalang/camera"
	"github.com/pion/rtp"
)

func main() {
	role := flag.String("role", "", "internal: cams or viewers")
	clip := flag.String("clip", "", "internal: clip path for -role=cams")
	n := flag.Int("n", 20, "number of cameras in scenario 1")
	fps := flag.Int("fps", 25, "camera frame rate")
	window := flag.Duration("window", 10*time.Second, "measurement window per scenario")
	tries := flag.Int("tries", 20, "offers measured in scenario 3")
	resultsPath := flag.String("results", "bench/results.json", "results file to merge into")
	flag.Parse()
	var err error
	switch *role {
	case "cams":
		err = runCams(*clip, *n, *fps)
	case "viewers":
		err = runViewers()
	default:
		err = run(*n, *fps, *window, *tries, *resultsPath)
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

func run(nCams, fps int, window time.Duration, tries int, resultsPath string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "bench-camera-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	clip := filepath.Join(dir, "clip1080.h264")
	fmt.Fprintln(os.Stderr, "generating 1080p clip with ffmpeg...")
	gen := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
		"-i", fmt.Sprintf("testsrc2=size=1920x1080:rate=%d", fps), "-t", "4",
		"-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-profile:v", "baseline",
		"-b:v", "2M", "-maxrate", "2M", "-bufsize", "1M", "-g", strconv.Itoa(fps), "-keyint_min", strconv.Itoa(fps),
		"-sc_threshold", "0", "-bf", "0", "-x264-params", "repeat-headers=1", "-f", "h264", clip)
	if out, err := gen.CombinedOutput(); err != nil {
		return fmt.Errorf("ffmpeg: %v: %s", err, out)
	}
	st, _ := os.Stat(clip)
	clipKbps := float64(st.Size()*8) / 4 / 1000

	cams, err := startCams(self, clip, nCams, fps)
	if err != nil {
		return err
	}
	defer cams.close()
	views, err := startViewers(self)
	if err != nil {
		return err
	}
	defer views.close()

	out := map[string]any{
		"date":     time.Now().UTC().Format(time.RFC3339),
		"go":       runtime.Version(),
		"cpus":     runtime.NumCPU(),
		"clip":     fmt.Sprintf("1080p %d fps, GOP 1 s, %.0f kbit/s H.264 baseline", fps, clipKbps),
		"rtsp":     "TCP interleaved, loopback",
		"window_s": window.Seconds(),
		"note":     "latency = camera send -> complete frame at the reader; relay CPU/RSS is this process only (cameras and viewers run in child processes)",
		"runs":     1,
	}
	expected := func(streams, readers int) float64 { return float64(streams*readers*fps) * window.Seconds() }

	// Baseline 1: one raw RTSP reader per camera.
	fmt.Fprintln(os.Stderr, "baseline: raw RTSP readers, one per camera...")
	b1, err := rawReaders(cams.urls, 1, window, expected(nCams, 1))
	if err != nil {
		return err
	}
	// Scenario 1: relay, one viewer per camera.
	fmt.Fprintln(os.Stderr, "scenario 1: relay, one viewer per camera...")
	s1, err := relayScenario(cams.urls, 1, views, window, expected(nCams, 1))
	if err != nil {
		return err
	}
	// Baseline 2: ten raw RTSP readers of one camera.
	fmt.Fprintln(os.Stderr, "baseline: ten raw RTSP readers of one camera...")
	b2, err := rawReaders(cams.urls[:1], 10, window, expected(1, 10))
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "scenario 2: relay, one camera, ten viewers...")
	s2, err := relayScenario(cams.urls[:1], 10, views, window, expected(1, 10))
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "scenario 3: offer to first decodable frame...")
	s3, err := offerScenario(cams.urls[0], views, tries)
	if err != nil {
		return err
	}

	out["baseline_raw_rtsp_20x1"] = b1
	out["relay_20_cameras_1_viewer"] = s1
	out["baseline_raw_rtsp_1x10"] = b2
	out["relay_1_camera_10_viewers"] = s2
	out["offer_to_first_frame_ms"] = s3
	out["relay_added_latency_p50_ms_20x1"] = s1.LatP50 - b1.LatP50
	out["relay_added_latency_p50_ms_1x10"] = s2.LatP50 - b2.LatP50

	fmt.Printf("\ncamera relay benchmark (%s, %d CPUs, %s)\n", out["clip"], runtime.NumCPU(), runtime.Version())
	fmt.Printf("%-34s %7s %7s %8s %8s %8s %8s %8s\n", "scenario", "CPU%", "RSS MiB", "p50 ms", "p95 ms", "max ms", "frames%", "samples")
	for _, row := range []struct {
		name string
		f    figures
	}{
		{"baseline raw RTSP 20 cams x 1", b1}, {"relay 20 cams x 1 viewer", s1},
		{"baseline raw RTSP 1 cam x 10", b2}, {"relay 1 cam x 10 viewers", s2},
	} {
		fmt.Printf("%-34s %7.1f %7.1f %8.2f %8.2f %8.2f %8.1f %8d\n", row.name, row.f.CPUPct, row.f.RSSMiB,
			row.f.LatP50, row.f.LatP95, row.f.LatMax, row.f.FramesPct, row.f.Samples)
	}
	fmt.Printf("relay added latency p50: %.2f ms (20x1), %.2f ms (1x10); relay/baseline CPU: %.1fx (20x1), %.1fx (1x10)\n",
		s1.LatP50-b1.LatP50, s2.LatP50-b2.LatP50, ratio(s1.CPUPct, b1.CPUPct), ratio(s2.CPUPct, b2.CPUPct))
	fmt.Printf("offer -> first decodable frame (GOP cache, live camera): p50 %.1f ms, p95 %.1f ms, max %.1f ms over %d tries\n",
		s3["p50"], s3["p95"], s3["max"], tries)
	return results.Merge(resultsPath, "camera", out)
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// cpuTime returns this process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssMiB reads VmRSS from /proc/self/status.
func rssMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				kb, _ := strconv.ParseFloat(f[1], 64)
				return kb / 1024
			}
		}
	}
	return 0
}

func percentiles(lat []float64) (p50, p95, mx float64) {
	if len(lat) == 0 {
		return 0, 0, 0
	}
	slices.Sort(lat)
	at := func(q float64) float64 { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	return at(0.5), at(0.95), lat[len(lat)-1]
}

// measure runs a window and fills CPU, RSS and latency figures.
func measure(window time.Duration, collect func() []float64, expectedFrames float64) figures {
	runtime.GC()
	collect() // drop warm-up samples
	c0, t0 := cpuTime(), time.Now()
	time.Sleep(window)
	c1, t1 := cpuTime(), time.Now()
	lat := collect()
	var f figures
	f.CPUPct = 100 * float64(c1-c0) / float64(t1.Sub(t0))
	f.RSSMiB = rssMiB()
	f.Samples = len(lat)
	f.LatP50, f.LatP95, f.LatMax = percentiles(lat)
	if expectedFrames > 0 {
		f.FramesPct = 100 * float64(len(lat)) / expectedFrames
	}
	return f
}

// rawReaders is the baseline: plain gortsplib clients reading the cameras.
func rawReaders(urls []string, perCam int, window time.Duration, expectedFrames float64) (figures, error) {
	var mu sync.Mutex
	var lat []float64
	var clients []*gortsplib.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for _, raw := range urls {
		for k := 0; k < perCam; k++ {
			u, err := base.ParseURL(raw)
			if err != nil {
				return figures{}, err
			}
			c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, OnTransportSwitch: func(error) {}}
			if err := c.Start(); err != nil {
				return figures{}, err
			}
			clients = append(clients, c)
			desc, _, err := c.Describe(u)
			if err != nil {
				return figures{}, err
			}
			var f *format.H264
			medi := desc.FindFormat(&f)
			if medi == nil {
				return figures{}, errors.New("no H.264")
			}
			dec, err := f.CreateDecoder()
			if err != nil {
				return figures{}, err
			}
			if _, err := c.Setup(desc.BaseURL, medi, 0, 0); err != nil {
				return figures{}, err
			}
			c.OnPacketRTP(medi, f, func(p *rtp.Packet) {
				au, err := dec.Decode(p)
				if err != nil {
					return
				}
				now := time.Now()
				var buf []byte
				for _, n := range au {
					buf = append(append(buf, 0, 0, 1), n...)
				}
				if sent, _ := auInfo(buf); !sent.IsZero() {
					mu.Lock()
					lat = append(lat, float64(now.Sub(sent))/1e6)
					mu.Unlock()
				}
			})
			if _, err := c.Play(nil); err != nil {
				return figures{}, err
			}
		}
	}
	time.Sleep(2 * time.Second) // warm-up
	collect := func() []float64 {
		mu.Lock()
		defer mu.Unlock()
		out := lat
		lat = nil
		return out
	}
	f := measure(window, collect, expectedFrames)
	f.Streams, f.Viewers = len(urls), len(urls)*perCam
	return f, nil
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

// offerScenario measures offer -> first keyframe at a new viewer of a live camera.
func offerScenario(url string, views *viewersChild, tries int) (map[string]float64, error) {
	r, err := camera.New(camera.Config{UDPPort: 0, ListenIP: "127.0.0.1", LoopbackCandidates: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	r.SetCameras([]camera.Camera{{ID: "cam", URL: url, AlwaysOn: true}})
	deadline := time.Now().Add(10 * time.Second)
	for r.List()[0].State != camera.StateLive {
		if time.Now().After(deadline) {
			return nil, errors.New("camera never went live")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // fill the GOP cache at a random point of the GOP
	var firsts []float64
	for i := 0; i < tries; i++ {
		id, err := views.watch(r, "cam")
		if err != nil {
			return nil, err
		}
		var ms float64
		got := false
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end) && !got; {
			st, err := views.stats()
			if err != nil {
				return nil, err
			}
			ms, got = st.First[id]
			if !got {
				time.Sleep(5 * time.Millisecond)
			}
		}
		views.closeViewer(id)
		if got {
			firsts = append(firsts, ms)
		}
		time.Sleep(137 * time.Millisecond) // land at different points of the GOP
	}
	p50, p95, mx := percentiles(firsts)
	return map[string]float64{"p50": p50, "p95": p95, "max": mx, "n": float64(len(firsts))}, nil
}

// camsChild is the camera simulator child process.
type camsChild struct {
	cmd  *exec.Cmd
	in   interface{ Close() error }
	urls []string
}

func startCams(self, clip string, n, fps int) (*camsChild, error) {
	cmd := exec.Command(self, "-role=cams", "-clip", clip, "-n", strconv.Itoa(n), "-fps", strconv.Itoa(fps))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &camsChild{cmd: cmd, in: in}
	sc := bufio.NewScanner(out)
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
	_ = c.cmd.Wait()
}

// viewersChild drives the pion viewers child process.
type viewersChild struct {
	cmd   *exec.Cmd
	enc   *json.Encoder
	in    interface{ Close() error }
	mu    sync.Mutex
	next  int
	waits map[string]chan msg
}

func startViewers(self string) (*viewersChild, error) {
	cmd := exec.Command(self, "-role=viewers")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	v := &viewersChild{cmd: cmd, enc: json.NewEncoder(in), in: in, waits: map[string]chan msg{}}
	go func() { // ends when the child's stdout closes (close waits for the child)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
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
	v.mu.Lock()
	v.next++
	id := "v" + strconv.Itoa(v.next)
	v.mu.Unlock()
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
	_ = v.cmd.Wait()
}
