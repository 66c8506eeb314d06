package hall

import (
	"fmt"
	"math"
	"testing"
	"time"
)

// simClock is a controller clock the test advances by hand.
type simClock struct{ t time.Time }

func (c *simClock) now() time.Time { return c.t }

// simCard is a sound card on its own crystal, without oto or ALSA: a ring
// of two periods the card drains at rate samples per second of the
// controller clock, refilled a period at a time from the player buffer
// (padded with silence when that runs short, as oto's mux does), which is
// refilled from the timeline whenever it is below its size (oto's player
// loop). The delay the sink sees is the player buffer, as with oto, whose
// UnplayedBufferSize hides ALSA's own ring. Played samples go to onPlay in
// chunks, with the index of the first; sample k left the card at
// playedAt(k) on the controller clock.
type simCard struct {
	tl      *timeline
	rate    float64 // samples per controller second
	period  int
	ring    []float32 // circular, ringN samples from ringR
	ringR   int
	ringN   int
	player  []float32
	bufSize int
	buf     []float32
	out     []float32
	t0      time.Time
	played  int64
	onPlay  func(first int64, chunk []float32)
}

func newSimCard(tl *timeline, ppm float64) *simCard {
	bufSize := int(tl.latency)
	return &simCard{tl: tl, rate: sampleRate * (1 + ppm*1e-6), period: 1024, ring: make([]float32, 2048),
		bufSize: bufSize, buf: make([]float32, bufSize)}
}

func (c *simCard) playedAt(k int64) time.Time {
	return c.t0.Add(time.Duration(float64(k) / c.rate * float64(time.Second)))
}

// advance runs the card up to controller time now. It is not race
// instrumented (go:norace): it runs in the test's one goroutine, and
// instrumented it makes a long programme take minutes under -race.
//
//go:norace
func (c *simCard) advance(now time.Time) {
	if c.t0.IsZero() {
		c.t0 = now
	}
	due := int64(now.Sub(c.t0).Seconds() * c.rate)
	c.out = c.out[:0]
	first := c.played
	for c.played < due {
		// The mux moves a period into the ring when it has room.
		for c.ringN+c.period <= len(c.ring) {
			n := min(c.period, len(c.player))
			for i := 0; i < c.period; i++ {
				v := float32(0) // underrun: the mux pads with silence
				if i < n {
					v = c.player[i]
				}
				c.ring[(c.ringR+c.ringN)%len(c.ring)] = v
				c.ringN++
			}
			c.player = c.player[:copy(c.player, c.player[n:])]
		}
		c.out = append(c.out, c.ring[c.ringR])
		c.ringR = (c.ringR + 1) % len(c.ring)
		c.ringN--
		c.played++
	}
	if c.onPlay != nil && len(c.out) > 0 {
		c.onPlay(first, c.out)
	}
	// The player loop tops its buffer up from the timeline.
	for len(c.player) < c.bufSize {
		n, _ := c.tl.take(c.buf[:c.bufSize-len(c.player)], int64(len(c.player)))
		if n == 0 {
			break
		}
		c.player = append(c.player, c.buf[:n]...)
	}
}

func newSimTimeline(clk *simClock, latency time.Duration) *timeline {
	return &timeline{
		now:     clk.now,
		latency: tick(latency.Microseconds()),
		stats:   map[uint32]*sinkStats{1: {}},
		current: 1,
		metrics: newMetrics(),
	}
}

// tone1k is one period of a 1 kHz sine at 48 kHz, starting at phase 0.
var tone1k = func() (t [48]float32) {
	for i := range t {
		t[i] = float32(math.Sin(2 * math.Pi * float64(i) / 48))
	}
	return t
}()

// programme is the test's audio: a 1 kHz tone at 0.2, and every 10 s a
// marker: 100 ms of silence, then a burst at 0.5 starting at phase 0 on
// the marker's tick (the moment an IP speaker plays it).
func programme(k int64, first int64) float32 {
	const markEvery = 10 * sampleRate
	rel := k - first
	if rel < 0 {
		return 0
	}
	ph := tone1k[rel%48]
	pos := rel % markEvery
	switch {
	case rel >= markEvery && pos < sampleRate/5:
		return 0.5 * ph
	case pos >= markEvery-sampleRate/10:
		return 0
	}
	return 0.2 * ph
}

