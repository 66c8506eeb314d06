package hall

import (
	"math"
	"slices"
)

// Drift correction. The sound card runs on its own crystal: a USB card
// 100 ppm fast plays 48 004.8 samples per second of the controller clock,
// and would drift 360 ms an hour ahead of the IP speakers. The sink hands
// samples over as the controller clock makes them due (cursor = now +
// output latency), so the card's rate shows in how many handed samples it
// still holds (its delay): that level stays constant only when the sink
// hands exactly as many samples as the card consumes. A PI controller on
// the level's one-second median sets the resampling ratio (output samples per
// timeline sample); at rest its integral term is the card's rate error.
const (
	// driftWindow is the window of the delay measurement, in samples of
	// the controller clock (1 s): the delay is a sawtooth of a device
	// period or more, and only its middle means anything. The window's
	// value is the median of the delays seen at each read, not a time-
	// weighted mean: after a host stall the first read sees the device
	// drained, and weighting that by the stall's length biased the level
	// low after every stall (measured on the loaded test host: the rate
	// estimate wandered by 80 ppm in 20 s on a device paced by the
	// controller clock itself).
	driftWindow = sampleRate
	// driftMaxSamples bounds the reads kept per window (oto reads about
	// every 5 ms).
	driftMaxSamples = 1024
	// driftSettle is how many windows after the anchor pass before the
	// target level is taken: the first fills the device.
	driftSettle = 1
	// driftKp and driftKi are the gains per sample of level error: the
	// loop is critically damped with a natural period of about 60 s
	// (ωn = 0.105 rad/s: Ki·48000 = ωn², Kp·48000 = 2ωn), slow enough that
	// the ratio moves by a few ppm per second, well below what an ear
	// hears as pitch, and fast enough to absorb a card's warm-up drift.
	driftKp = 2 * 0.105 / sampleRate
	driftKi = 0.105 * 0.105 / sampleRate
	// driftStep is the largest window-to-target error (10 ms) treated as
	// drift. A card 100 ppm off moves the level by 5 samples a second;
	// a larger error is a discontinuity (an ALSA xrun and its recovery
	// refill the ring from the player; a host stall), not a clock, and
	// integrating it would wind the rate estimate up for minutes. Such a
	// level becomes the new target instead; large late steps are the
	// underrun skip's business (resyncSamples).
	driftStep = sampleRate / 100
	// driftMaxPPM bounds the correction: USB audio crystals are within
	// about ±100 ppm; anything beyond ±1000 ppm is a fault, not drift.
	driftMaxPPM = 1000
)

// drift is the controller state of one sink. Its zero value corrects
// nothing until measurements come in.
type drift struct {
	// off disables correction (tests compare against it).
	off bool
	// ratio is output samples per timeline sample; 1 when unknown.
	ratio float64
	// integ is the integral term; -integ estimates the card's rate error.
	integ float64

	target     float64
	haveTarget bool
	windows    int
	winStart   int64 // tick the current window began
	steps      int   // level steps taken as a new target
	samples    []int64
}

// reset forgets the level target (a new anchor), keeping what was learnt
// of the card's rate: the crystal is the same on the next broadcast.
func (d *drift) reset(now int64) {
	d.haveTarget, d.windows, d.winStart, d.samples = false, 0, now, d.samples[:0]
	d.ratio = d.rate()
}

// rate is the estimated card rate relative to the controller clock.
func (d *drift) rate() float64 {
	if d.off {
		return 1
	}
	return 1 - d.integ
}

// measure records the device's delay (samples handed but not yet played)
// at tick now and updates the ratio at the end of each window. It returns
// the window's error (median delay minus the target) when a window closed.
func (d *drift) measure(now, delay int64) (errSamples float64, closed bool) {
	if d.ratio == 0 {
		d.ratio = 1
	}
	if len(d.samples) < driftMaxSamples {
		d.samples = append(d.samples, delay)
	}
	if now-d.winStart < driftWindow {
		return 0, false
	}
	slices.Sort(d.samples)
	mid := float64(d.samples[len(d.samples)/2])
	d.samples, d.winStart = d.samples[:0], now
	d.windows++
	if !d.haveTarget {
		if d.windows > driftSettle {
			d.target, d.haveTarget = mid, true
		}
		return 0, false
	}
	e := mid - d.target
	if d.off {
		return e, true
	}
	if math.Abs(e) > driftStep {
		d.target = mid
		d.steps++
		return e, true
	}
	lim := driftMaxPPM * 1e-6
	d.integ = clamp(d.integ+driftKi*e*(driftWindow/float64(sampleRate)), -lim, lim)
	d.ratio = 1 + clamp(-driftKp*e-d.integ, -lim, lim)
	return e, true
}

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }
