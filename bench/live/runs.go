package main

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/loalang/loalang/bench/results"
	"github.com/loalang/loalang/config"
)

// runFigures is one run's complete measurement.
type runFigures struct {
	Date            string  `json:"date"`
	LoadAverage     string  `json:"load_average_before"`
	PacketsSent     int     `json:"packets_sent"`
	PacketsReceived int     `json:"packets_received"`
	SendToDelivery  stats   `json:"send_to_delivery"`
	SendToPlayback  stats   `json:"send_to_playback"`
	PlayoutDelay    stats   `json:"playout_delay"`
	Baseline        stats   `json:"baseline_ping_round_trip"`
	ByPacket        []stats `json:"send_to_delivery_by_packet_of_frame"`
	TimelineJumps   int     `json:"timeline_jumps"`
	LatePackets     int     `json:"late_packets"`
	LatePct         float64 `json:"late_pct"`
}

// statsSpread is the spread of each field of stats over the runs.
type statsSpread struct {
	Packets results.Spread `json:"packets"`
	P50     results.Spread `json:"p50_ms"`
	P99     results.Spread `json:"p99_ms"`
	Max     results.Spread `json:"max_ms"`
}

// medians is the stats of the medians, so that readers of a single run's
// fields get the median run's figures.
func (s statsSpread) medians() stats {
	return stats{Packets: int(math.Round(s.Packets.Median)), P50: s.P50.Median, P99: s.P99.Median, Max: s.Max.Median}
}

func statsSpreadOf(all []runFigures, get func(runFigures) stats) statsSpread {
	var n, p50, p99, mx []float64
	for _, r := range all {
		s := get(r)
		n, p50, p99, mx = append(n, float64(s.Packets)), append(p50, s.P50), append(p99, s.P99), append(mx, s.Max)
	}
	return statsSpread{Packets: results.SpreadOf(n), P50: results.SpreadOf(p50), P99: results.SpreadOf(p99), Max: results.SpreadOf(mx)}
}

func scalarSpread(all []runFigures, get func(runFigures) float64) results.Spread {
	var xs []float64
	for _, r := range all {
		xs = append(xs, get(r))
	}
	return results.SpreadOf(xs)
}

