package audiotest

import (
	"math"
	"testing"
)

func TestGoertzelAmplitude(t *testing.T) {
	for _, rate := range []int{8000, 44100, 48000} {
		x := Tone(1000, 0.5, rate, 300)
		if g := Goertzel(x, rate, 1000); math.Abs(g-0.5) > 0.01 {
			t.Errorf("rate %d: Goertzel(1 kHz) = %.4f, want 0.5", rate, g)
		}
		if g := Goertzel(x, rate, 3100); g > 0.005 {
			t.Errorf("rate %d: Goertzel(3.1 kHz) = %.4f, want ~0", rate, g)
		}
	}
}

func TestWAVRoundTrip(t *testing.T) {
	x := Tone(440, 0.7, 16000, 100)
	for _, ch := range []int{1, 2} {
		pcm, rate, channels, err := ParseWAV(WAV(x, 16000, ch))
		if err != nil {
			t.Fatal(err)
		}
		if rate != 16000 || channels != ch || len(pcm) != len(x) {
			t.Fatalf("got rate %d channels %d len %d", rate, channels, len(pcm))
		}
		for i := range x {
			if math.Abs(float64(pcm[i]-x[i])) > 1.0/16000 {
				t.Fatalf("sample %d: %v != %v", i, pcm[i], x[i])
			}
		}
	}
}
