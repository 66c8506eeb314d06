package trigger

import (
	"errors"
	"testing"
	"time"

	"github.com/loalang/loalang/broadcast/schedule"
)

// TestTriggerSpacing: a schedule stored before schedule.min_interval
// existed (FREQ=SECONDLY) is not re-validated, so the trigger itself
// refuses occurrences closer than the minimum to the previous firing.
func TestTriggerSpacing(t *testing.T) {
	tr := &Trigger{cfg: Config{MinInterval: 5 * time.Minute}}
	base := time.Date(2026, 3, 1, 6, 0, 0, 0, time.UTC)
	if err := tr.spaced("s", base); err != nil {
		t.Fatal(err)
	}
	if err := tr.spaced("s", base.Add(time.Second)); !errors.Is(err, schedule.ErrTooFrequent) {
		t.Fatalf("one second later: %v", err)
	}
	if err := tr.spaced("other", base.Add(time.Second)); err != nil {
		t.Fatalf("another schedule: %v", err)
	}
	if err := tr.spaced("s", base.Add(5*time.Minute)); err != nil {
		t.Fatalf("five minutes later: %v", err)
	}
}
