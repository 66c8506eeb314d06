package hall

import "math"

// Drift correction. The sound card runs on its own crystal: a USB card
// 100 ppm fast plays 48 004.8 samples per second of the controller clock,
// and would drift 360 ms an hour ahead of the IP speakers. The sink hands
// samples over as the controller clock makes them due (cursor = now +
// output latency), so the card's rate shows in how many handed samples it
// still holds (its delay): that level stays constant only when the sink
// hands exactly as many samples as the card consumes. A PI controller on
// the level's one-second mean sets the resampling ratio (output samples per
// timeline sample); at rest its integral term is the card's rate error.
const (
	// driftWindow is the averaging window of the delay measurement, in
	// samples of the controller clock (1 s): the delay is a sawtooth of a
	// device period or more, and only its mean means anything.
	driftWindow = sampleRate
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
	lastAt     int64 // tick of the last measurement
	sum, dur   float64
}

// reset forgets the level target (a new anchor), keeping what was learnt
// of the card's rate: the crystal is the same on the next broadcast.
func (d *drift) reset(now int64) {
	d.haveTarget, d.windows, d.sum, d.dur, d.lastAt = false, 0, 0, 0, now
	d.ratio = d.rate()
}

// rate is the estimated card rate relative to the controller clock.
func (d *drift) rate() float64 {
	if d.off {
		return 1
	}
	return 1 - d.integ
}

// measure adds the device's delay (samples handed but not yet played) at
// tick now, weighted by the time since the last measurement, and updates
// the ratio at the end of each window. It returns the window's mean error
// when a window closed.
func (d *drift) measure(now, delay int64) (errSamples float64, closed bool) {
	if d.ratio == 0 {
		d.ratio = 1
	}
	dt := float64(now - d.lastAt)
	d.lastAt = now
	if dt <= 0 {
		return 0, false
	}
	d.sum += float64(delay) * dt
	d.dur += dt
	if d.dur < driftWindow {
		return 0, false
	}
	mean := d.sum / d.dur
	d.sum, d.dur = 0, 0
	d.windows++
	if !d.haveTarget {
		if d.windows > driftSettle {
			d.target, d.haveTarget = mean, true
		}
		return 0, false
	}
	e := mean - d.target
	if d.off {
		return e, true
	}
	lim := driftMaxPPM * 1e-6
	d.integ = clamp(d.integ+driftKi*e*(driftWindow/float64(sampleRate)), -lim, lim)
	d.ratio = 1 + clamp(-driftKp*e-d.integ, -lim, lim)
	return e, true
}

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }
