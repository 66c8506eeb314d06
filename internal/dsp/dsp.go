// Package dsp holds the small signal-processing functions the resamplers
// of broadcast/media and hall share.
package dsp

import "math"

// Sinc is the normalised sinc function, sin(πx)/(πx).
func Sinc(x float64) float64 {
	if x == 0 {
		return 1
	}
	return math.Sin(math.Pi*x) / (math.Pi * x)
}

// BesselI0 is the zeroth-order modified Bessel function of the first kind,
// by its power series (it converges quickly for Kaiser window β values).
func BesselI0(x float64) float64 {
	sum, term := 1.0, 1.0
	for k := 1; k < 50; k++ {
		term *= (x / (2 * float64(k))) * (x / (2 * float64(k)))
		sum += term
		if term < sum*1e-12 {
			break
		}
	}
	return sum
}
