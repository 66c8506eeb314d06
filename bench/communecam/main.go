// Command commune benchmarks the police camera path across carrier NAT
// (docs/commune-cameras.md) on the network-namespace topology of
// internal/natlab: a village behind an nftables masquerade with 4 simulated
// cameras, the commune's Mosquitto, coturn and loalangd role: commune, and
// a police namespace with headless Chromium. Each run, 2 police viewers
// (two tabs) play the 4 cameras: viewer 1 starts them (cold, on demand),
// viewer 2 joins running cameras (warm, GOP cache). It reports, per run and
// as median and min–max over runs:
//
//   - WHEP offer → first decodable frame (offer POSTed, after ICE
//     gathering, to framesDecoded > 0), p50/p95 over the 8 sessions, and
//     per cohort (cold, warm); also from the tile's start (click);
//   - where that time goes: offer → answer (the round trip through the
//     commune, its broker and the village), answer → ICE connected,
//     ICE → DTLS connected, DTLS → first decoded frame (p50s);
//   - the round trip through coturn (the selected candidate pair's
//     currentRoundTripTime) and what it adds over the direct hops
//     (police→commune plus village→commune TCP connect times);
//   - the commune server's and coturn's CPU and RSS over the run.
//
// With -always-on the shared cameras keep their RTSP sessions running
// (on_demand: false), so "cold" means the first viewer of a running camera.
//
// It needs root (ip netns), mosquitto, coturn and chromium.
//
//	go run ./bench/communecam -runs 3 -results bench/results.json
//	go run ./bench/communecam -runs 3 -always-on -key commune_cameras_always_on
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/loalang/loalang/bench/fanout/harness"
	"github.com/loalang/loalang/bench/results"
	"github.com/loalang/loalang/internal/natlab"
)

func main() {
	var (
		runs        = flag.Int("runs", 3, "runs")
		viewers     = flag.Int("viewers", 2, "police viewers (browser tabs)")
		cameras     = flag.Int("cameras", 4, "cameras")
		resultsPath = flag.String("results", "bench/results.json", "results file")
		key         = flag.String("key", "commune_cameras", "top-level key in the results file")
		loalangd    = flag.String("loalangd", "bin/loalangd", "loalangd binary (built if missing)")
		fwsim       = flag.String("firmware-sim", "bin/firmware-sim", "firmware-sim binary (built if missing)")
		alwaysOn    = flag.Bool("always-on", false, "keep the shared cameras' RTSP sessions running (on_demand: false)")
		police      = flag.Bool("police", false, "internal: drive Chromium in the police namespace")
	)
	flag.Parse()
	if *police {
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		natlab.PrintPolice(ctx, os.Getenv("NATCAM_URL"), os.Getenv("NATCAM_TOKEN"), *viewers, strings.Split(os.Getenv("NATCAM_CAMERAS"), ","), true, "")
		return
	}
	if err := run(*runs, *viewers, *cameras, *alwaysOn, *resultsPath, *key, *loalangd, *fwsim); err != nil {
		fmt.Fprintln(os.Stderr, "bench/communecam:", err)
		os.Exit(1)
	}
}

// cpuTicks is utime+stime of pid in clock ticks (proc(5), 100 Hz here).
func cpuTicks(pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return u + st
}

// rssMiB is VmRSS of pid.
func rssMiB(pid int) float64 {
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			kb, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func build(bin, pkg string) (string, error) {
	if _, err := os.Stat(bin); err == nil {
		return filepath.Abs(bin)
	}
	os.MkdirAll(filepath.Dir(bin), 0o755)
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v: %s", pkg, err, out)
	}
	return filepath.Abs(bin)
}

// connectMS is the median TCP connect time from ns to addr over n tries.
func connectMS(s *natlab.Stack, ns, addr string, n int) float64 {
	dial := s.DialContext(ns)
	var xs []float64
	for range n {
		t0 := time.Now()
		c, err := dial(context.Background(), "tcp", addr)
		if err != nil {
			continue
		}
		xs = append(xs, float64(time.Since(t0).Microseconds())/1000)
		c.Close()
	}
	return harness.Median(xs)
}

