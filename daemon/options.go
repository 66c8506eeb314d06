package daemon

import (
	"time"

	"github.com/loalang/loalang/broadcast"
	"github.com/loalang/loalang/broadcast/schedule"
)

// Option adjusts a daemon beyond its configuration, for tests and tools.
type Option func(*options)

type options struct {
	clock schedule.Clock
}

// Clock is the daemon's injectable time source: what the scheduler waits
// on (schedule.Clock) and, when it also has After (as schedule.FakeClock
// does), what the broadcast engine stamps play-at times with and waits on
// (broadcast.Clock).
type Clock = schedule.Clock

// WithClock runs the daemon's time on clock instead of the system clock,
// so a test can step the wall clock (±3 h, back across a firing) through
// the whole daemon: Go reads time through the vDSO, out of libfaketime's
// reach. It reaches the timetable (the scheduler, the schedule service's
// stamps, next occurrences and previews, the trigger's relay windows) and
// the broadcast engine. Speakers synchronise to the host's clock (the
// clock protocol answers with it), so a clock that runs apart from the
// wall clock is for tests whose speakers do not play, or which step it
// the way NTP would.
func WithClock(clock Clock) Option {
	return func(o *options) { o.clock = clock }
}

// engineClock is the broadcast engine's clock: WithClock's, or nil (the
// engine's wall clock). A clock without After cannot drive the engine's
// waits, so the engine keeps the wall clock then.
func (o *options) engineClock() broadcast.Clock {
	if o.clock == nil {
		return nil
	}
	if _, ok := o.clock.(interface {
		After(d time.Duration) <-chan time.Time
	}); !ok {
		return nil
	}
	return o.clock
}
