package hall

import (
	"math"

	"github.com/loalang/loalang/internal/dsp"
)

// The sink corrects the sound card's clock drift by reading the timeline
// at a fractional position that advances by slightly more or less than one
// sample per output sample (a ratio within a few hundred ppm of 1). It
// interpolates with a Kaiser-windowed sinc kernel evaluated in polyphase
// form (J. O. Smith, "Digital Audio Resampling"), the method of
// broadcast/media's Resampler. That one converts between fixed rational
// rates and keeps its own input buffer; here the ratio changes every
// second and the input is the timeline itself, so the kernel is separate.
const (
	// interpHalf is the kernel's half-length in input samples (16 taps).
	interpHalf = 8
	// interpPhases is the number of tabulated fractional positions; the
	// nearest is used. A position error of at most 1/1024 sample is about
	// -64 dB at 8 kHz, below Opus's coding noise at 24 kbit/s.
	interpPhases = 512
	// interpCutoff is the pass band as a fraction of Nyquist (21.6 kHz):
	// the ratio is so close to 1 that no anti-aliasing is needed, and a
	// cut-off just below Nyquist keeps the short kernel's ripple small.
	interpCutoff = 0.90
	interpBeta   = 7.0
)

// interpTable[p] holds the taps for fractional position p/interpPhases:
// interpTable[p][j] weighs input sample i-interpHalf+1+j for an output at
// i + p/interpPhases. Each row sums to 1, so a constant passes unchanged.
var interpTable = func() [][2 * interpHalf]float32 {
	t := make([][2 * interpHalf]float32, interpPhases+1)
	i0 := dsp.BesselI0(interpBeta)
	for p := range t {
		mu := float64(p) / interpPhases
		var row [2 * interpHalf]float64
		sum := 0.0
		for j := range row {
			x := float64(j-interpHalf+1) - mu // input offset from the output instant
			v := interpCutoff * dsp.Sinc(interpCutoff*x)
			if r := x / interpHalf; math.Abs(r) < 1 {
				v *= dsp.BesselI0(interpBeta*math.Sqrt(1-r*r)) / i0
			} else {
				v = 0
			}
			row[j] = v
			sum += v
		}
		for j := range row {
			t[p][j] = float32(row[j] / sum)
		}
	}
	return t
}()

// interpolate writes len(out) samples read from in at positions
// first + j·step (j = 0, 1, …), where position x means in[x+interpHalf-1]:
// in must hold interpHalf-1 samples before the first position and
// interpHalf after the last one.
//
// It is excluded from race instrumentation (go:norace): it only touches
// its arguments, which the caller owns under the timeline's lock, and the
// read-only table, and instrumented it costs a -race test run of a long
// programme minutes.
//
//go:norace
func interpolate(out, in []float32, first, step float64) {
	for j := range out {
		x := first + float64(j)*step
		i := int(x)
		p := int((x-float64(i))*interpPhases + 0.5)
		if p == interpPhases {
			i, p = i+1, 0
		}
		row := &interpTable[p]
		src := in[i : i+2*interpHalf]
		var acc float32
		for k, w := range row {
			acc += w * src[k]
		}
		out[j] = acc
	}
}
