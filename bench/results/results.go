// Package results keeps bench/results.json: each benchmark owns one
// top-level key and merges its figures without touching the others.
package results

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Merge read-modify-writes path, replacing only key with v, and renames
// the new file into place so a crash never leaves half a file. Benchmarks
// run one after another (scripts/bench.sh), so there is no lock.
func Merge(path, key string, v any) error {
	all := map[string]json.RawMessage{}
	if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
		if err := json.Unmarshal(b, &all); err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s results: %w", key, err)
	}
	all[key] = b
	merged, err := json.MarshalIndent(all, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + "." + key + ".tmp"
	if err := os.WriteFile(tmp, append(merged, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// LoadAverage returns the 1, 5 and 15 minute load averages from
// /proc/loadavg (proc(5)), or "?" where it cannot be read: each benchmark
// prints it before each run, since these machines are shared.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// Spread is a figure's median over the runs with its minimum and maximum,
// as every benchmark reports it.
type Spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

// SpreadOf returns the median, minimum and maximum of xs (zero for none).
func SpreadOf(xs []float64) Spread {
	if len(xs) == 0 {
		return Spread{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Spread{Median: m, Min: s[0], Max: s[len(s)-1]}
}

// Format prints the spread as "median [min-max]" with the given decimals.
func (s Spread) Format(decimals int) string {
	return fmt.Sprintf("%.*f [%.*f-%.*f]", decimals, s.Median, decimals, s.Min, decimals, s.Max)
}

// String is Format with one decimal.
func (s Spread) String() string { return s.Format(1) }
