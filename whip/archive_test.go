package whip

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestPruneArchive: archives past their age go, then the oldest until the
// rest fit the cap; an active session's file and other files are never
// touched.
func TestPruneArchive(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	put := func(name string, age time.Duration, size int) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, now.Add(-age), now.Add(-age)); err != nil {
			t.Fatal(err)
		}
	}
	put("old.opus", 200*24*time.Hour, 10)    // past keep
	put("active.opus", 300*24*time.Hour, 10) // past keep, but still being written
	put("notes.txt", 400*24*time.Hour, 10)   // not an archive
	put("b.opus", 3*time.Hour, 400)          // oldest within keep: over the cap
	put("c.opus", 2*time.Hour, 400)          //
	put("d.opus", time.Hour, 400)            //
	n, err := pruneArchive(dir, 180*24*time.Hour, 1000, now, map[string]bool{"active.opus": true})
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		left = append(left, e.Name())
	}
	want := []string{"active.opus", "c.opus", "d.opus", "notes.txt"}
	if n != 2 || !slices.Equal(left, want) {
		t.Fatalf("deleted %d, left %v; want 2 deleted, %v left", n, left, want)
	}
	if n, err := pruneArchive(dir, 180*24*time.Hour, 1000, now, nil); err != nil || n != 1 {
		t.Fatalf("second prune: %d %v, want the no longer active old file only", n, err)
	}
	if _, err := pruneArchive(filepath.Join(dir, "missing"), time.Hour, 1, now, nil); err == nil {
		t.Fatal("a missing directory pruned without an error")
	}
}
