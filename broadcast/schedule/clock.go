package schedule

import (
	"sort"
	"sync"
	"time"
)

// Timer is the part of *time.Timer the scheduler uses, so a fake clock can
// stand in for it.
type Timer interface {
	// C delivers the wall time once the timer expires.
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it did so.
	Stop() bool
}

// Clock is the scheduler's source of time. Timers measure elapsed
// (monotonic) time, so a wall-clock jump does not move them.
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) Timer
}

// Monotonic is an optional Clock extension: a reading that never jumps,
// compared against Now to detect wall-clock steps. Without it the scheduler
// falls back to the monotonic reading carried by Now (time.Time, see the
// "Monotonic Clocks" section of package time).
type Monotonic interface {
	Monotonic() time.Duration
}

// RealClock is the system clock.
type RealClock struct {
	start time.Time
}

// NewRealClock returns the system clock.
func NewRealClock() *RealClock { return &RealClock{start: time.Now()} }

// Now returns time.Now (wall and monotonic reading).
func (c *RealClock) Now() time.Time { return time.Now() }

// Monotonic returns the monotonic time elapsed since the clock was created.
func (c *RealClock) Monotonic() time.Duration { return time.Since(c.start) }

// NewTimer wraps time.NewTimer.
func (c *RealClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop() bool          { return t.t.Stop() }

// FakeClock is a manual clock for tests. Advance moves both wall and
// monotonic time and fires due timers; Set moves only the wall clock, the
// way NTP stepping the clock after a power cut does.
type FakeClock struct {
	mu     sync.Mutex
	wall   time.Time
	mono   time.Duration
	timers []*fakeTimer
}

// NewFakeClock returns a fake clock reading now.
func NewFakeClock(now time.Time) *FakeClock { return &FakeClock{wall: now} }

// Now returns the fake wall time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wall
}

// Monotonic returns the fake monotonic time.
func (c *FakeClock) Monotonic() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mono
}

// NewTimer returns a timer that fires once monotonic time has advanced by d.
func (c *FakeClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{clock: c, c: make(chan time.Time, 1), deadline: c.mono + d}
	if d <= 0 {
		t.c <- c.wall
		t.done = true
		return t
	}
	c.timers = append(c.timers, t)
	return t
}

// After returns a channel that receives the wall time once monotonic time
// has advanced by d. With it a FakeClock also drives the broadcast engine
// (broadcast.Clock), whose waits then follow Advance instead of the wall
// clock.
func (c *FakeClock) After(d time.Duration) <-chan time.Time { return c.NewTimer(d).C() }

// Advance moves wall and monotonic time forward by d, firing every timer
// that falls due.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wall = c.wall.Add(d)
	c.mono += d
	keep := c.timers[:0]
	for _, t := range c.timers {
		if t.deadline <= c.mono {
			t.c <- c.wall
			t.done = true
			continue
		}
		keep = append(keep, t)
	}
	c.timers = keep
}

// Set steps the wall clock to now without moving monotonic time or firing
// timers, simulating an NTP correction.
func (c *FakeClock) Set(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wall = now
}

// NextTimer reports how long until the earliest pending timer fires.
func (c *FakeClock) NextTimer() (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.timers) == 0 {
		return 0, false
	}
	sort.Slice(c.timers, func(i, j int) bool { return c.timers[i].deadline < c.timers[j].deadline })
	return c.timers[0].deadline - c.mono, true
}

type fakeTimer struct {
	clock    *FakeClock
	c        chan time.Time
	deadline time.Duration
	done     bool
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	c := t.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.done {
		return false
	}
	t.done = true
	for i, x := range c.timers {
		if x == t {
			c.timers = append(c.timers[:i], c.timers[i+1:]...)
			break
		}
	}
	return true
}
