package speaker

import (
	"math"
	"slices"
	"time"
)

// simClock is the speaker's own oscillator: host time scaled by (1 + drift)
// since boot, plus a fixed offset. It is the "true" clock error the
// simulation injects; the firmware never reads it back except through
// hostOf, which only the recorder uses to tell the truth about when a sample
// was heard.
type simClock struct {
	boot   int64   // host Unix ns when the oscillator started
	offset int64   // ns added to host time
	skew   float64 // drift as a fraction (ppm * 1e-6)
}

// local returns the speaker clock, in Unix ns, at host time h.
func (c simClock) local(h time.Time) int64 {
	e := h.UnixNano() - c.boot
	return c.boot + e + int64(math.Round(float64(e)*c.skew)) + c.offset
}

// hostOf inverts local: the host Unix ns at which the speaker clock reads s.
func (c simClock) hostOf(s int64) int64 {
	e := float64(s-c.boot-c.offset) / (1 + c.skew)
	return c.boot + int64(math.Round(e))
}

// clockSample is one NTP on-wire exchange (RFC 5905 §8): offset theta =
// ((T2-T1)+(T3-T4))/2 is controller minus speaker, delay delta =
// (T4-T1)-(T3-T2), both in ns; local is T4 on the speaker clock.
type clockSample struct {
	local  int64
	offset int64
	delay  int64
}

// Clock filter parameters.
const (
	// clockSamples is how many recent exchanges the filter keeps, like the
	// eight-stage shift register of RFC 5905 §10.
	clockSamples = 8
	// skewMinSpan is the shortest span of samples over which a frequency
	// (drift) estimate is trusted; shorter spans make noise look like drift.
	skewMinSpan = 20 * time.Second
	// maxSkew bounds the frequency estimate, like the 500 ppm tolerance of
	// RFC 5905 §11.3 (PHI is 15 ppm there; cheap crystals are worse).
	maxSkew = 500e-6
)

// clockFilter estimates the offset of the controller clock from the speaker
// clock. It keeps the last clockSamples exchanges; the estimate is the median
// offset of the lowest-delay half of them (low delay means a symmetric, queue-free
// path, RFC 5905 §10 "clock filter"), each projected to the instant of
// interest with a least-squares drift estimate once the samples span long
// enough.
type clockFilter struct {
	samples []clockSample
	skew    float64
}

func (f *clockFilter) reset() {
	f.samples = f.samples[:0]
	f.skew = 0
}

// add records an exchange. Negative delays, impossible on a sane path,
// are discarded as RFC 5905 §8 does for bogus packets.
func (f *clockFilter) add(s clockSample) bool {
	if s.delay < 0 {
		return false
	}
	if len(f.samples) == clockSamples {
		f.samples = append(f.samples[:0], f.samples[1:]...)
	}
	f.samples = append(f.samples, s)
	f.skew = f.fitSkew()
	return true
}

// fitSkew returns the least-squares slope of offset over local time through
// the lowest-delay half of the samples (the same ones the offset estimate
// trusts: a queued exchange is off by up to half its extra delay and would
// tilt the line), or 0 while they span less than skewMinSpan.
func (f *clockFilter) fitSkew() float64 {
	acc := f.accepted()
	n := len(acc)
	if n < 3 {
		return 0
	}
	lo, hi := acc[0].local, acc[0].local
	for _, s := range acc {
		lo, hi = min(lo, s.local), max(hi, s.local)
	}
	if hi-lo < int64(skewMinSpan) {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for _, s := range acc {
		x := float64(s.local - lo)
		y := float64(s.offset)
		sx += x
		sy += y
		sxx += x * x
		sxy += x * y
	}
	den := float64(n)*sxx - sx*sx
	if den == 0 {
		return 0
	}
	k := (float64(n)*sxy - sx*sy) / den
	return math.Max(-maxSkew, math.Min(maxSkew, k))
}

// accepted returns the lowest-delay half of the samples (at least one),
// in a fresh slice.
func (f *clockFilter) accepted() []clockSample {
	acc := slices.Clone(f.samples)
	slices.SortFunc(acc, func(a, b clockSample) int { return cmpInt64(a.delay, b.delay) })
	return acc[:(len(acc)+1)/2]
}

// offsetAt returns the estimated controller-minus-speaker offset at speaker
// time local, and the error bound: the larger of half the spread of the
// accepted offsets and half the smallest round trip (the true offset lies
// within ±delay/2 of a measured one, RFC 5905 §8).
func (f *clockFilter) offsetAt(local int64) (offset, errBound int64, ok bool) {
	if len(f.samples) == 0 {
		return 0, 0, false
	}
	acc := f.accepted()
	var obuf [clockSamples]int64
	offs := obuf[:0]
	for _, s := range acc {
		offs = append(offs, s.offset+int64(f.skew*float64(local-s.local)))
	}
	slices.Sort(offs)
	m := len(offs)
	if m%2 == 1 {
		offset = offs[m/2]
	} else {
		offset = (offs[m/2-1] + offs[m/2]) / 2
	}
	errBound = max((offs[m-1]-offs[0])/2, acc[0].delay/2)
	return offset, errBound, true
}

// toLocal converts a controller time (Unix ns) to the speaker clock using
// the estimate around nowLocal. Without any sample the speaker trusts its
// own clock, as a device that has not synced yet would.
func (f *clockFilter) toLocal(ctrl, nowLocal int64) int64 {
	off, _, ok := f.offsetAt(nowLocal)
	if !ok {
		return ctrl
	}
	if f.skew != 0 {
		// Re-estimate at the target instant so that drift between now and
		// the play-out time is accounted for.
		off, _, _ = f.offsetAt(ctrl - off)
	}
	return ctrl - off
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
