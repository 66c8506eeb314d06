package daemon

import (
	"time"

	"github.com/loalang/loalang/web"
)

// SetAuditCheckEvery shortens the audit check for a test and restores it
// when the test ends.
func SetAuditCheckEvery(d time.Duration) (restore func()) {
	old := auditCheckEvery
	auditCheckEvery = d
	return func() { auditCheckEvery = old }
}

// Routes lists the web server's routes for the access-matrix test.
func (d *Daemon) Routes() []web.Route { return d.web.Routes() }

// SetDiskCheckEvery shortens the disk monitor's interval for a test and
// returns a function that restores it.
func SetDiskCheckEvery(d time.Duration) (restore func()) {
	old := diskCheckEvery
	diskCheckEvery = d
	return func() { diskCheckEvery = old }
}
