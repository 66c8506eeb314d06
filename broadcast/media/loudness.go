package media

import (
	"fmt"
	"math"
)

// Loudness defaults. -16 LUFS is the level AES TD1004 recommends for speech
// and podcasts streamed to mixed playback devices: loud enough for outdoor
// horns without the squashing that broadcast-level -23 LUFS content needs a
// limiter to avoid when turned up. The -1 dBFS ceiling leaves headroom for
// the overshoot that lossy coding adds to peaks.
const (
	DefaultTargetLUFS  = -16.0
	DefaultPeakCeiling = -1.0
)

// biquad is a direct-form-I second-order IIR section.
type biquad struct {
	b0, b1, b2, a1, a2 float64
	x1, x2, y1, y2     float64
}

func (q *biquad) step(x float64) float64 {
	y := q.b0*x + q.b1*q.x1 + q.b2*q.x2 - q.a1*q.y1 - q.a2*q.y2
	q.x2, q.x1 = q.x1, x
	q.y2, q.y1 = q.y1, y
	return y
}

// kWeighting returns the two-stage K-weighting filter of ITU-R BS.1770-4
// Annex 1 (Tables 1 and 2) with its published 48 kHz coefficients: a +4 dB
// high shelf modelling the head, then the RLB high-pass.
func kWeighting() (biquad, biquad) {
	shelf := biquad{b0: 1.53512485958697, b1: -2.69169618940638, b2: 1.19839281085285,
		a1: -1.69065929318241, a2: 0.73248077421585}
	rlb := biquad{b0: 1, b1: -2, b2: 1, a1: -1.99004745483398, a2: 0.99007225036621}
	return shelf, rlb
}

// IntegratedLoudness returns the gated integrated loudness in LUFS of a mono
// 48 kHz signal per ITU-R BS.1770-4 Annex 1: K-weighting, mean square over
// 400 ms blocks overlapping by 75%, an absolute gate at -70 LKFS and a
// relative gate 10 LU below the absolute-gated level. A signal shorter than
// one block is measured as a single block. ok is false when no block passes
// the absolute gate, i.e. the signal is silent for loudness purposes.
func IntegratedLoudness(pcm []float32) (lufs float64, ok bool) {
	if len(pcm) == 0 {
		return math.Inf(-1), false
	}
	shelf, rlb := kWeighting()
	// Squared K-weighted samples summed per 100 ms step.
	const step = OpusRate / 10
	steps := make([]float64, 0, len(pcm)/step+1)
	var acc float64
	for i, v := range pcm {
		y := rlb.step(shelf.step(float64(v)))
		acc += y * y
		if (i+1)%step == 0 {
			steps = append(steps, acc)
			acc = 0
		}
	}
	var blocks []float64 // mean square per 400 ms block
	if len(steps) < 4 {
		total := acc
		for _, s := range steps {
			total += s
		}
		blocks = []float64{total / float64(len(pcm))}
	} else {
		for i := 0; i+4 <= len(steps); i++ {
			blocks = append(blocks, (steps[i]+steps[i+1]+steps[i+2]+steps[i+3])/(4*step))
		}
	}
	loud := func(ms float64) float64 { return -0.691 + 10*math.Log10(ms) }
	gate := func(threshold float64) (float64, int) {
		var sum float64
		n := 0
		for _, z := range blocks {
			if z > 0 && loud(z) > threshold {
				sum += z
				n++
			}
		}
		return sum, n
	}
	sum, n := gate(-70)
	if n == 0 {
		return math.Inf(-1), false
	}
	rel := loud(sum/float64(n)) - 10
	sum, n = gate(rel)
	return loud(sum / float64(n)), true
}

// TruePeak returns the estimated true peak (linear, 1.0 = full scale) of a
// 48 kHz signal by 4× oversampling as in ITU-R BS.1770-4 Annex 2.
func TruePeak(pcm []float32) float64 {
	var peak float32
	r := NewResampler(OpusRate, 4*OpusRate)
	var out []float32
	scan := func() {
		for _, v := range out {
			peak = max(peak, v, -v)
		}
		out = out[:0]
	}
	const chunk = 4800
	for i := 0; i < len(pcm); i += chunk {
		out = r.Process(out, pcm[i:min(i+chunk, len(pcm))])
		scan()
	}
	out = r.Flush(out)
	scan()
	for _, v := range pcm {
		peak = max(peak, v, -v)
	}
	return float64(peak)
}

