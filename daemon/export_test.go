package daemon

import "time"

// SetDiskCheckEvery shortens the disk monitor's interval for a test and
// returns a function that restores it.
func SetDiskCheckEvery(d time.Duration) (restore func()) {
	old := diskCheckEvery
	diskCheckEvery = d
	return func() { diskCheckEvery = old }
}
