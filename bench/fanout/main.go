// Command fanout measures loalang's broadcast fan-out: N simulated speakers
// (firmware-sim/speaker, in this process) on a loalangd started as its own
// process (bin/loalangd, embedded mochi broker), playing a 60 s speech
// clip uploaded through the HTTP API. It reports delivery (packets played
// / expected, from GET /api/v1/broadcasts/{id}), publish → receipt latency
// at bare paho probe subscribers, loalangd's CPU and memory, and bytes per
// speaker per minute. The baseline, in the same run, is a bare mochi broker
// with a bare paho publisher in one child process (as loalangd has both)
// carrying the same messages: frames of the engine's packets per message
// with the clip's packet sizes at the same rate, stream start and stop, to
// the same number of bare paho subscribers, which publish what the speakers
// publish (status, heartbeats, clock requests, delivery reports) while the
// publisher subscribes to those topics as loalangd does and answers the
// clock requests. Both sides count the PUBLISH messages their broker
// received and sent over the measured window. The sides take turns, one
// broadcast each per round on a fresh daemon or broker, and each round's
// CPU ratio is printed beside the ratio of the medians. It also measures
// the encode cost of the clip. Results are merged into bench/results.json
// under "fanout" and "cost".
//
//	go run ./bench/fanout [-speakers 50,200,500] [-duration 60s] [-runs 3]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/loalang/loalang/bench/fanout/harness"
	"github.com/loalang/loalang/bench/results"
	"github.com/loalang/loalang/broadcast/media"
	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/firmware-sim/speaker"
)

const site = "bench"

type options struct {
	sizes    []int
	duration time.Duration
	runs     int
	zones    int
	probes   int
	idle     time.Duration
	loalangd string
	// before, when set, is a second loalangd binary (e.g. the previous
	// commit's) measured in the same run, beside the first, so that a
	// change is compared on the same machine at the same moment.
	before   string
	results  string
	baseline bool
	loalang  bool
	// reportEvery overrides the speakers' report period (0 keeps the
	// firmware's default of 2 s), to isolate what delivery reports cost.
	reportEvery time.Duration
	// cpuProfile, when set, is a directory where a CPU profile of
	// loalangd (debug.pprof_addr) during the first broadcast of each size
	// is written.
	cpuProfile string
	// broker is "embedded" (loalangd's mochi; baseline a bare mochi) or
	// "mosquitto" (loalangd on mqtt.url with the Mosquitto configuration
	// it generates; baseline a bare Mosquitto).
	broker string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-rawbroker" {
		external := ""
		if len(os.Args) > 2 {
			external = os.Args[2]
		}
		if err := runRawBroker(os.Stdin, os.Stdout, external); err != nil {
			fmt.Fprintln(os.Stderr, "rawbroker:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	summary := flag.Bool("summary", false, "only print a summary of the results file and exit")
	sizes := flag.String("speakers", "50,200,500", "comma-separated speaker counts")
	flag.DurationVar(&o.duration, "duration", 60*time.Second, "length of the speech broadcast")
	flag.IntVar(&o.runs, "runs", 3, "rounds per size (one broadcast per side each); figures are the median over rounds")
	flag.IntVar(&o.zones, "zones", 5, "zones the speakers are spread over")
	flag.IntVar(&o.probes, "probes", 10, "bare paho probe subscribers measuring latency (speaker credentials)")
	flag.DurationVar(&o.idle, "idle", 5*time.Second, "idle window before the broadcasts, to measure background CPU (0 skips)")
	flag.StringVar(&o.loalangd, "loalangd", "bin/loalangd", "loalangd binary (built from ./cmd/loalangd if missing)")
	flag.StringVar(&o.before, "before", "", "optional second loalangd binary (e.g. the previous commit's) measured in the same run")
	flag.StringVar(&o.results, "results", "bench/results.json", "results file to merge into")
	flag.BoolVar(&o.baseline, "baseline", true, "run the bare mochi baseline")
	flag.BoolVar(&o.loalang, "loalang", true, "run the loalangd scenario")
	flag.DurationVar(&o.reportEvery, "report-every", 0, "speakers' delivery report period while playing (0: firmware default, 2 s)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "directory for a CPU profile of loalangd during each size's first broadcast (go tool pprof)")
	flag.StringVar(&o.broker, "broker", "embedded", "embedded (mochi inside loalangd) or mosquitto (loalangd on mqtt.url; baseline: bare Mosquitto)")
	flag.Parse()
	if o.broker != "embedded" && o.broker != "mosquitto" {
		fmt.Fprintf(os.Stderr, "bench/fanout: -broker %q: want embedded or mosquitto\n", o.broker)
		os.Exit(2)
	}
	if *summary {
		if err := printSummary(os.Stdout, o.results); err != nil {
			fmt.Fprintln(os.Stderr, "bench/fanout:", err)
			os.Exit(1)
		}
		return
	}
	for _, f := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "bench/fanout: bad -speakers %q\n", *sizes)
			os.Exit(2)
		}
		o.sizes = append(o.sizes, n)
	}
	o.runs = max(1, o.runs)
	o.zones = max(1, o.zones)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/fanout:", err)
		os.Exit(1)
	}
}

