package daemon

import "github.com/loalang/loalang/broadcast/schedule"

// Option adjusts a daemon beyond its configuration, for tests and tools.
type Option func(*options)

type options struct {
	clock schedule.Clock
}

// WithClock runs the scheduler on clock instead of the system clock, so a
// test can step the wall clock (±3 h, back across a firing) through the
// whole daemon: Go reads time through the vDSO, out of libfaketime's reach.
// The broadcast engine stays on the system clock, since speakers sync
// their playback to it.
func WithClock(clock schedule.Clock) Option {
	return func(o *options) { o.clock = clock }
}
