//go:build race

package store_test

// raceEnabled scales timing budgets: the race detector slows the check
// about twentyfold.
const raceEnabled = true
