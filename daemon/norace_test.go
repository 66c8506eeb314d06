//go:build !race

package daemon_test

// raceEnabled is true when the tests are built with -race.
const raceEnabled = false
