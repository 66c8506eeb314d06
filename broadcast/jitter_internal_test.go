package broadcast

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// feed sends n packets 20 ms apart from capture time *s, each arriving
// after base transit plus a uniform jitter of ±amp, and returns the delay
// after the last one. talkspurt marks the first packet.
func feed(d *liveDelay, rng *rand.Rand, s *time.Time, n int, amp time.Duration, talkspurt bool) time.Duration {
	var got time.Duration
	for i := range n {
		jit := time.Duration((rng.Float64()*2 - 1) * float64(amp))
		r := s.Add(5*time.Millisecond + jit)
		got = d.observe(*s, r, talkspurt && i == 0)
		*s = s.Add(packetDur)
	}
	return got
}

// TestJitterEstimatorRFC3550 checks the estimator against RFC 3550
// §6.4.1's recurrence computed directly, on transits with a known pattern.
func TestJitterEstimatorRFC3550(t *testing.T) {
	var e jitterEstimator
	s := time.Unix(1000, 0)
	transits := []time.Duration{5, 9, 3, 12, 5, 5, 30, 2}
	var want float64
	for i, tr := range transits {
		e.observe(s, s.Add(tr*time.Millisecond))
		if i > 0 {
			d := math.Abs(float64((tr - transits[i-1]) * time.Millisecond))
			want += (d - want) / 16
		}
		s = s.Add(packetDur)
	}
	if got := float64(e.jitter()); math.Abs(got-want) > 1 {
		t.Fatalf("jitter %v, want %v", e.jitter(), time.Duration(want))
	}
	// A constant transit, however large, is no jitter.
	var c jitterEstimator
	for range 200 {
		c.observe(s, s.Add(700*time.Millisecond))
		s = s.Add(packetDur)
	}
	if c.jitter() != 0 {
		t.Errorf("constant transit gave jitter %v", c.jitter())
	}
}

// TestLiveDelayFollowsJitter feeds jittered packets and checks that the
// play-out delay follows the measured jitter: near the floor on a quiet
// link, up at once when the jitter rises, back down step by step during
// continuous speech and at once at the next talkspurt, and never outside
// [floor, ceiling].
func TestLiveDelayFollowsJitter(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const ppf = 3
	floor := (ppf-1)*packetDur + liveMargin
	d := newLiveDelay(ppf, 250*time.Millisecond, 0)
	if want := floor + liveJitterK*livePriorJitter; d.cur != want {
		t.Fatalf("initial delay %v, want %v (floor + K × prior)", d.cur, want)
	}
	s := time.Unix(1000, 0)

	// Quiet link, ±1 ms: J ≈ 0.67 ms; the first packet is a talkspurt, so
	// the delay may fall to the target at once, and continuous shrinking
	// brings it near the floor.
	quiet := feed(d, rng, &s, 500, time.Millisecond, true)
	if quiet < floor || quiet > floor+10*time.Millisecond {
		t.Fatalf("quiet link: delay %v, want within 10 ms above the floor %v (J %v)", quiet, floor, d.est.jitter())
	}

	// Busy link, ±30 ms: mean |D| = 20 ms, so the delay rises to about
	// floor + 80 ms, and it rises within the first packets.
	rise := feed(d, rng, &s, 10, 30*time.Millisecond, false)
	if rise <= quiet {
		t.Fatalf("delay did not rise with the jitter: %v after 10 jittered packets (was %v)", rise, quiet)
	}
	busy := feed(d, rng, &s, 1000, 30*time.Millisecond, false)
	if want := floor + liveJitterK*20*time.Millisecond; busy < want-30*time.Millisecond || busy > want+30*time.Millisecond {
		t.Fatalf("busy link: delay %v, want about %v (J %v)", busy, want, d.est.jitter())
	}

	// Quiet again, continuous speech: it shrinks by at most one packet per
	// liveShrinkEvery (50 packets = 1 s).
	prev := busy
	for range 3 {
		got := feed(d, rng, &s, 50, time.Millisecond, false)
		if got < prev-packetDur {
			t.Fatalf("delay fell from %v to %v within 1 s of continuous speech", prev, got)
		}
		prev = got
	}
	if prev >= busy {
		t.Fatalf("delay did not shrink after 3 s on a quiet link: %v", prev)
	}
	// The next talkspurt takes the target at once (within the hysteresis).
	before := feed(d, rng, &s, 20, time.Millisecond, false)
	spurt := feed(d, rng, &s, 1, time.Millisecond, true)
	if spurt > d.target()+liveHysteresis || spurt > floor+20*time.Millisecond || spurt >= before {
		t.Fatalf("talkspurt: delay %v, target %v", spurt, d.target())
	}

	// A huge jitter is capped at the ceiling.
	if got := feed(d, rng, &s, 500, 400*time.Millisecond, false); got != 250*time.Millisecond {
		t.Fatalf("delay %v under ±400 ms jitter, want the 250 ms ceiling", got)
	}
	// A ceiling below what batching needs is honoured.
	if low := newLiveDelay(ppf, 50*time.Millisecond, 0); low.cur != 50*time.Millisecond || low.floor != 50*time.Millisecond {
		t.Fatalf("ceiling 50 ms: delay %v floor %v", low.cur, low.floor)
	}
}
