package hall

import (
	"math"
	"testing"
	"time"
)

// simClock is a controller clock the test advances by hand.
type simClock struct{ t time.Time }

func (c *simClock) now() time.Time { return c.t }

// simCard is a sound card on its own crystal, without oto or ALSA: a ring
// of periods the card drains at rate samples per second of the controller
// clock, refilled a period at a time from a player buffer (oto's mux), which
// is refilled from the timeline whenever it is below its size (oto's player
// loop). It records when each sample it plays leaves it, in controller
// time, through onPlay.
type simCard struct {
	tl       *timeline
	rate     float64 // samples per controller second
	period   int
	ring     []float32
	ringMax  int
	player   []float32
	bufSize  int
	t0       time.Time
	consumed int64 // samples played since t0
	buf      []float32
	onPlay   func(k int64, at time.Time, v float32)
}

// advance runs the card up to controller time now.
func (c *simCard) advance(now time.Time) {
	if c.t0.IsZero() {
		c.t0 = now
	}
	due := int64(now.Sub(c.t0).Seconds() * c.rate)
	for c.consumed < due {
		// The mux moves a period into the ring when it has room.
		for len(c.ring)+c.period <= c.ringMax {
			n := min(c.period, len(c.player))
			c.ring = append(c.ring, c.player[:n]...)
			c.player = c.player[n:]
			for i := n; i < c.period; i++ {
				c.ring = append(c.ring, 0) // underrun: the mux pads
			}
		}
		v := c.ring[0]
		c.ring = c.ring[1:]
		if c.onPlay != nil {
			at := c.t0.Add(time.Duration(float64(c.consumed) / c.rate * float64(time.Second)))
			c.onPlay(c.consumed, at, v)
		}
		c.consumed++
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

func TestTimelineSimple(t *testing.T) {
	clk := &simClock{t: time.Unix(1_800_000_000, 0)}
	tl := newSimTimeline(clk, 100*time.Millisecond)
	card := &simCard{tl: tl, rate: 48000, period: 1024, ringMax: 2048, bufSize: 4800, buf: make([]float32, 4800)}
	start := tick(clk.t.UnixMicro()) + 24000
	for i := 0; i < 50; i++ {
		pcm := make([]float32, packetSamples)
		for j := range pcm {
			pcm[j] = 0.5
		}
		tl.insert(1, start+int64(i)*packetSamples, pcm, false)
	}
	var got int
	card.onPlay = func(k int64, at time.Time, v float32) {
		if v != 0 {
			got++
		}
	}
	for i := 0; i < 2000; i++ {
		clk.t = clk.t.Add(time.Millisecond)
		card.advance(clk.t)
	}
	t.Logf("nonzero %d, played %d late %d", got, tl.stats[1].played, tl.stats[1].late)
	_ = math.Abs
}
