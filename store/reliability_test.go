package store_test

import (
	"fmt"
	"github.com/loalang/loalang/audit"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/loalang/loalang/store"
)

// fullReliability reports whether the long forms of the reliability tests
// run (scripts/reliability.sh sets LOALANG_RELIABILITY=full); make test
// runs the light forms.
func fullReliability() bool { return os.Getenv("LOALANG_RELIABILITY") == "full" }

// TestReliabilityCheckCost measures what the integrity check every start
// runs (store.Verify: bbolt's check plus every value's JSON) costs on
// files of 10k, 100k and 1M audit-sized records, and fails if it would
// hold a start up for too long. The light form measures 10k only.
func TestReliabilityCheckCost(t *testing.T) {
	sizes := []int{10_000}
	if fullReliability() {
		sizes = append(sizes, 100_000, 1_000_000)
	}
	for _, n := range sizes {
		path := filepath.Join(t.TempDir(), "loalang.db")
		db, err := store.Open(path, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		const batch = 10_000
		base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		for i := 0; i < n; i += batch {
			events := make([]store.Event, 0, batch)
			for j := i; j < i+batch && j < n; j++ {
				events = append(events, store.Event{Time: base.Add(time.Duration(j) * time.Second), Actor: "spk-07", Action: audit.DeviceOnline,
					Target: "spk-07", Detail: map[string]any{"reason": "heartbeat", "n": j}})
			}
			if err := db.AppendAudit(events...); err != nil {
				t.Fatal(err)
			}
		}
		db.Close()
		info, _ := os.Stat(path)
		start := time.Now()
		if err := store.Verify(path, time.Second); err != nil {
			t.Fatalf("%d records: %v", n, err)
		}
		took := time.Since(start)
		fmt.Printf("check cost: %9d records, %6.1f MiB: %v (race detector: %v)\n", n, float64(info.Size())/(1<<20), took.Round(time.Millisecond), raceEnabled)
		// The budget is generous for a loaded 2-core machine: 30 µs a
		// record (3.8 µs measured), 20 times that under the race detector.
		budget := time.Duration(n) * 30 * time.Microsecond
		if raceEnabled {
			budget *= 20
		}
		if took > budget {
			t.Fatalf("check of %d records took %v, over the %v budget", n, took, budget)
		}
	}
}
