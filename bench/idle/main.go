// Command idle measures loalangd's idle memory with the demo village
// (configs/demo.yaml: 12 speakers in 3 zones, 2 on-demand cameras, a relay
// board), as an operator would see it after a morning's sign-ins: it starts
// bin/loalangd and bin/firmware-sim on the demo configuration (every port
// moved to a free one, the data directory to a temporary one), waits for the
// 12 speakers to be online, signs in 5 times, and samples loalangd's VmRSS
// at 30 s after start and again at -later (default 5 min). There is no
// baseline process: the goal (issue 16) is an absolute ≤ 40 MiB at both
// points. Results are merged into bench/results.json under "idle".
//
//	go run ./bench/idle [-runs 3] [-later 5m] [-logins 5] [-gctrace]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/loalang/loalang/bench/fanout/harness"
	"github.com/loalang/loalang/bench/results"
)

type options struct {
	runs     int
	first    time.Duration
	later    time.Duration
	logins   int
	config   string
	loalangd string
	fwsim    string
	results  string
	gctrace  bool
	keepLogs string
}

type runResult struct {
	Load          string  `json:"load_avg"`
	LoginMS       float64 `json:"login_ms_median"`
	RSSFirstMiB   float64 `json:"rss_first_mib"`
	RSSLaterMiB   float64 `json:"rss_later_mib"`
	HWMMiB        float64 `json:"hwm_mib"`
	OnlineDevices int     `json:"online_devices"`
}