// commandLine is the command that reproduces this run, from the
// repository root: "go run ./bench/live" and this process's arguments,
// quoted where the shell needs it.
func commandLine() string {
	parts := []string{"go", "run", "./bench/live"}
	for _, a := range os.Args[1:] {
		if a == "" || strings.ContainsAny(a, " \t\n'\"$`\\|&;<>()*?[]#~") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// run does the runs, prints each run's line and the table of medians, and
// merges the results under "live" or "live_chromium".
func run(runs, seconds, nSpeakers int, resultsPath, browser string) error {
	cfg := config.Default()
	sender := "pion WHIP client"
	key := "live"
	if browser == "chromium" {
		sender = "headless Chromium (fake microphone), send times sniffed on lo"
		key = "live_chromium"
	}
	command := commandLine()
	var all []runFigures
	var loads []string
	for i := 1; i <= runs; i++ {
		load := results.LoadAverage()
		f, err := oneRun(seconds, nSpeakers, browser)
		if err != nil {
			return fmt.Errorf("run %d of %d: %w", i, runs, err)
		}
		f.LoadAverage = load
		all = append(all, f)
		loads = append(loads, load)
		fmt.Printf("run %d/%d (load %s): received %d of %d packets; send->delivery p50/p99/max %.1f/%.1f/%.1f ms; "+
			"send->playback p50/p99 %.1f/%.1f ms; play-out delay p50/p99/max %.0f/%.0f/%.0f ms; late %.2f%%; timeline jumps %d\n",
			i, runs, load, f.PacketsReceived, f.PacketsSent, f.SendToDelivery.P50, f.SendToDelivery.P99, f.SendToDelivery.Max,
			f.SendToPlayback.P50, f.SendToPlayback.P99, f.PlayoutDelay.P50, f.PlayoutDelay.P99, f.PlayoutDelay.Max, f.LatePct, f.TimelineJumps)
	}

	named := []struct {
		name string
		get  func(runFigures) stats
	}{
		{"send_to_delivery", func(r runFigures) stats { return r.SendToDelivery }},
		{"send_to_playback", func(r runFigures) stats { return r.SendToPlayback }},
		{"playout_delay", func(r runFigures) stats { return r.PlayoutDelay }},
		{"baseline_ping_round_trip", func(r runFigures) stats { return r.Baseline }},
	}
	for i := range cfg.Broadcast.PacketsPerFrame {
		named = append(named, struct {
			name string
			get  func(runFigures) stats
		}{fmt.Sprintf("send_to_delivery_packet_%d_of_frame", i+1), func(r runFigures) stats {
			if i < len(r.ByPacket) {
				return r.ByPacket[i]
			}
			return stats{}
		}})
	}
	spreads := map[string]any{}
	out := map[string]any{
		"date":                time.Now().UTC().Format(time.RFC3339),
		"go":                  runtime.Version(),
		"cpus":                runtime.NumCPU(),
		"speakers":            nSpeakers,
		"seconds":             seconds,
		"live_delay_ms":       cfg.Broadcast.LiveDelay.Milliseconds(),
		"packets_per_frame":   cfg.Broadcast.PacketsPerFrame,
		"sender":              sender,
		"runs":                runs,
		"load_average_before": loads,
		"command":             command,
		"per_run":             all,
		"spread":              spreads,
		"note": "send time = the pion client's write, or Chromium's RTP packet seen leaving on lo (AF_PACKET); " +
			"delivery = MQTT arrival at a zone subscriber (excludes the play-out delay); playback = PlayAt + live delay, when speakers play it; " +
			"baseline = API ping round trip to a speaker over the same broker; " +
			"top-level figures are medians over the runs (each quantile separately), spread holds {median, min, max}, per_run each run",
	}

	fmt.Printf("\nlive speech: %s, %d speakers, %d s per run, %d runs; median [min-max] over the runs\n", sender, nSpeakers, seconds, runs)
	fmt.Printf("command: %s\nload average before each run: [%s]\n", command, strings.Join(loads, "] ["))
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "measure\tpackets\tp50 ms\tp99 ms\tmax ms")
	for _, n := range named {
		sp := statsSpreadOf(all, n.get)
		spreads[n.name] = sp
		out[n.name] = sp.medians()
		label := n.name
		if rest, ok := strings.CutPrefix(n.name, "send_to_delivery_packet_"); ok {
			label = "  packet " + strings.TrimSuffix(rest, "_of_frame") + " of frame"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", label, sp.Packets.Format(0), sp.P50.Format(1), sp.P99.Format(1), sp.Max.Format(1))
	}
	scalars := []struct {
		name, label string
		decimals    int
		get         func(runFigures) float64
	}{
		{"late_pct", "late at the speakers (delivered after their play time), %", 2, func(r runFigures) float64 { return r.LatePct }},
		{"timeline_jumps", "timeline jumps", 0, func(r runFigures) float64 { return float64(r.TimelineJumps) }},
		{"packets_sent", "packets sent", 0, func(r runFigures) float64 { return float64(r.PacketsSent) }},
		{"packets_received", "packets received", 0, func(r runFigures) float64 { return float64(r.PacketsReceived) }},
	}
	for _, sc := range scalars {
		sp := scalarSpread(all, sc.get)
		spreads[sc.name] = sp
		out[sc.name] = sp.Median
		fmt.Fprintf(tw, "%s\t%s\t\t\t\n", sc.label, sp.Format(sc.decimals))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print table: %w", err)
	}
	if err := results.Merge(resultsPath, key, out); err != nil {
		return fmt.Errorf("merge results into %s: %w", resultsPath, err)
	}
	return nil
}
