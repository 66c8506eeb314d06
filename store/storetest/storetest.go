// Package storetest opens real bbolt stores for tests and runs bbolt's
// consistency check on them when the test ends.
package storetest

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/loalang/loalang/store"
)

// Open opens a store in a fresh temporary directory. Cleanup closes it,
// reopens the file and fails the test if bbolt's consistency check finds a
// problem.
func Open(tb testing.TB) *store.DB {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "loalang.db")
	db, err := store.Open(path, time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { CheckFile(tb, db) })
	return db
}

// CheckFile closes db, then reopens its file and runs the consistency check.
func CheckFile(tb testing.TB, db *store.DB) {
	tb.Helper()
	if err := db.Close(); err != nil {
		tb.Errorf("close store: %v", err)
	}
	again, err := store.Open(db.Path(), time.Second)
	if err != nil {
		tb.Errorf("reopen store: %v", err)
		return
	}
	defer again.Close()
	if err := again.Check(); err != nil {
		tb.Errorf("bbolt check %s: %v", db.Path(), err)
	}
}
