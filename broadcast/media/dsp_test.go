package media

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/loalang/loalang/internal/audiotest"
)

// BS.1770-4 §2.1: a 0 dBFS 997 Hz sine in one channel reads -3.01 LKFS.
func TestLoudnessCalibration(t *testing.T) {
	got, ok := IntegratedLoudness(audiotest.Tone(997, 1, OpusRate, 5000))
	if !ok || math.Abs(got-(-3.01)) > 0.05 {
		t.Fatalf("0 dBFS 997 Hz sine: %.3f LKFS, want -3.01", got)
	}
	// The gates ignore silence: a tone followed by as much silence measures
	// the same as the tone.
	tone := audiotest.Tone(997, 0.1, OpusRate, 5000)
	withGap := append(append([]float32(nil), tone...), make([]float32, len(tone))...)
	a, _ := IntegratedLoudness(tone)
	b, _ := IntegratedLoudness(withGap)
	if math.Abs(a-b) > 0.2 { // blocks straddling the edge pass the relative gate
		t.Errorf("tone %.2f LUFS, tone+silence %.2f LUFS", a, b)
	}
	if _, ok := IntegratedLoudness(make([]float32, OpusRate)); ok {
		t.Error("silence measured as loud")
	}
}

func TestNormalizeKeepsPeaksUnderCeiling(t *testing.T) {
	// A quiet tone with sparse clicks: reaching -16 LUFS needs about
	// +21 dB, which pushes the clicks 3 dB past the ceiling (the limiter
	// takes them) or, for the loud clicks, 40 dB past (more than maxLimitDB,
	// so the whole clip stays quieter instead).
	for _, c := range []struct {
		click      float32
		minL, maxL float64
	}{{0.12, -16.5, -15.5}, {0.9, -40, -25}} {
		pcm := audiotest.Tone(300, 0.02, OpusRate, 3000)
		for i := 10000; i < len(pcm); i += 48000 {
			pcm[i] = c.click
		}
		if _, _, err := Normalize(pcm, -16, -1); err != nil {
			t.Fatal(err)
		}
		if tp := TruePeak(pcm); tp > math.Pow(10, -1.0/20)+1e-6 {
			t.Errorf("click %.2f: true peak %.3f dBFS above -1", c.click, 20*math.Log10(tp))
		}
		lufs, _ := IntegratedLoudness(pcm)
		if lufs < c.minL || lufs > c.maxL {
			t.Errorf("click %.2f: normalised to %.2f LUFS, want %.1f..%.1f", c.click, lufs, c.minL, c.maxL)
		}
	}
}

func TestResamplerRejectsAliasesAndImages(t *testing.T) {
	// Downsampling: a 10 kHz tone cannot be represented at 16 kHz and must
	// vanish, not fold to 6 kHz as with naive decimation.
	out := Resample(audiotest.Tone(10000, 0.5, 48000, 500), 48000, 16000)
	if g := audiotest.Goertzel(middle(out), 16000, 6000); g > 0.0005 {
		t.Errorf("10 kHz aliased to 6 kHz at %.5f", g)
	}
	// Upsampling 8k→48k: a 1 kHz tone keeps its level and leaves no images
	// at 7 and 9 kHz, which linear interpolation leaves at about -30 dB.
	out = Resample(audiotest.Tone(1000, 0.5, 8000, 500), 8000, 48000)
	if len(out) != 24000 {
		t.Fatalf("len %d", len(out))
	}
	if g := audiotest.Goertzel(middle(out), 48000, 1000); math.Abs(g-0.5) > 0.005 {
		t.Errorf("1 kHz at %.4f, want 0.5", g)
	}
	for _, f := range []float64{7000, 9000, 15000} {
		if g := audiotest.Goertzel(middle(out), 48000, f); g > 0.0005 {
			t.Errorf("image at %.0f Hz: %.5f", f, g)
		}
	}
}

func TestResamplerStreamingMatchesBatch(t *testing.T) {
	in := make([]float32, 20000)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range in {
		in[i] = float32(rng.Float64()*2 - 1)
	}
	for _, rates := range [][2]int{{44100, 48000}, {8000, 48000}, {48000, 16000}, {11000, 48000}, {8001, 48000}} {
		want := Resample(in, rates[0], rates[1])
		r := NewResampler(rates[0], rates[1])
		var got []float32
		for i := 0; i < len(in); {
			n := min(1+rng.IntN(3000), len(in)-i)
			got = r.Process(got, in[i:i+n])
			i += n
		}
		got = r.Flush(got)
		if len(got) != len(want) {
			t.Fatalf("%v: streaming %d samples, batch %d", rates, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%v: sample %d differs: %v vs %v", rates, i, got[i], want[i])
			}
		}
	}
}

func TestResampleOddRate(t *testing.T) {
	// 8001 Hz needs 48000 phases; the interpolated table must still be clean.
	out := Resample(audiotest.Tone(1000, 0.5, 8001, 500), 8001, 48000)
	if g := audiotest.Goertzel(middle(out), 48000, 1000); math.Abs(g-0.5) > 0.005 {
		t.Errorf("1 kHz at %.4f, want 0.5", g)
	}
	if g := audiotest.Goertzel(middle(out), 48000, 7001); g > 0.001 {
		t.Errorf("image at 7 kHz: %.5f", g)
	}
}
