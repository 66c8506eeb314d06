package harness

import (
	"math"
	"slices"
)

// Percentile returns the p-quantile (0–1) of xs by the nearest-rank method;
// xs is sorted in place. It returns NaN for no samples.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	if !slices.IsSorted(xs) {
		slices.Sort(xs)
	}
	i := int(math.Ceil(p*float64(len(xs)))) - 1
	return xs[max(0, min(len(xs)-1, i))]
}

// Median returns the median of xs without changing it, NaN for none. NaNs
// in xs are ignored.
func Median(xs []float64) float64 {
	c := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			c = append(c, x)
		}
	}
	if len(c) == 0 {
		return math.NaN()
	}
	slices.Sort(c)
	n := len(c)
	if n%2 == 1 {
		return c[n/2]
	}
	return (c[n/2-1] + c[n/2]) / 2
}

// Round rounds x to d decimals, mapping NaN and infinities to 0 so that the
// value marshals as JSON.
func Round(x float64, d int) float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	p := math.Pow(10, float64(d))
	return math.Round(x*p) / p
}

// Ratio returns a/b, or 0 when b is 0.
func Ratio(a, b float64) float64 {
	if b == 0 || math.IsNaN(a) || math.IsNaN(b) {
		return 0
	}
	return a / b
}