func main() {
	var o options
	flag.IntVar(&o.runs, "runs", 3, "runs; figures are the median over runs")
	flag.DurationVar(&o.first, "first", 30*time.Second, "first sample, after loalangd's start")
	flag.DurationVar(&o.later, "later", 5*time.Minute, "second sample, after loalangd's start")
	flag.IntVar(&o.logins, "logins", 5, "admin sign-ins (POST /api/v1/login) before the first sample")
	flag.StringVar(&o.config, "config", "configs/demo.yaml", "demo configuration")
	flag.StringVar(&o.loalangd, "loalangd", "bin/loalangd", "loalangd binary (built from ./cmd/loalangd if missing)")
	flag.StringVar(&o.fwsim, "firmware-sim", "bin/firmware-sim", "firmware-sim binary (built from ./firmware-sim if missing)")
	flag.StringVar(&o.results, "results", "bench/results.json", "results file to merge into")
	flag.BoolVar(&o.gctrace, "gctrace", false, "run loalangd with GODEBUG=gctrace=1 and print its GC lines")
	flag.StringVar(&o.keepLogs, "keep-logs", "", "copy each run's loalangd log into this directory")
	flag.Parse()
	o.runs = max(1, o.runs)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/idle:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	work, err := os.MkdirTemp("", "loalang-bench-idle-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin, err := harness.Binary(ctx, o.loalangd, "./cmd/loalangd", work, "loalangd")
	if err != nil {
		return err
	}
	sim, err := harness.Binary(ctx, o.fwsim, "./firmware-sim", work, "firmware-sim")
	if err != nil {
		return err
	}
	demo, err := os.ReadFile(o.config)
	if err != nil {
		return fmt.Errorf("read demo config: %w", err)
	}
	if o.gctrace {
		os.Setenv("GODEBUG", "gctrace=1")
	}
	cmdline := "go run ./bench/idle " + strings.Join(os.Args[1:], " ")
	fmt.Printf("command: %s\n", cmdline)
	var rs []runResult
	for i := range o.runs {
		if ctx.Err() != nil {
			break
		}
		dir := filepath.Join(work, fmt.Sprintf("run%d", i+1))
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		r, err := oneRun(ctx, o, bin, sim, dir, demo)
		if o.keepLogs != "" {
			_ = os.MkdirAll(o.keepLogs, 0o755)
			if b, rerr := os.ReadFile(filepath.Join(dir, "loalangd.log")); rerr == nil {
				_ = os.WriteFile(filepath.Join(o.keepLogs, fmt.Sprintf("loalangd-run%d.log", i+1)), b, 0o644)
			}
		}
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		fmt.Printf("run %d: load %s; RSS %.1f MiB at %v, %.1f MiB at %v; HWM %.1f MiB; %d devices online; login %.0f ms\n",
			i+1, r.Load, r.RSSFirstMiB, o.first, r.RSSLaterMiB, o.later, r.HWMMiB, r.OnlineDevices, r.LoginMS)
		rs = append(rs, r)
	}
	if len(rs) == 0 {
		return ctx.Err()
	}
	col := func(f func(runResult) float64) (med, lo, hi float64) {
		xs := make([]float64, len(rs))
		lo, hi = f(rs[0]), f(rs[0])
		for i, r := range rs {
			xs[i] = f(r)
			lo, hi = min(lo, xs[i]), max(hi, xs[i])
		}
		return harness.Median(xs), lo, hi
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "\nfigure\tmedian\tmin–max\tgoal\n")
	out := map[string]any{
		"command": cmdline, "runs": len(rs), "logins": o.logins,
		"first_sample_s": o.first.Seconds(), "later_sample_s": o.later.Seconds(),
		"goal_mib": 40, "per_run": rs, "cores": runtime.NumCPU(),
		"date": time.Now().UTC().Format(time.RFC3339),
	}
	for _, c := range []struct {
		key, name, goal string
		f               func(runResult) float64
	}{
		{"rss_first_mib", fmt.Sprintf("VmRSS at %v (MiB)", o.first), "≤ 40", func(r runResult) float64 { return r.RSSFirstMiB }},
		{"rss_later_mib", fmt.Sprintf("VmRSS at %v (MiB)", o.later), "≤ 40", func(r runResult) float64 { return r.RSSLaterMiB }},
		{"hwm_mib", "VmHWM, peak (MiB)", "", func(r runResult) float64 { return r.HWMMiB }},
		{"login_ms", "sign-in, median per run (ms)", "", func(r runResult) float64 { return r.LoginMS }},
	} {
		med, lo, hi := col(c.f)
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f–%.1f\t%s\n", c.name, med, lo, hi, c.goal)
		out[c.key] = harness.Round(med, 1)
		out[c.key+"_min"], out[c.key+"_max"] = harness.Round(lo, 1), harness.Round(hi, 1)
	}
	tw.Flush()
	return results.Merge(o.results, "idle", out)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// demoConfig moves the demo's fixed ports and paths into dir.
func demoConfig(demo []byte, dir string) (string, error) {
	s := string(demo)
	s = strings.Replace(s, "data_dir: var/demo", "data_dir: "+dir, 1)
	s = strings.Replace(s, "udp_port: 8189", "udp_port: 0", 1)
	s = strings.ReplaceAll(s, "port: var/demo/relay-01.pty", "port: "+filepath.Join(dir, "relay-01.pty"))
	for _, old := range []string{"127.0.0.1:8554", "127.0.0.1:8555"} {
		p, err := freePort()
		if err != nil {
			return "", err
		}
		s = strings.ReplaceAll(s, old, fmt.Sprintf("127.0.0.1:%d", p))
	}
	return s, nil
}

func oneRun(ctx context.Context, o options, bin, sim, dir string, demo []byte) (runResult, error) {
	r := runResult{Load: results.LoadAverage()}
	cfg, err := demoConfig(demo, dir)
	if err != nil {
		return r, err
	}
	start := time.Now()
	d, err := harness.StartDaemon(ctx, bin, dir, cfg) // signs in once
	if err != nil {
		return r, err
	}
	defer d.Close()
	logf, err := os.Create(filepath.Join(dir, "firmware-sim.log"))
	if err != nil {
		return r, err
	}
	defer logf.Close()
	cmd := exec.Command(sim, "--provisioning", filepath.Join(dir, "provisioning.json"), "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	fw, err := harness.StartChild(cmd)
	if err != nil {
		return r, fmt.Errorf("start firmware-sim: %w", err)
	}
	defer fw.Close(5 * time.Second)
	if err := d.WaitOnline(ctx, 12, 60*time.Second); err != nil {
		return r, err
	}
	if r.OnlineDevices, err = d.OnlineCount(ctx); err != nil {
		return r, err
	}
	pw, err := os.ReadFile(filepath.Join(dir, "initial-admin-password"))
	if err != nil {
		return r, err
	}
	var took []float64
	for range o.logins {
		t0 := time.Now()
		if err := login(ctx, d.HTTP, strings.TrimSpace(string(pw))); err != nil {
			return r, err
		}
		took = append(took, float64(time.Since(t0).Microseconds())/1000)
	}
	r.LoginMS = harness.Median(took)
	sample := func(at time.Duration) (harness.Memory, error) {
		if wait := time.Until(start.Add(at)); wait > 0 {
			select {
			case <-ctx.Done():
				return harness.Memory{}, ctx.Err()
			case <-time.After(wait):
			}
		}
		return harness.ReadMemory(d.Pid())
	}
	m1, err := sample(o.first)
	if err != nil {
		return r, err
	}
	m2, err := sample(o.later)
	if err != nil {
		return r, err
	}
	r.RSSFirstMiB, r.RSSLaterMiB, r.HWMMiB = m1.RSSMiB, m2.RSSMiB, m2.HWMMiB
	if o.gctrace {
		if b, err := os.ReadFile(filepath.Join(dir, "loalangd.log")); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, "gc ") {
					fmt.Println("  " + l)
				}
			}
		}
	}
	return r, nil
}

func login(ctx context.Context, addr, pw string) error {
	body, _ := json.Marshal(map[string]string{"username": "admin", "password": pw})
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/api/v1/login", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("login: HTTP %d", resp.StatusCode)
	}
	return nil
}