// runProgramme plays dur of the programme through a card ppm off, on the
// simulated clock, and returns the offsets of the markers (hall line minus
// IP speaker) in order.
func runProgramme(ppm float64, dur time.Duration, correct bool) (offsets []time.Duration, tl *timeline) {
	clk := &simClock{t: time.Unix(1_800_000_000, 0)}
	tl = newSimTimeline(clk, 100*time.Millisecond)
	tl.drift.off = !correct
	card := newSimCard(tl, ppm)
	first := tick(clk.t.UnixMicro()) + sampleRate/2 // 500 ms play-out delay
	end := first + tick(dur.Microseconds())
	next := first // next packet to queue
	det := &markers{card: card, first: first}
	card.onPlay = det.feed
	for clk.t.Before(time.UnixMicro(end*125/6 + 500_000)) {
		// The network delivers packets up to 400 ms ahead of play.
		for now := tick(clk.t.UnixMicro()); next < end && next < now+tick(400_000); next += packetSamples {
			pcm := make([]float32, packetSamples)
			for j := range pcm {
				pcm[j] = programme(next+int64(j), first)
			}
			tl.insert(1, next, pcm, false)
		}
		clk.t = clk.t.Add(time.Millisecond)
		card.advance(clk.t)
	}
	return det.offsets, tl
}

// markers finds the programme's marker onsets in what the card played and
// measures each against its tick: the hall line minus an ideal IP speaker.
type markers struct {
	card    *simCard
	first   int64
	quiet   int
	offsets []time.Duration
}

// feed is not race instrumented, like simCard.advance, which calls it.
//
//go:norace
func (d *markers) feed(k0 int64, chunk []float32) {
	for i, v := range chunk {
		if v < 0.01 && v > -0.01 {
			d.quiet++
			continue
		}
		if d.quiet >= sampleRate/20 {
			// A burst onset: its marker is the nearest 10 s mark.
			at := d.card.playedAt(k0 + int64(i))
			k := tick(at.UnixMicro()) - d.first
			mark := (k + 5*sampleRate) / (10 * sampleRate) * (10 * sampleRate)
			due := time.UnixMicro((d.first + mark) * 125 / 6)
			d.offsets = append(d.offsets, at.Sub(due))
		}
		d.quiet = 0
	}
}

// TestLongProgrammeDrift is the compressed long programme: 30 minutes of
// audio through a simulated card 100 ppm fast (and 10 minutes through one
// 100 ppm slow), run
// on a simulated clock. The hall line must stay within 5 ms of an ideal IP
// speaker from the first marker to the last. Without correction the same
// card drifts 100 µs per second.
func TestLongProgrammeDrift(t *testing.T) {
	for _, tc := range []struct {
		ppm     float64
		dur     time.Duration
		correct bool
	}{
		{+100, 30 * time.Minute, true},
		{-100, 10 * time.Minute, true},
		{+100, 5 * time.Minute, false},
	} {
		t.Run(fmt.Sprintf("%+.0fppm_%v_correct=%v", tc.ppm, tc.dur, tc.correct), func(t *testing.T) {
			t.Parallel()
			started := time.Now()
			offsets, tl := runProgramme(tc.ppm, tc.dur, tc.correct)
			if want := int(tc.dur/(10*time.Second)) - 1; len(offsets) < want {
				t.Fatalf("%d markers found, want %d", len(offsets), want)
			}
			first, last := offsets[0], offsets[len(offsets)-1]
			worst := time.Duration(0)
			for _, o := range offsets {
				worst = max(worst, (o - first).Abs())
			}
			t.Logf("card %+.0f ppm, %v of audio in %v: offset hall−IP at the first marker %v, at the last %v (change %v, worst %v); estimated card rate %+.1f ppm; underrun skips %.1f ms",
				tc.ppm, tc.dur, time.Since(started).Round(time.Millisecond), first.Round(10*time.Microsecond), last.Round(10*time.Microsecond),
				(last - first).Round(10*time.Microsecond), worst.Round(10*time.Microsecond), (tl.drift.rate()-1)*1e6, float64(tl.skipped)/48)
			if tc.correct {
				if worst > 5*time.Millisecond {
					t.Errorf("hall line moved %v from its start alignment, want within 5 ms", worst)
				}
				if last.Abs() > 5*time.Millisecond+first.Abs() {
					t.Errorf("offset at the end %v", last)
				}
				if est := (tl.drift.rate() - 1) * 1e6; math.Abs(est-tc.ppm) > 5 {
					t.Errorf("estimated card rate %+.1f ppm, card is %+.0f ppm", est, tc.ppm)
				}
			} else if drift := (first - last).Abs(); drift < 20*time.Millisecond {
				t.Errorf("uncorrected drift %v over %v: the simulation does not show drift", drift, tc.dur)
			}
		})
	}
}