// sizeResult is one speaker count's figures, medians over the runs.
type sizeResult struct {
	Speakers int            `json:"speakers"`
	Zones    int            `json:"zones"`
	Runs     int            `json:"runs"`
	Loalang  *loalangFig    `json:"loalang,omitempty"`
	Before   *loalangFig    `json:"before,omitempty"`
	Baseline *baselineFig   `json:"baseline,omitempty"`
	Ratios   map[string]any `json:"ratios,omitempty"`
	Errors   []string       `json:"errors,omitempty"`
}

// roundRatios is each round's CPU ratio, loalangd's run against the
// baseline run beside it, with their median and spread.
type roundRatios struct {
	Each   []float64 `json:"each"`
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
}

// sideFig is what both sides measure in a run, and, combined, the medians
// over the runs.
type sideFig struct {
	DeliveryPct  float64   `json:"delivery_pct"`
	MessagesIn   int64     `json:"messages_in,omitempty"`
	MessagesOut  int64     `json:"messages_out,omitempty"`
	WindowS      float64   `json:"window_s"`
	LatencyP50MS float64   `json:"latency_p50_ms"`
	LatencyP99MS float64   `json:"latency_p99_ms"`
	LatencyMaxMS float64   `json:"latency_max_ms"`
	CPUPct       float64   `json:"cpu_pct_of_one_core"`
	IdleCPUPct   float64   `json:"idle_cpu_pct_of_one_core"`
	RSSMiB       float64   `json:"rss_mib"`
	HWMMiB       float64   `json:"hwm_mib"`
	CPURuns      []float64 `json:"cpu_pct_runs,omitempty"` // per run, in round order
	LoadAverages []string  `json:"load_average_before"`    // per run
}

type loalangFig struct {
	sideFig
	PacketsExpected  uint64  `json:"packets_expected"`
	PacketsPlayed    uint64  `json:"packets_played"`
	PacketsLate      uint64  `json:"packets_late"`
	PacketsLost      uint64  `json:"packets_lost"`
	LatencySamples   int     `json:"latency_samples"`
	BytesPerSpkMin   float64 `json:"mqtt_bytes_per_speaker_per_minute"`
	KbitPerSpk       float64 `json:"mqtt_kbit_s_per_speaker"`
	KbitPerSpkTCPIP  float64 `json:"kbit_s_per_speaker_with_tcpip"`
	SpeakerOverflows uint64  `json:"speaker_inbox_overflows"`
}

type baselineFig struct {
	sideFig
	Subscribers      int     `json:"subscribers"`
	ClockReplies     int     `json:"clock_replies"`
	SendLatencyP50MS float64 `json:"send_stamp_latency_p50_ms"`
	SendLatencyP99MS float64 `json:"send_stamp_latency_p99_ms"`
}