func run(runs, viewers, cameras int, alwaysOn bool, resultsPath, key, loalangdPath, fwsimPath string) error {
	if why := natlab.Available(); why != "" {
		return fmt.Errorf("NAT topology unavailable: %s", why)
	}
	loalangd, err := build(loalangdPath, "./cmd/loalangd")
	if err != nil {
		return err
	}
	fwsim, err := build(fwsimPath, "./firmware-sim")
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "bench-commune-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	os.Chmod(tmp, 0o755)
	var cams, police []string
	for i := 1; i <= cameras; i++ {
		cams = append(cams, fmt.Sprintf("cam-%d", i))
		police = append(police, fmt.Sprintf("%s.cam-%d", natlab.VillageID, i))
	}
	s, err := natlab.StartStack(natlab.StackConfig{Dir: tmp, Loalangd: loalangd, FirmwareSim: fwsim, Cameras: cameras, Shared: cameras, AlwaysOn: alwaysOn,
		Speakers: 3, PoliceCameras: police, Log: func(f string, a ...any) { fmt.Printf(f+"\n", a...) }})
	if s != nil {
		defer s.Close()
	}
	if err != nil {
		return err
	}
	self, _ := os.Executable()
	cmdline := "go run ./bench/communecam " + strings.Join(os.Args[1:], " ")
	fmt.Printf("command: %s\n%d cameras x %d police viewers, %d runs\n", cmdline, cameras, viewers, runs)
	direct := connectMS(s, s.Lab.Police, natlab.CommunePoliceIP+":"+natlab.WebPort, 21) + connectMS(s, s.Lab.Village, natlab.CommuneWANIP+":1883", 21)
	fmt.Printf("direct hops (police->commune + village->commune TCP connect, median of 21): %.2f ms\n\n", direct)

	var outs []map[string]any
	cols := map[string][]float64{}
	fmt.Printf("%-4s %-15s %9s %9s %9s %9s %9s %9s %9s %9s %8s %8s %8s %8s %8s %8s\n", "run", "load avg", "offer p50", "offer p95", "answer p50", "answer p95", "cold p50", "warm p50",
		"click p50", "click p95", "rtt p50", "rtt p95", "srv cpu%", "srv MiB", "turn cpu", "turn MiB")
	for r := 1; r <= runs; r++ {
		if r > 1 && !alwaysOn {
			// Let the on-demand cameras idle-close (15 s) so viewer 1 is cold again.
			time.Sleep(20 * time.Second)
		}
		la := results.LoadAverage()
		c0, t0, w0 := cpuTicks(s.Commune.Pid()), cpuTicks(s.Coturn.Pid()), time.Now()
		cmd := s.Command(s.Lab.Police, self, "-police", "-viewers", strconv.Itoa(viewers))
		cmd.Env = append(os.Environ(), "NATCAM_URL="+natlab.PoliceURL(s.Base, s.PoliceToken), "NATCAM_TOKEN="+s.PoliceToken,
			"NATCAM_CAMERAS="+strings.Join(cams, ","))
		p, err := natlab.Start("police", cmd)
		if err != nil {
			return err
		}
		select {
		case <-p.Exited():
		case <-time.After(5 * time.Minute):
		}
		p.Stop()
		wall := time.Since(w0).Seconds()
		c1, t1 := cpuTicks(s.Commune.Pid()), cpuTicks(s.Coturn.Pid())
		res, ok, err := natlab.ParsePoliceResult(p)
		if !ok || err != nil || res.Error != "" {
			return fmt.Errorf("run %d: police: %v %s\n%s", r, err, res.Error, p.Tail(3000))
		}
		var offer, answer, ice, dtls, frame, click, cold, warm, rtt []float64
		for _, c := range res.Cameras {
			if c.FramesDecoded <= 0 || c.LocalType != "relay" {
				return fmt.Errorf("run %d: %s viewer %d: %d frames, local candidate %q", r, c.Camera, c.Viewer, c.FramesDecoded, c.LocalType)
			}
			o := c.FirstFrameMS - c.GatheredMS
			offer, click, rtt = append(offer, o), append(click, c.FirstFrameMS), append(rtt, c.RTTMS)
			answer = append(answer, c.AnswerMS-c.GatheredMS)
			if c.ICEMS > 0 && c.ConnectedMS > 0 { // both states seen by the page
				ice, dtls, frame = append(ice, c.ICEMS-c.AnswerMS), append(dtls, c.ConnectedMS-c.ICEMS), append(frame, c.FirstFrameMS-c.ConnectedMS)
			}
			if c.Viewer == 1 {
				cold = append(cold, o)
			} else {
				warm = append(warm, o)
			}
		}
		ro := map[string]float64{
			"offer_to_frame_p50_ms": harness.Percentile(offer, 0.5), "offer_to_frame_p95_ms": harness.Percentile(offer, 0.95),
			"cold_offer_to_frame_p50_ms": harness.Percentile(cold, 0.5), "warm_offer_to_frame_p50_ms": harness.Percentile(warm, 0.5),
			"offer_to_answer_p50_ms": harness.Percentile(answer, 0.5), "offer_to_answer_p95_ms": harness.Percentile(answer, 0.95),
			"answer_to_ice_p50_ms": harness.Percentile(ice, 0.5), "ice_to_dtls_p50_ms": harness.Percentile(dtls, 0.5),
			"dtls_to_frame_p50_ms":  harness.Percentile(frame, 0.5),
			"click_to_frame_p50_ms": harness.Percentile(click, 0.5), "click_to_frame_p95_ms": harness.Percentile(click, 0.95),
			"turn_rtt_p50_ms": harness.Percentile(rtt, 0.5), "turn_rtt_p95_ms": harness.Percentile(rtt, 0.95),
			"commune_server_cpu_pct": (c1 - c0) / 100 / wall * 100, "commune_server_rss_mib": rssMiB(s.Commune.Pid()),
			"coturn_cpu_pct": (t1 - t0) / 100 / wall * 100, "coturn_rss_mib": rssMiB(s.Coturn.Pid()),
		}
		fmt.Printf("%-4d %-15s %9.0f %9.0f %9.0f %9.0f %9.0f %9.0f %9.0f %9.0f %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f\n", r, la,
			ro["offer_to_frame_p50_ms"], ro["offer_to_frame_p95_ms"], ro["offer_to_answer_p50_ms"], ro["offer_to_answer_p95_ms"], ro["cold_offer_to_frame_p50_ms"], ro["warm_offer_to_frame_p50_ms"],
			ro["click_to_frame_p50_ms"], ro["click_to_frame_p95_ms"], ro["turn_rtt_p50_ms"], ro["turn_rtt_p95_ms"],
			ro["commune_server_cpu_pct"], ro["commune_server_rss_mib"], ro["coturn_cpu_pct"], ro["coturn_rss_mib"])
		out := map[string]any{"load_avg": la, "sessions": len(res.Cameras), "wall_s": harness.Round(wall, 1)}
		for k, v := range ro {
			out[k] = harness.Round(v, 1)
			cols[k] = append(cols[k], v)
		}
		outs = append(outs, out)
	}
	summary := map[string]any{}
	fmt.Println()
	keys := make([]string, 0, len(cols))
	for k := range cols {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		xs := append([]float64(nil), cols[k]...)
		sort.Float64s(xs)
		summary[k] = map[string]float64{"median": harness.Round(harness.Median(xs), 1), "min": harness.Round(xs[0], 1), "max": harness.Round(xs[len(xs)-1], 1)}
		fmt.Printf("%-28s median %8.1f  (min-max %.1f-%.1f)\n", k, harness.Median(xs), xs[0], xs[len(xs)-1])
	}
	rtt := harness.Median(cols["turn_rtt_p50_ms"])
	fmt.Printf("%-28s median %8.1f  (turn rtt p50 %.2f - direct hops %.2f)\n", "turn_added_rtt_ms", rtt-direct, rtt, direct)
	summary["turn_added_rtt_ms"] = harness.Round(rtt-direct, 2)
	summary["direct_hops_rtt_ms"] = harness.Round(direct, 2)
	summary["goal_offer_to_frame_ms"] = 300
	return results.Merge(resultsPath, key, map[string]any{
		"command": cmdline, "cameras": cameras, "always_on": alwaysOn, "viewers": viewers, "runs": outs, "summary": summary,
		"measured": time.Now().UTC().Format(time.RFC3339),
	})
}