// TestInterpolate reads sines at fractional positions advancing by a ratio
// 100 ppm off 1 and compares with the sine evaluated at those positions:
// the error must stay below -60 dB up to 8 kHz (Opus at 24 kbit/s codes
// up to 8–12 kHz) and a constant must pass unchanged.
func TestInterpolate(t *testing.T) {
	for _, f := range []float64{100, 1000, 4000, 8000} {
		in := make([]float32, 4096)
		for i := range in {
			in[i] = float32(0.5 * math.Sin(2*math.Pi*f*float64(i-(interpHalf-1))/sampleRate))
		}
		out := make([]float32, 3000)
		first, step := 0.37, 1/(1+100e-6)
		interpolate(out, in, first, step)
		var errSum, sigSum float64
		for j, v := range out {
			x := first + float64(j)*step
			want := 0.5 * math.Sin(2*math.Pi*f*x/sampleRate)
			errSum += (float64(v) - want) * (float64(v) - want)
			sigSum += want * want
		}
		db := 10 * math.Log10(errSum/sigSum)
		t.Logf("%5.0f Hz: error %.1f dB", f, db)
		if db > -60 {
			t.Errorf("%v Hz: interpolation error %.1f dB, want below -60 dB", f, db)
		}
	}
	in := make([]float32, 64)
	for i := range in {
		in[i] = 0.25
	}
	out := make([]float32, 40)
	interpolate(out, in, 0.5, 1.0001)
	for _, v := range out {
		if math.Abs(float64(v)-0.25) > 1e-6 {
			t.Fatalf("constant 0.25 came out as %v", v)
		}
	}
}

// TestDriftStepIsNotDrift: a sudden 50 ms change of the device level (an
// xrun's refill, a host stall) becomes the new target without moving the
// rate estimate, while a slow drift of 5 samples a second is integrated.
func TestDriftStepIsNotDrift(t *testing.T) {
	var d drift
	now := int64(0)
	d.reset(now)
	window := func(level int64) {
		for i := 0; i < 200; i++ {
			now += driftWindow / 200
			d.measure(now, level)
		}
	}
	window(5000)
	window(5000) // target taken
	if !d.haveTarget || d.target != 5000 {
		t.Fatalf("target %v (have %v), want 5000", d.target, d.haveTarget)
	}
	window(5000 - 2400) // a 50 ms step
	if d.integ != 0 || d.ratio != 1 || d.target != 2600 || d.steps != 1 {
		t.Fatalf("after a step: integ %g ratio %g target %v steps %d; want the step taken as the target", d.integ, d.ratio, d.target, d.steps)
	}
	for i := 1; i <= 10; i++ {
		window(2600 - int64(5*i)) // a card 100 ppm fast drains 4.8 samples/s
	}
	if d.rate() <= 1 || d.ratio <= 1 {
		t.Fatalf("slow drift not corrected: rate %g ratio %g", d.rate(), d.ratio)
	}
}
