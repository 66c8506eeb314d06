package media

import (
	"math"

	"github.com/loalang/loalang/internal/dsp"
)

// Resampler converts a mono stream from one sample rate to another with a
// Kaiser-windowed sinc low-pass filter evaluated in polyphase form (J. O.
// Smith, "Digital Audio Resampling"; the design libsoxr and speexdsp also
// use). The cut-off sits at 90% of the lower Nyquist frequency and the Kaiser
// β of 8.6 gives about 85 dB stop-band rejection, so downsampling does not
// alias and upsampling leaves no images, unlike linear interpolation.
//
// It is streaming: Process may be called with any chunk sizes and yields the
// same samples as one call on the whole signal; Flush drains the filter tail.
// Output sample n corresponds to input time n·inRate/outRate, so there is no
// added delay. A Resampler is not safe for concurrent use.
type Resampler struct {
	inRate, outRate int
	l, m            int64 // out/in = l/m, reduced
	half            int   // filter half-length in input samples
	phases          int   // table phases; exact when phases == l
	table           [][]float32
	buf             []float32 // input samples, buf[0] is input index base
	base            int64
	n               int64 // next output index
	passthrough     bool
}

const (
	resampleZeroCrossings = 24
	resampleCutoff        = 0.90
	resampleBeta          = 8.6
	maxPhases             = 1024
)

// NewResampler returns a resampler from inRate to outRate (both in Hz,
// positive).
func NewResampler(inRate, outRate int) *Resampler {
	g := gcd(inRate, outRate)
	r := &Resampler{inRate: inRate, outRate: outRate, l: int64(outRate / g), m: int64(inRate / g)}
	if inRate == outRate {
		r.passthrough = true
		return r
	}
	fc := resampleCutoff * math.Min(1, float64(outRate)/float64(inRate)) // cycles per input sample ×2
	r.half = int(math.Ceil(resampleZeroCrossings / fc))
	r.phases = int(r.l)
	if r.phases > maxPhases {
		r.phases = maxPhases
	}
	taps := 2 * r.half
	// Row p holds h(j - half + 1 - p/phases) for j in [0, taps): the kernel
	// sampled at the offsets of the taps for fractional position p/phases.
	// Row `phases` (one whole sample later) is kept for interpolation.
	r.table = make([][]float32, r.phases+1)
	i0 := dsp.BesselI0(resampleBeta)
	for p := 0; p <= r.phases; p++ {
		row := make([]float32, taps)
		frac := float64(p) / float64(r.phases)
		for j := range row {
			t := float64(j-r.half+1) - frac // input samples from the output instant
			x := t / float64(r.half)
			if x <= -1 || x >= 1 {
				continue
			}
			w := dsp.BesselI0(resampleBeta*math.Sqrt(1-x*x)) / i0
			row[j] = float32(fc * dsp.Sinc(fc*t) * w)
		}
		r.table[p] = row
	}
	r.buf = make([]float32, r.half) // zero history before the first sample
	r.base = -int64(r.half)
	return r
}

// Process appends to dst the output samples that in makes available and
// returns the extended slice.
func (r *Resampler) Process(dst, in []float32) []float32 {
	if r.passthrough {
		return append(dst, in...)
	}
	r.buf = append(r.buf, in...)
	return r.run(dst)
}

// Flush appends the outputs that still depend on input not yet seen,
// treating it as silence, so that the total output length is
// ceil(inputLength·outRate/inRate). The Resampler must not be used after.
func (r *Resampler) Flush(dst []float32) []float32 {
	if r.passthrough {
		return dst
	}
	inEnd := r.base + int64(len(r.buf)) // input samples consumed so far
	total := (inEnd*r.l + r.m - 1) / r.m
	r.buf = append(r.buf, make([]float32, r.half+1)...)
	for r.n < total {
		dst = r.one(dst)
	}
	return dst
}

func (r *Resampler) run(dst []float32) []float32 {
	end := r.base + int64(len(r.buf))
	for {
		k := r.n * r.m / r.l
		if k+int64(r.half) >= end {
			break
		}
		dst = r.one(dst)
	}
	// Drop input that no future output needs.
	k := r.n * r.m / r.l
	if drop := k - int64(r.half) + 1 - r.base; drop > 4096 {
		r.buf = append(r.buf[:0], r.buf[drop:]...)
		r.base += drop
	}
	return dst
}

// one computes output sample r.n from the taps around input index k.
func (r *Resampler) one(dst []float32) []float32 {
	num := r.n * r.m
	k := num / r.l
	rem := num % r.l // fractional position rem/l in [0,1)
	x := r.buf[k-int64(r.half)+1-r.base:][:2*r.half]
	var acc float32
	if int64(r.phases) == r.l {
		row := r.table[rem]
		for j, c := range row {
			acc += c * x[j]
		}
	} else {
		pos := float64(rem) * float64(r.phases) / float64(r.l)
		p := int(pos)
		f := float32(pos - float64(p))
		a, b := r.table[p], r.table[p+1]
		for j := range a {
			acc += (a[j] + f*(b[j]-a[j])) * x[j]
		}
	}
	r.n++
	return append(dst, acc)
}

// Resample converts a whole mono signal from inRate to outRate.
func Resample(in []float32, inRate, outRate int) []float32 {
	if inRate == outRate {
		return append([]float32(nil), in...)
	}
	r := NewResampler(inRate, outRate)
	out := make([]float32, 0, int64(len(in))*int64(outRate)/int64(inRate)+2)
	out = r.Process(out, in)
	return r.Flush(out)
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	if a == 0 {
		return 1
	}
	return a
}
