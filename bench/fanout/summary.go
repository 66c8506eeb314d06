package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

// printSummary prints the headline figures of every benchmark in the
// results file: fan-out, cost and sync in full, the others' numeric leaves
// (two levels deep).
func printSummary(w io.Writer, path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	var all map[string]any
	if err := json.Unmarshal(raw, &all); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	keys := make([]string, 0, len(all))
	for k := range all {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "[%s]", k)
		if m, ok := all[k].(map[string]any); ok {
			if d, ok := m["date"]; ok {
				fmt.Fprintf(w, " (%v)", d)
			}
		}
		fmt.Fprintln(w)
		switch k {
		case "fanout":
			summariseFanout(w, all[k])
		default:
			leaves(w, "  ", all[k], 0)
		}
	}
	return nil
}

func summariseFanout(w io.Writer, v any) {
	var f struct {
		Sizes []sizeResult `json:"sizes"`
	}
	raw, _ := json.Marshal(v)
	if json.Unmarshal(raw, &f) != nil {
		return
	}
	for _, r := range f.Sizes {
		if l := r.Loalang; l != nil {
			fmt.Fprintf(w, "  %4d speakers  loalang:  delivered %.3f%%  p50/p99 %.1f/%.1f ms  CPU %.1f%%  RSS %.0f MiB  %.1f kbit/s/speaker\n",
				r.Speakers, l.DeliveryPct, l.LatencyP50MS, l.LatencyP99MS, l.CPUPct, l.RSSMiB, l.KbitPerSpk)
		}
		if b := r.Baseline; b != nil {
			fmt.Fprintf(w, "  %4d subs      baseline: delivered %.3f%%  p50/p99 %.1f/%.1f ms  CPU %.1f%%  RSS %.0f MiB\n",
				b.Subscribers, b.DeliveryPct, b.LatencyP50MS, b.LatencyP99MS, b.CPUPct, b.RSSMiB)
		}
		if r.Ratios != nil {
			fmt.Fprintf(w, "                 ratios:   p99 %v  CPU %v (added %v%%)  RSS %v\n",
				r.Ratios["latency_p99"], r.Ratios["cpu"], r.Ratios["cpu_added_pct"], r.Ratios["rss"])
		}
		for _, e := range r.Errors {
			fmt.Fprintf(w, "  %4d speakers  error: %s\n", r.Speakers, e)
		}
	}
}

// leaves prints numeric and boolean leaves of v up to depth 2.
func leaves(w io.Writer, prefix string, v any, depth int) {
	m, ok := v.(map[string]any)
	if !ok {
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var flat []string
	for _, k := range keys {
		switch x := m[k].(type) {
		case float64, bool:
			flat = append(flat, fmt.Sprintf("%s=%v", k, x))
		case map[string]any:
			if depth < 1 {
				fmt.Fprintf(w, "%s%s:\n", prefix, k)
				leaves(w, prefix+"  ", x, depth+1)
			}
		}
	}
	if len(flat) > 0 {
		fmt.Fprintf(w, "%s%s\n", prefix, strings.Join(flat, "  "))
	}
}