// maxLimitDB is the most gain reduction Normalize asks of the limiter.
// Speech typically has 18–24 dB between its peaks and its integrated
// loudness, so at -16 LUFS with a -1 dBFS ceiling its peaks must come down by
// up to about 8 dB; a 5 ms look-ahead limiter does that without audible
// distortion on speech. Material that would need more is left quieter than
// the target instead.
const maxLimitDB = 10.0

// Normalize scales a mono 48 kHz signal in place so its integrated loudness
// is targetLUFS (ITU-R BS.1770-4), and keeps its true peak at or below
// ceilingDB (dBFS) with a look-ahead peak limiter that reduces gain by at
// most maxLimitDB; beyond that the overall gain is lowered instead. It
// returns the applied make-up gain in dB and the loudness measured before.
// Silent input (nothing above the -70 LKFS gate) is ErrSilent.
func Normalize(pcm []float32, targetLUFS, ceilingDB float64) (gainDB, measured float64, err error) {
	measured, ok := IntegratedLoudness(pcm)
	if !ok {
		return 0, measured, fmt.Errorf("audio has no signal above -70 LUFS: %w", ErrSilent)
	}
	gainDB = targetLUFS - measured
	peak := TruePeak(pcm)
	if peak > 0 {
		gainDB = math.Min(gainDB, ceilingDB+maxLimitDB-20*math.Log10(peak))
	}
	g := float32(math.Pow(10, gainDB/20))
	for i := range pcm {
		pcm[i] *= g
	}
	ceiling := math.Pow(10, ceilingDB/20)
	if peak*float64(g) <= ceiling {
		return gainDB, measured, nil
	}
	// Limit sample peaks 0.5 dB under the ceiling to leave room for
	// inter-sample peaks, then make sure with a true-peak measurement.
	limitPeaks(pcm, float32(ceiling*math.Pow(10, -0.5/20)))
	if tp := TruePeak(pcm); tp > ceiling {
		c := float32(ceiling / tp)
		for i := range pcm {
			pcm[i] *= c
		}
	}
	return gainDB, measured, nil
}

// Limiter timing at 48 kHz: 5 ms look-ahead (the gain ramps down over it
// before a peak arrives) and an 80 ms release time constant.
const (
	limiterLookahead = OpusRate * 5 / 1000
	limiterRelease   = OpusRate * 80 / 1000
)

// limitPeaks is a look-ahead brick-wall limiter: afterwards no sample
// exceeds ceiling in magnitude. The gain needed at each sample is spread
// over a forward minimum of look-ahead length, recovers exponentially, and is
// smoothed by a moving average of the same length; every average it takes
// covers the sample's own requirement, so the result never exceeds it.
func limitPeaks(pcm []float32, ceiling float32) {
	n := len(pcm)
	if n == 0 {
		return
	}
	L := limiterLookahead
	req := make([]float32, n)
	for i, v := range pcm {
		a := max(v, -v)
		req[i] = 1
		if a > ceiling {
			req[i] = ceiling / a
		}
	}
	// h[i] = min(req[i : i+L]) with a monotonic deque.
	h := make([]float32, n)
	dq := make([]int, 0, L+1)
	for i := n - 1; i >= 0; i-- {
		for len(dq) > 0 && req[dq[len(dq)-1]] >= req[i] {
			dq = dq[:len(dq)-1]
		}
		dq = append(dq, i)
		if dq[0] >= i+L {
			dq = dq[1:]
		}
		h[i] = req[dq[0]]
	}
	// Release: recover toward 1 no faster than the time constant.
	alpha := float32(1 / float64(limiterRelease))
	prev := float32(1)
	for i := range h {
		prev = min(h[i], prev+(1-prev)*alpha)
		h[i] = prev
	}
	// Attack smoothing: mean of h over [i-L+1, i] (h = 1 before the start).
	var sum float64 = float64(L)
	win := make([]float32, L)
	for i := range win {
		win[i] = 1
	}
	for i := range pcm {
		sum += float64(h[i]) - float64(win[i%L])
		win[i%L] = h[i]
		g := float32(sum / float64(L))
		g = min(g, req[i]) // guard against float rounding in the running sum
		pcm[i] *= g
	}
}
