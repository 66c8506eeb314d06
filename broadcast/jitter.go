package broadcast

import "time"

// Adaptive play-out delay of live speech.
//
// A live packet's play time is its capture time plus a delay that must
// cover the wait for the rest of its MQTT frame, the broker's delivery, the
// speakers' clock error and the variation of the packets' transit from the
// phone. A fixed delay is either too long on a quiet LAN or too short on a
// busy 4G link. Instead the engine estimates the interarrival jitter of the
// live packets as RTP receivers do (RFC 3550 §6.4.1, with the packets'
// capture times, mapped from their RTP timestamps, standing in for the
// timestamps) and sets
//
//	delay = floor + liveJitterK · J, within [floor, ceiling]
//
// where floor = (PacketsPerFrame − 1) · 20 ms + liveMargin and ceiling is
// Config.LiveDelay. It grows at once (a short pause, concealed by the
// speakers, is better than late packets) and shrinks only at the start of a
// talkspurt, after a pause longer than liveGap, or by at most one packet per
// liveShrinkEvery during continuous speech (as adaptive jitter buffers such
// as WebRTC's NetEq accelerate play-out), so that speech is not cut.
const (
	// liveMargin covers MQTT delivery, the speakers' clock error and the
	// engine's own scheduling on a loaded machine.
	liveMargin = 40 * time.Millisecond
	// liveJitterK is how many jitter estimates of margin the delay keeps
	// (RFC 3550's J is a mean deviation; 4 covers the tail of most
	// networks, as in Ramjee et al., "Adaptive playout mechanisms for
	// packetized audio applications in wide-area networks", 1994).
	liveJitterK = 4
	// livePriorJitter is the jitter assumed before any stream has been
	// measured.
	livePriorJitter = 10 * time.Millisecond
	// liveShrinkEvery paces shrinking during continuous speech.
	liveShrinkEvery = time.Second
	// liveHysteresis is how far below the current delay the target must
	// fall before it shrinks, so that the delay does not flutter.
	liveHysteresis = 10 * time.Millisecond
)

// jitterEstimator is RFC 3550 §6.4.1's interarrival jitter: for packets i
// and j, D(i,j) = (Rj − Ri) − (Sj − Si), and J += (|D(i−1,i)| − J)/16.
type jitterEstimator struct {
	have        bool
	prevTransit time.Duration
	j           float64 // nanoseconds
}

// observe adds one packet sent (captured) at s and received at r.
func (e *jitterEstimator) observe(s, r time.Time) {
	transit := r.Sub(s)
	if e.have {
		d := float64(transit - e.prevTransit)
		if d < 0 {
			d = -d
		}
		e.j += (d - e.j) / 16
	}
	e.prevTransit, e.have = transit, true
}

// jitter returns the current estimate.
func (e *jitterEstimator) jitter() time.Duration { return time.Duration(e.j) }

// liveDelay is the adaptive play-out delay of one live stream.
type liveDelay struct {
	floor, ceiling time.Duration
	est            jitterEstimator
	cur            time.Duration
	lastShrink     time.Time
}

// newLiveDelay starts a live stream's delay from the jitter prior (the last
// live stream's final estimate, or livePriorJitter).
func newLiveDelay(packetsPerFrame int, ceiling, prior time.Duration) *liveDelay {
	floor := time.Duration(packetsPerFrame-1)*packetDur + liveMargin
	if ceiling < floor {
		// A configured ceiling below what batching needs wins: the
		// operator asked for that delay, and late packets are counted.
		floor = ceiling
	}
	if prior <= 0 {
		prior = livePriorJitter
	}
	d := &liveDelay{floor: floor, ceiling: ceiling}
	d.est.j = float64(prior)
	d.cur = d.target()
	return d
}

// target is floor + K·J, within [floor, ceiling].
func (d *liveDelay) target() time.Duration {
	t := d.floor + time.Duration(liveJitterK*d.est.j)
	return min(max(t, d.floor), d.ceiling)
}

// observe adds a packet captured at s that reached the engine at r, and
// returns the delay to use for it. talkspurt is true for the first packet
// after a pause (or of the stream), where the delay may shrink at once.
func (d *liveDelay) observe(s, r time.Time, talkspurt bool) time.Duration {
	d.est.observe(s, r)
	t := d.target()
	switch {
	case t > d.cur:
		d.cur, d.lastShrink = t, r
	case t < d.cur-liveHysteresis && talkspurt:
		d.cur, d.lastShrink = t, r
	case t < d.cur-liveHysteresis && r.Sub(d.lastShrink) >= liveShrinkEvery:
		d.cur, d.lastShrink = max(t, d.cur-packetDur), r
	}
	return d.cur
}