func run(ctx context.Context, o options) error {
	work, err := os.MkdirTemp("", "loalang-bench-fanout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	clipSecs := o.duration.Seconds()
	pcm, source := harness.SpeechClip(ctx, media.Speak, clipSecs)
	fmt.Printf("speech clip: %.0f s, %s\n", clipSecs, source)

	// Cost first, while nothing else runs in this process.
	cost, sizes, err := measureCost(ctx, pcm, o.zones)
	if err != nil {
		return fmt.Errorf("cost: %w", err)
	}
	cost["clip"] = source
	printCost(cost)
	if err := results.Merge(o.results, "cost", cost); err != nil {
		return err
	}

	bin := ""
	if o.loalang {
		if bin, err = harness.Binary(ctx, o.loalangd, "./cmd/loalangd", work, "loalangd"); err != nil {
			return err
		}
	}
	if o.before != "" {
		if _, err := os.Stat(o.before); err != nil {
			return fmt.Errorf("-before: %w", err)
		}
	}
	wav := harness.EncodeWAV(pcm, harness.Rate)
	// The baseline's stream: as many packets as the clip has, in messages
	// of the engine's packets per frame (loalangd runs with the default).
	ppf := config.Default().Broadcast.PacketsPerFrame
	if len(sizes) == 0 {
		sizes = make([]int, int(math.Ceil(clipSecs*1000/wire.PacketMS)))
		for i := range sizes {
			sizes[i] = basePacketSize
		}
	}
	stream := baselineStream{frames: (len(sizes) + ppf - 1) / ppf, ppf: ppf, sizes: sizes}

	var sizeResults []sizeResult
	for _, n := range o.sizes {
		if ctx.Err() != nil {
			break
		}
		r := sizeResult{Speakers: n, Zones: o.zones, Runs: o.runs}
		// The sides take turns, one broadcast each per round, each on a
		// fresh daemon or broker, so that every loalangd run has a
		// baseline run beside it in time: these machines' speed drifts
		// over minutes.
		var loalang, before []*loalangFig
		var baseline []*baselineFig
		failed := map[string]bool{}
		side := func(name string, f func() error) {
			if failed[name] || ctx.Err() != nil {
				return
			}
			if err := f(); err != nil {
				failed[name] = true
				r.Errors = append(r.Errors, name+": "+err.Error())
				fmt.Fprintf(os.Stderr, "%s %d speakers: %v\n", name, n, err)
			}
		}
		for round := 1; round <= o.runs; round++ {
			fmt.Printf("round %d of %d, %d speakers\n", round, o.runs, n)
			if o.loalang {
				side("loalang", func() error {
					profile := ""
					if o.cpuProfile != "" && round == 1 {
						profile = fmt.Sprintf("%s/loalangd-%d.pprof", o.cpuProfile, n)
					}
					fig, err := loalangScenario(ctx, o, bin, work, n, wav, profile)
					if err == nil {
						loalang = append(loalang, fig)
					}
					return err
				})
			}
			if o.before != "" {
				side("before", func() error {
					fig, err := loalangScenario(ctx, o, o.before, work, n, wav, "")
					if err == nil {
						before = append(before, fig)
					}
					return err
				})
			}
			if o.baseline {
				side("baseline", func() error {
					fig, err := baselineScenario(ctx, o, n, stream)
					if err == nil {
						baseline = append(baseline, fig)
					}
					return err
				})
			}
		}
		r.Loalang, r.Before, r.Baseline = combineLoalang(loalang), combineLoalang(before), combineBaseline(baseline)
		if r.Loalang != nil && r.Baseline != nil {
			r.Ratios = map[string]any{
				"latency_p99":   harness.Round(harness.Ratio(r.Loalang.LatencyP99MS, r.Baseline.LatencyP99MS), 2),
				"latency_p50":   harness.Round(harness.Ratio(r.Loalang.LatencyP50MS, r.Baseline.LatencyP50MS), 2),
				"cpu":           harness.Round(harness.Ratio(r.Loalang.CPUPct, r.Baseline.CPUPct), 2),
				"cpu_added_pct": harness.Round(100*(harness.Ratio(r.Loalang.CPUPct, r.Baseline.CPUPct)-1), 1),
				"rss":           harness.Round(harness.Ratio(r.Loalang.RSSMiB, r.Baseline.RSSMiB), 2),
			}
			// Each round's ratio, loalangd's run against the baseline run
			// beside it, and their median and spread.
			if l, b := r.Loalang.CPURuns, r.Baseline.CPURuns; len(l) == len(b) {
				var per []float64
				for i := range l {
					per = append(per, harness.Round(harness.Ratio(l[i], b[i]), 2))
				}
				r.Ratios["cpu_rounds"] = roundRatios{Each: per, Median: harness.Round(harness.Median(per), 2), Min: slices.Min(per), Max: slices.Max(per)}
			}
			if r.Loalang.MessagesIn > 0 && r.Baseline.MessagesIn > 0 {
				r.Ratios["messages_in"] = harness.Round(harness.Ratio(float64(r.Loalang.MessagesIn), float64(r.Baseline.MessagesIn)), 3)
				r.Ratios["messages_out"] = harness.Round(harness.Ratio(float64(r.Loalang.MessagesOut), float64(r.Baseline.MessagesOut)), 3)
			}
		}
		if r.Loalang != nil && r.Before != nil {
			if r.Ratios == nil {
				r.Ratios = map[string]any{}
			}
			r.Ratios["cpu_vs_before"] = harness.Round(harness.Ratio(r.Loalang.CPUPct, r.Before.CPUPct), 3)
			r.Ratios["latency_p99_vs_before"] = harness.Round(harness.Ratio(r.Loalang.LatencyP99MS, r.Before.LatencyP99MS), 3)
			r.Ratios["rss_vs_before"] = harness.Round(harness.Ratio(r.Loalang.RSSMiB, r.Before.RSSMiB), 3)
			r.Ratios["delivery_vs_before"] = harness.Round(harness.Ratio(r.Loalang.DeliveryPct, r.Before.DeliveryPct), 4)
		}
		sizeResults = append(sizeResults, r)
		printTable(sizeResults, o.broker)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	out := map[string]any{
		"date":          time.Now().UTC().Format(time.RFC3339),
		"go":            runtime.Version(),
		"cpus":          runtime.NumCPU(),
		"duration_s":    clipSecs,
		"runs":          o.runs,
		"report_every":  o.reportEvery.String(),
		"probes":        o.probes,
		"clip":          source,
		"packets_note":  fmt.Sprintf("packets are 20 ms Opus packets; %d per MQTT message", config.Default().Broadcast.PacketsPerFrame),
		"latency_note":  "publish time = PlayAt - 20 ms (the engine's schedule; the baseline stamps the same scheduled instant); receipt = bare paho probe handler in the benchmark process",
		"cpu_note":      "loalangd = embedded mochi + daemon (engine, paho client, reports, presence, clock answers); baseline = bare mochi + bare paho publisher (subscribed to the speakers' upstream topics, answering clock requests) in one process, carrying the same messages (baseline_note)",
		"sizes":         sizeResults,
		"baseline_note": stream.note(o),
	}
	key := "fanout"
	if o.broker == "mosquitto" {
		key = "fanout_mosquitto"
		out["cpu_note"] = "loalangd side = loalangd + Mosquitto with loalang's generated configuration (dynamic security plugin, ACL); baseline = bare Mosquitto (anonymous, no ACL) + bare paho publisher process, carrying the same messages (baseline_note; not counted)"
	}
	out["command"] = "go run ./bench/fanout " + strings.Join(os.Args[1:], " ")
	if err := results.Merge(o.results, key, out); err != nil {
		return err
	}
	fmt.Printf("merged into %s under %q and \"cost\"\n", o.results, key)
	return nil
}

// errMosquittoUncounted says that messages are not counted on Mosquitto,
// whose $SYS topics are off in both configurations.
var errMosquittoUncounted = errors.New("messages are not counted on Mosquitto")

// loalangScenario runs one broadcast of wav to n speakers on a daemon of
// its own; profile, when set, is where a CPU profile of loalangd during the
// broadcast is written.
func loalangScenario(ctx context.Context, o options, bin, work string, n int, wav []byte, profile string) (*loalangFig, error) {
	dir, err := os.MkdirTemp(work, fmt.Sprintf("loalang-%d-", n))
	if err != nil {
		return nil, err
	}
	cfgYAML := harness.VillageConfigProbes(site, n, o.zones, min(o.probes, n))
	if profile != "" {
		cfgYAML += "debug:\n  pprof_addr: 127.0.0.1:0\n"
	}
	var pids []int // processes whose CPU and memory count, besides loalangd
	if o.broker == "mosquitto" {
		addr, err := harness.FreeAddr()
		if err != nil {
			return nil, err
		}
		conf, y, err := harness.LoalangMosquitto(ctx, bin, dir, cfgYAML, addr)
		if err != nil {
			return nil, err
		}
		cfgYAML = y
		mosq, err := harness.StartMosquitto(ctx, conf, addr, dir+"/mosquitto.log")
		if err != nil {
			return nil, err
		}
		defer mosq.Close(5 * time.Second)
		pids = append(pids, mosq.Pid())
	}
	d, err := harness.StartDaemon(ctx, bin, dir, cfgYAML)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	pids = append([]int{d.Pid()}, pids...)
	mediaID, err := d.Upload(ctx, "speech.wav", wav)
	if err != nil {
		return nil, err
	}
	fleet, err := harness.StartFleet(d.Bundle, func(_ int, c *speaker.Config) {
		c.KeepPlayed = -1
		c.ReportEvery = o.reportEvery
	})
	if err != nil {
		return nil, err
	}
	defer fleet.Close()
	if err := fleet.WaitReady(ctx, 30*time.Second+time.Duration(n)*100*time.Millisecond); err != nil {
		return nil, err
	}
	if err := d.WaitOnline(ctx, n, 60*time.Second); err != nil {
		return nil, err
	}
	probes, err := harness.ConnectProbes(probeConfigs(d.Bundle, o.probes))
	if err != nil {
		return nil, err
	}
	defer harness.CloseProbes(probes)

	fig := &loalangFig{sideFig: sideFig{LoadAverages: []string{results.LoadAverage()}}}
	if o.idle > 0 {
		m, err := startCPUs(pids)
		if err != nil {
			return nil, err
		}
		if err := sleep(ctx, o.idle); err != nil {
			return nil, err
		}
		fig.IdleCPUPct, _ = m.Percent()
	}
	takeAll(probes) // drop anything from before
	over0 := fleet.Overflowed()
	// The broker's counters bracket the CPU window (embedded broker
	// only; a Mosquitto or an older loalangd has none).
	c0, cerr := harness.MessageCounts{}, errMosquittoUncounted
	if o.broker != "mosquitto" {
		c0, cerr = d.BrokerCounts(ctx)
	}
	t0 := time.Now()
	m, err := startCPUs(pids)
	if err != nil {
		return nil, err
	}
	id, err := d.StartBroadcast(ctx, mediaID, harness.ZoneIDs(o.zones), 80)
	if err != nil {
		return nil, err
	}
	profDone := make(chan error, 1)
	if profile != "" {
		go func() {
			profDone <- harness.CPUProfile(ctx, dir, max(5*time.Second, min(30*time.Second, o.duration-5*time.Second)), profile)
		}()
	} else {
		profDone <- nil
	}
	b, err := d.WaitFinal(ctx, id, o.duration, o.duration+60*time.Second)
	if perr := <-profDone; perr != nil {
		fmt.Fprintf(os.Stderr, "cpu profile: %v\n", perr)
	}
	if err != nil {
		return nil, err
	}
	fig.CPUPct, _ = m.Percent()
	split := m.split()
	fig.WindowS = time.Since(t0).Seconds()
	if cerr == nil {
		var c1 harness.MessageCounts
		if c1, cerr = d.BrokerCounts(ctx); cerr == nil {
			carried := c1.Sub(c0)
			fig.MessagesIn, fig.MessagesOut = carried.In, carried.Out
		}
	}
	if cerr != nil && !errors.Is(cerr, errMosquittoUncounted) {
		fmt.Fprintf(os.Stderr, "loalang %d speakers: no broker message counts: %v\n", n, cerr)
	}
	mem := readMemories(pids)
	fig.RSSMiB, fig.HWMMiB = mem.RSSMiB, mem.HWMMiB
	if b.State != "done" {
		return nil, fmt.Errorf("broadcast %s ended %s: %s", id, b.State, b.Reason)
	}
	if b, err = d.WaitReports(ctx, id, 15*time.Second); err != nil {
		return nil, err
	}
	lat, bytesPerMin := gather(probes, float64(b.Packets)*wire.PacketMS/60000)
	for _, dv := range b.Devices {
		fig.PacketsExpected += max(dv.FramesExpected, uint64(b.Packets))
		fig.PacketsPlayed += dv.FramesPlayed
		fig.PacketsLate += dv.FramesLate
		fig.PacketsLost += dv.FramesLost
	}
	// A speaker the daemon did not list still counts as expected.
	if missing := n - len(b.Devices); missing > 0 {
		fig.PacketsExpected += uint64(missing) * uint64(b.Packets)
	}
	fig.DeliveryPct = 100 * harness.Ratio(float64(fig.PacketsPlayed), float64(fig.PacketsExpected))
	fig.SpeakerOverflows = fleet.Overflowed() - over0
	fig.LatencyP50MS, fig.LatencyP99MS, fig.LatencyMaxMS = harness.Percentile(lat, 0.50), harness.Percentile(lat, 0.99), harness.Percentile(lat, 1)
	fig.LatencySamples = len(lat)
	fig.BytesPerSpkMin = bytesPerMin
	counted := "not counted"
	if cerr == nil {
		counted = fmt.Sprintf("in %d out %d", fig.MessagesIn, fig.MessagesOut)
	}
	fmt.Printf("  loalang %d speakers (load %s): delivered %.3f%% (%d/%d), latency p50 %.1f p99 %.1f ms, CPU %.1f%%%s, RSS %.0f MiB, broker messages %s over %.1f s\n",
		n, fig.LoadAverages[0], fig.DeliveryPct, fig.PacketsPlayed, fig.PacketsExpected, fig.LatencyP50MS, fig.LatencyP99MS, fig.CPUPct, split, fig.RSSMiB, counted, fig.WindowS)
	return fig, nil
}

// combineLoalang gives the medians of loalangd's runs (combineSide); the
// packet counts are the last run's, the overflows and latency samples the
// sum.
func combineLoalang(runs []*loalangFig) *loalangFig {
	if len(runs) == 0 {
		return nil
	}
	last := runs[len(runs)-1]
	fig := &loalangFig{
		sideFig:         combineSide(runs, func(f *loalangFig) *sideFig { return &f.sideFig }),
		PacketsExpected: last.PacketsExpected, PacketsPlayed: last.PacketsPlayed, PacketsLate: last.PacketsLate, PacketsLost: last.PacketsLost,
		BytesPerSpkMin: medianOf(runs, func(f *loalangFig) float64 { return f.BytesPerSpkMin }, 0),
	}
	for _, f := range runs {
		fig.LatencySamples += f.LatencySamples
		fig.SpeakerOverflows += f.SpeakerOverflows
	}
	fig.KbitPerSpk = harness.Round(fig.BytesPerSpkMin*8/60/1000, 2)
	// Each message travels in its own TCP segment: +52 B of IPv4, TCP and
	// timestamp option headers (docs/broadcast.md, "Bandwidth").
	msgsPerMin := 60000.0 / float64(config.Default().Broadcast.PacketsPerFrame*wire.PacketMS)
	fig.KbitPerSpkTCPIP = harness.Round((fig.BytesPerSpkMin+52*msgsPerMin)*8/60/1000, 2)
	return fig
}

// combineSide gives the medians of the runs' common figures, rounded, with
// each run's CPU and load average in order. Message counts are kept only
// where the last run has them (the embedded broker counts, Mosquitto not).
func combineSide[F any](runs []*F, side func(*F) *sideFig) sideFig {
	sides := make([]*sideFig, len(runs))
	for i, f := range runs {
		sides[i] = side(f)
	}
	med := func(v func(*sideFig) float64, d int) float64 { return medianOf(sides, v, d) }
	out := sideFig{
		DeliveryPct:  med(func(f *sideFig) float64 { return f.DeliveryPct }, 3),
		WindowS:      med(func(f *sideFig) float64 { return f.WindowS }, 1),
		LatencyP50MS: med(func(f *sideFig) float64 { return f.LatencyP50MS }, 2),
		LatencyP99MS: med(func(f *sideFig) float64 { return f.LatencyP99MS }, 2),
		LatencyMaxMS: med(func(f *sideFig) float64 { return f.LatencyMaxMS }, 2),
		CPUPct:       med(func(f *sideFig) float64 { return f.CPUPct }, 2),
		IdleCPUPct:   med(func(f *sideFig) float64 { return f.IdleCPUPct }, 2),
		RSSMiB:       med(func(f *sideFig) float64 { return f.RSSMiB }, 1),
		HWMMiB:       med(func(f *sideFig) float64 { return f.HWMMiB }, 1),
	}
	for _, f := range sides {
		out.CPURuns = append(out.CPURuns, harness.Round(f.CPUPct, 2))
		out.LoadAverages = append(out.LoadAverages, f.LoadAverages...)
	}
	if sides[len(sides)-1].MessagesIn > 0 {
		out.MessagesIn = int64(med(func(f *sideFig) float64 { return float64(f.MessagesIn) }, 0))
		out.MessagesOut = int64(med(func(f *sideFig) float64 { return float64(f.MessagesOut) }, 0))
	}
	return out
}

// medianOf is the median of v over runs, rounded to d decimals.
func medianOf[F any](runs []*F, v func(*F) float64, d int) float64 {
	xs := make([]float64, len(runs))
	for i, f := range runs {
		xs[i] = v(f)
	}
	return harness.Round(harness.Median(xs), d)
}

// probeConfigs returns up to k probe connections, one per probe device of
// the bundle (harness.ProbePrefix, spread over the zones like the
// speakers), on their zones' stream and audio topics.
func probeConfigs(b wire.Bundle, k int) []harness.ProbeConfig {
	topics := wire.MustTopics(b.Site)
	var out []harness.ProbeConfig
	for _, d := range b.Devices {
		if len(out) == k || !strings.HasPrefix(d.ID, harness.ProbePrefix) {
			continue
		}
		filters := map[string]byte{}
		for _, z := range d.Zones {
			filters[topics.ZoneAudio(z)] = 0
			filters[topics.ZoneStream(z)] = 1
		}
		out = append(out, harness.ProbeConfig{Broker: b.Broker, ClientID: d.ID,
			Username: d.Username, Password: d.Password, Filters: filters})
	}
	return out
}

func takeAll(ps []*harness.Probe) []harness.ProbeSample {
	out := make([]harness.ProbeSample, len(ps))
	for i, p := range ps {
		out[i] = p.Take()
	}
	return out
}

// gather pools the probes' latencies and returns the median over probes of
// MQTT bytes received per minute of audio.
func gather(ps []*harness.Probe, minutes float64) (lat []float64, bytesPerMin float64) {
	var bpm []float64
	for _, s := range takeAll(ps) {
		lat = append(lat, s.LatencyMS...)
		if minutes > 0 {
			bpm = append(bpm, float64(s.Bytes)/minutes)
		}
	}
	return lat, harness.Median(bpm)
}

// baselineStream is what the baseline publisher sends per run: frames
// messages of ppf packets per zone, the packets' sizes taken in turn from
// sizes (the clip's, as media.EncodePCM encodes it at the default bitrate).
type baselineStream struct {
	frames, ppf int
	sizes       []int
}

// interval is the time between two messages on a zone.
func (b baselineStream) interval() time.Duration {
	return time.Duration(b.ppf) * wire.PacketMS * time.Millisecond
}

// meanSize is the mean packet size in bytes.
func (b baselineStream) meanSize() float64 {
	sum := 0
	for _, v := range b.sizes {
		sum += v
	}
	return float64(sum) / float64(max(1, len(b.sizes)))
}

// command is the child's "pub" line for the audio topics.
func (b baselineStream) command(audio []string) string {
	sz := make([]string, len(b.sizes))
	for i, v := range b.sizes {
		sz[i] = strconv.Itoa(v)
	}
	return fmt.Sprintf("pub %d %d %s %s\n", b.frames, b.ppf, strings.Join(sz, ","), strings.Join(audio, ","))
}

// note describes exactly what the baseline carries (results' baseline_note).
func (b baselineStream) note(o options) string {
	broker := "a bare mochi v2.7.9 broker (allow-all hook, default capabilities, $SYS every 10 min as loalangd's)"
	if o.broker == "mosquitto" {
		broker = "a bare Mosquitto (anonymous, no ACL)"
	}
	report := o.reportEvery
	if report <= 0 {
		report = 2 * time.Second
	}
	return fmt.Sprintf("%s with a bare paho publisher in one child process. Downstream: per run a QoS 1 stream start on each zone's stream topic, "+
		"then %d frames per zone of %d 20 ms packets (the clip's %d packet sizes in turn, mean %.1f B) on QoS 0 zone audio topics, one per %v, "+
		"frame k at t0 + k·%v, then a QoS 1 stop. Subscribers: N+probes bare paho clients on the zones' audio and stream topics; the N "+
		"speaker-like ones also subscribe to their dev/<id>/cmd (QoS 1) and dev/<id>/time (QoS 0) and publish like firmware-sim/speaker: "+
		"a retained QoS 1 status at connect (offline status as will), a QoS 0 heartbeat every 15 s, QoS 0 clock requests (5 at connect "+
		"50 ms apart, then every 10 s ±10%%), and while the stream plays a QoS 1 delivery report (wire.Report JSON) every %v plus a final one "+
		"at the stop. The publisher subscribes to dev/+/status (1), heartbeat (0), reply (1), clock (0), report (1) as loalangd does, answers "+
		"each clock request with a QoS 0 wire.ClockResponse on dev/<id>/time, and sends itself a QoS 0 message on ctl/probe every 1.5 s "+
		"(loalangd's subscription probe). messages_in/out are the broker's PUBLISH counts over the CPU window (mochi Info counters on the "+
		"baseline, loalangd's loalang_broker_messages_* metrics)%s.",
		broker, b.frames, b.ppf, len(b.sizes), b.meanSize(), b.interval(), b.interval(), report,
		map[bool]string{true: "; not counted on Mosquitto ($SYS is off on both sides)", false: ""}[o.broker == "mosquitto"])
}

// baselineScenario runs one publication of stream to n+probes bare
// subscribers on a bare mochi child (or a bare Mosquitto) of its own, n of
// which publish like speakers.
func baselineScenario(ctx context.Context, o options, n int, stream baselineStream) (*baselineFig, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"-rawbroker"}
	var pids []int // processes whose CPU and memory count, besides the child
	if o.broker == "mosquitto" {
		dir, err := os.MkdirTemp("", "loalang-bench-mosquitto-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		addr, err := harness.FreeAddr()
		if err != nil {
			return nil, err
		}
		conf, err := harness.BareMosquittoConf(dir, addr)
		if err != nil {
			return nil, err
		}
		mosq, err := harness.StartMosquitto(ctx, conf, addr, dir+"/mosquitto.log")
		if err != nil {
			return nil, err
		}
		defer mosq.Close(5 * time.Second)
		pids = append(pids, mosq.Pid())
		args = append(args, "tcp://"+addr)
	}
	cmd := exec.Command(self, args...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	child, err := harness.StartChild(cmd)
	if err != nil {
		return nil, err
	}
	defer child.Close(5 * time.Second)
	defer in.Close()
	pids = append([]int{child.Pid()}, pids...)
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(outPipe)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	readLine := func(within time.Duration) (string, error) {
		select {
		case l, ok := <-lines:
			if !ok {
				return "", errors.New("rawbroker exited")
			}
			return l, nil
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(within):
			return "", fmt.Errorf("rawbroker silent for %v", within)
		}
	}
	l, err := readLine(20 * time.Second)
	if err != nil {
		return nil, err
	}
	addr, ok := strings.CutPrefix(l, "addr ")
	if !ok {
		return nil, fmt.Errorf("rawbroker said %q", l)
	}
	// Same topics, subscriber count and zone split as the loalang run:
	// n speakers spk-0001… that publish upstream like the firmware, and
	// the probes, which publish nothing (as the loalang run's probes).
	topics := wire.MustTopics(site)
	zones := harness.ZoneIDs(o.zones)
	probes := min(o.probes, n)
	subs := n + probes
	var cfgs []harness.ProbeConfig
	for i := 0; i < subs; i++ {
		id, z := fmt.Sprintf("spk-%04d", i+1), zones[i%len(zones)]
		var up *harness.Upstream
		if i < n {
			up = &harness.Upstream{Site: site, DeviceID: id, ReportEvery: o.reportEvery, Seed: uint64(i + 1)}
		} else {
			id, z = fmt.Sprintf("%s%04d", harness.ProbePrefix, i-n+1), zones[(i-n)%len(zones)]
		}
		cfgs = append(cfgs, harness.ProbeConfig{Broker: "tcp://" + addr, ClientID: id,
			Filters:   map[string]byte{topics.ZoneAudio(z): 0, topics.ZoneStream(z): 1},
			SendStamp: true, Upstream: up})
	}
	subscribers, err := harness.ConnectProbes(cfgs)
	if err != nil {
		return nil, err
	}
	defer harness.CloseProbes(subscribers)
	var audio []string
	for _, z := range zones {
		audio = append(audio, topics.ZoneAudio(z))
	}
	fig := &baselineFig{sideFig: sideFig{LoadAverages: []string{results.LoadAverage()}}, Subscribers: subs}
	// The last subscribers' connect bursts (status, heartbeat, 5 clock
	// requests over 200 ms) stay out of the idle window, as the speakers'
	// do in the loalang run, which waits for them to be ready.
	if err := sleep(ctx, time.Second); err != nil {
		return nil, err
	}
	if o.idle > 0 {
		m, err := startCPUs(pids)
		if err != nil {
			return nil, err
		}
		if err := sleep(ctx, o.idle); err != nil {
			return nil, err
		}
		fig.IdleCPUPct, _ = m.Percent()
	}
	takeAll(subscribers)
	t0 := time.Now()
	m, err := startCPUs(pids)
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(in, stream.command(audio)); err != nil {
		return nil, fmt.Errorf("rawbroker pub: %w", err)
	}
	l, err = readLine(time.Duration(stream.frames)*stream.interval() + 60*time.Second)
	if err != nil {
		return nil, err
	}
	fig.CPUPct, _ = m.Percent()
	split := m.split()
	fig.WindowS = time.Since(t0).Seconds()
	mem := readMemories(pids)
	fig.RSSMiB, fig.HWMMiB = mem.RSSMiB, mem.HWMMiB
	var sent, errs int
	if _, err := fmt.Sscanf(l, "done %d %d %d %d", &sent, &errs, &fig.MessagesIn, &fig.MessagesOut); err != nil {
		return nil, fmt.Errorf("rawbroker said %q", l)
	}
	// Let the last frames arrive.
	if err := sleep(ctx, 500*time.Millisecond); err != nil {
		return nil, err
	}
	var lat, slat []float64
	got := 0
	for _, s := range takeAll(subscribers) {
		lat = append(lat, s.LatencyMS...)
		slat = append(slat, s.SendLatencyMS...)
		got += s.Frames
		fig.ClockReplies += s.ClockReplies
	}
	fig.DeliveryPct = 100 * harness.Ratio(float64(got), float64(stream.frames*subs))
	fig.LatencyP50MS, fig.LatencyP99MS, fig.LatencyMaxMS = harness.Percentile(lat, .5), harness.Percentile(lat, .99), harness.Percentile(lat, 1)
	fig.SendLatencyP50MS, fig.SendLatencyP99MS = harness.Percentile(slat, .5), harness.Percentile(slat, .99)
	fmt.Printf("  baseline %d subscribers (load %s): delivered %.3f%%, latency p50 %.1f p99 %.1f ms, CPU %.1f%%%s, RSS %.0f MiB (publish errors %d), broker messages in %d out %d over %.1f s, clock replies %d\n",
		subs, fig.LoadAverages[0], fig.DeliveryPct, fig.LatencyP50MS, fig.LatencyP99MS, fig.CPUPct, split, fig.RSSMiB, errs, fig.MessagesIn, fig.MessagesOut, fig.WindowS, fig.ClockReplies)
	_ = in.Close() // EOF ends the child
	return fig, nil
}

// combineBaseline gives the medians of the baseline's runs (combineSide).
func combineBaseline(runs []*baselineFig) *baselineFig {
	if len(runs) == 0 {
		return nil
	}
	last := runs[len(runs)-1]
	return &baselineFig{
		sideFig:          combineSide(runs, func(f *baselineFig) *sideFig { return &f.sideFig }),
		Subscribers:      last.Subscribers,
		ClockReplies:     last.ClockReplies,
		SendLatencyP50MS: medianOf(runs, func(f *baselineFig) float64 { return f.SendLatencyP50MS }, 2),
		SendLatencyP99MS: medianOf(runs, func(f *baselineFig) float64 { return f.SendLatencyP99MS }, 2),
	}
}

// cpuGroup measures the summed CPU share of several processes (loalangd and
// Mosquitto, or the baseline's publisher and broker).
type cpuGroup []*harness.CPUMeter

func startCPUs(pids []int) (cpuGroup, error) {
	var g cpuGroup
	for _, p := range pids {
		m, err := harness.StartCPU(p)
		if err != nil {
			return nil, err
		}
		g = append(g, m)
	}
	return g, nil
}

// Percent returns the sum over the processes, in % of one core.
func (g cpuGroup) Percent() (float64, error) {
	var sum float64
	for _, m := range g {
		p, err := m.Percent()
		if err != nil {
			return sum, err
		}
		sum += p
	}
	return sum, nil
}

// split formats each process's share (loalangd or the baseline child
// first, then Mosquitto) for a run's line; empty for one process.
func (g cpuGroup) split() string {
	if len(g) < 2 {
		return ""
	}
	parts := make([]string, len(g))
	for i, m := range g {
		p, _ := m.Percent()
		parts[i] = fmt.Sprintf("%.1f", p)
	}
	return " (" + strings.Join(parts, " + ") + ")"
}

// readMemories sums VmRSS and VmHWM over pids.
func readMemories(pids []int) harness.Memory {
	var sum harness.Memory
	for _, p := range pids {
		m, _ := harness.ReadMemory(p)
		sum.RSSMiB += m.RSSMiB
		sum.HWMMiB += m.HWMMiB
	}
	return sum
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func printTable(rs []sizeResult, broker string) {
	brokerName := map[string]string{"embedded": "mochi", "mosquitto": "mosquitto"}[broker]
	count := func(v int64) string {
		if v <= 0 {
			return "-"
		}
		return strconv.FormatInt(v, 10)
	}
	w := tabwriter.NewWriter(os.Stdout, 2, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "speakers\tside\tdelivered %\tp50 ms\tp99 ms\tCPU %\tidle CPU %\tRSS MiB\tHWM MiB\tkbit/s/spk\tmsgs in\tmsgs out\twindow s\tp99 ratio\tCPU ratio\tin ratio\tout ratio\t")
	for _, r := range rs {
		ratio := func(k string) string {
			if v, ok := r.Ratios[k]; ok {
				return fmt.Sprint(v)
			}
			return "-"
		}
		if f := r.Loalang; f != nil {
			fmt.Fprintf(w, "%d\tloalang\t%.3f\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t%.0f\t%.1f\t%s\t%s\t%.1f\t%s\t%s\t%s\t%s\t\n", r.Speakers, f.DeliveryPct,
				f.LatencyP50MS, f.LatencyP99MS, f.CPUPct, f.IdleCPUPct, f.RSSMiB, f.HWMMiB, f.KbitPerSpk,
				count(f.MessagesIn), count(f.MessagesOut), f.WindowS,
				ratio("latency_p99"), ratio("cpu"), ratio("messages_in"), ratio("messages_out"))
		}
		if f := r.Before; f != nil {
			fmt.Fprintf(w, "%d\t-before\t%.3f\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t%.0f\t%.1f\t%s\t%s\t%.1f\t\t\t\t\t\n", r.Speakers, f.DeliveryPct,
				f.LatencyP50MS, f.LatencyP99MS, f.CPUPct, f.IdleCPUPct, f.RSSMiB, f.HWMMiB, f.KbitPerSpk,
				count(f.MessagesIn), count(f.MessagesOut), f.WindowS)
			if v, ok := r.Ratios["cpu_vs_before"]; ok {
				fmt.Fprintf(w, "%d\tnew/before\t\t\t%v\t%v\t\t%v\t\t\t\t\t\t\t\t\t\t\n", r.Speakers, r.Ratios["latency_p99_vs_before"], v, r.Ratios["rss_vs_before"])
			}
		}
		if f := r.Baseline; f != nil {
			fmt.Fprintf(w, "%d\tbare "+brokerName+"\t%.3f\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t%.0f\t\t%s\t%s\t%.1f\t\t\t\t\t\n", r.Speakers, f.DeliveryPct,
				f.LatencyP50MS, f.LatencyP99MS, f.CPUPct, f.IdleCPUPct, f.RSSMiB, f.HWMMiB,
				count(f.MessagesIn), count(f.MessagesOut), f.WindowS)
		}
		for _, e := range r.Errors {
			fmt.Fprintf(w, "%d\terror\t%s\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\n", r.Speakers, e)
		}
	}
	w.Flush()
	for _, r := range rs {
		if rr, ok := r.Ratios["cpu_rounds"].(roundRatios); ok {
			fmt.Printf("%d speakers: CPU ratio per round (loalangd's run / the baseline run beside it) %v: median %v [%v–%v]\n",
				r.Speakers, rr.Each, rr.Median, rr.Min, rr.Max)
		}
	}
}
