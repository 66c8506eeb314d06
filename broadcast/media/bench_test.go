package media

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/loalang/loalang/internal/audiotest"
)

// benchSignal is 10 s of a speech-band mixture at rate, so the encoder does
// real work (a pure tone would be unrealistically cheap).
func benchSignal(rate int) []float32 {
	a := audiotest.Tone(310, 0.2, rate, 10000)
	b := audiotest.Tone(1000, 0.15, rate, 10000)
	c := audiotest.Tone(3100, 0.05, rate, 10000)
	for i := range a {
		a[i] += b[i] + c[i]
	}
	return a
}

// reportPerAudioSecond adds the figure `make bench` wants: milliseconds of
// CPU (wall time of this single-threaded loop) per second of audio.
func reportPerAudioSecond(b *testing.B, start time.Time, audio time.Duration) {
	per := time.Since(start).Seconds() * 1000 / (float64(b.N) * audio.Seconds())
	b.ReportMetric(per, "ms/audio-s")
}

// BenchmarkEncode measures Opus encoding alone (24 kbit/s, 20 ms, VoIP).
func BenchmarkEncode(b *testing.B) {
	pcm := benchSignal(OpusRate)
	start := time.Now()
	for b.Loop() {
		if _, err := EncodePCM(context.Background(), pcm, DefaultBitrate); err != nil {
			b.Fatal(err)
		}
	}
	reportPerAudioSecond(b, start, 10*time.Second)
}

// BenchmarkImportWAV44k measures the whole upload path for a 44.1 kHz
// stereo WAV: parse, downmix, resample, loudness, limiter, encode, store.
func BenchmarkImportWAV44k(b *testing.B) {
	wav := audiotest.WAV(benchSignal(44100), 44100, 2)
	lib := newTestLibrary(b, nil)
	start := time.Now()
	for b.Loop() {
		if _, err := lib.Import(context.Background(), "bench.wav", bytes.NewReader(wav)); err != nil {
			b.Fatal(err)
		}
	}
	reportPerAudioSecond(b, start, 10*time.Second)
}

// BenchmarkTranscodeMP3 measures the live relay path (MP3 44.1 kHz stereo
// 128 kbit/s in, Opus out).
func BenchmarkTranscodeMP3(b *testing.B) {
	data := mp3Fixture(b, speechLike, 44100, 2, "128k")
	start := time.Now()
	for b.Loop() {
		tc, err := NewMP3Transcoder(bytes.NewReader(data), 0)
		if err != nil {
			b.Fatal(err)
		}
		if err := tc.Run(context.Background(), func([]byte) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	reportPerAudioSecond(b, start, 2*time.Second)
}
