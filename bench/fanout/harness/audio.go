package harness

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
)

// Rate is the sample rate of everything the benchmarks generate: Opus's 48 kHz.
const Rate = 48000

// EncodeWAV returns mono 16-bit PCM WAV bytes (RIFF WAVE_FORMAT_PCM) of pcm at rate.
func EncodeWAV(pcm []float32, rate int) []byte {
	b := make([]byte, 44+2*len(pcm))
	copy(b[0:], "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+2*len(pcm)))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)
	binary.LittleEndian.PutUint16(b[20:], 1)
	binary.LittleEndian.PutUint16(b[22:], 1)
	binary.LittleEndian.PutUint32(b[24:], uint32(rate))
	binary.LittleEndian.PutUint32(b[28:], uint32(rate*2))
	binary.LittleEndian.PutUint16(b[32:], 2)
	binary.LittleEndian.PutUint16(b[34:], 16)
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(2*len(pcm)))
	for i, v := range pcm {
		x := math.Round(float64(v) * 32767)
		x = math.Max(-32768, math.Min(32767, x))
		binary.LittleEndian.PutUint16(b[44+2*i:], uint16(int16(x)))
	}
	return b
}

// ReadWAV reads a canonical mono 16-bit WAV as written by the simulated
// speaker's recorder (44-byte header) and returns its samples in [-1, 1].
func ReadWAV(path string) ([]float32, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read wav: %w", err)
	}
	if len(b) < 44 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" || string(b[36:40]) != "data" {
		return nil, fmt.Errorf("read wav %s: not a canonical WAV", path)
	}
	if ch, bits := binary.LittleEndian.Uint16(b[22:]), binary.LittleEndian.Uint16(b[34:]); ch != 1 || bits != 16 {
		return nil, fmt.Errorf("read wav %s: %d channels, %d bits; want mono 16-bit", path, ch, bits)
	}
	n := min(int(binary.LittleEndian.Uint32(b[40:])), len(b)-44) / 2
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(int16(binary.LittleEndian.Uint16(b[44+2*i:]))) / 32768
	}
	return out, nil
}

// Speaker of speech: a function that renders text at 48 kHz, such as
// media.Speak. It is a parameter so that this package needs no cgo.
type SpeakFunc func(ctx context.Context, text, voice string) ([]float32, error)

// Announcement is the Vietnamese text looped into the fan-out benchmark's
// speech clip (a typical village notice: a meeting, then a reminder).
const Announcement = "Thông báo của ban quản lý thôn. Tối nay, lúc bảy giờ, " +
	"tại nhà văn hóa thôn, có cuộc họp bàn về kế hoạch làm đường liên xóm. " +
	"Đề nghị các hộ gia đình cử đại diện đến dự đầy đủ và đúng giờ. " +
	"Xin nhắc lại: bà con chú ý phòng chống dịch bệnh cho gia súc, gia cầm."

// SpeechClip returns d of speech at 48 kHz: speak(Announcement) looped
// with 400 ms pauses. If speak fails (no espeak-ng), it falls back to a
// synthetic voice-like signal (see SyntheticSpeech) and says so in source.
func SpeechClip(ctx context.Context, speak SpeakFunc, d float64) (pcm []float32, source string) {
	n := int(d * Rate)
	var unit []float32
	source = "espeak-ng -v vi"
	if speak != nil {
		if u, err := speak(ctx, Announcement, "vi"); err == nil && len(u) > Rate/2 {
			unit = append(u, make([]float32, Rate*4/10)...)
		}
	}
	if unit == nil {
		return SyntheticSpeech(n), "synthetic voice-like signal (espeak-ng unavailable)"
	}
	pcm = make([]float32, n)
	for i := range pcm {
		pcm[i] = unit[i%len(unit)]
	}
	return pcm, source
}

// SyntheticSpeech is a speech-like signal: a harmonic-rich voice at a
// gliding pitch of 110–160 Hz, in syllables of about 4 Hz with pauses, so
// that Opus spends bits on it as it would on a voice.
func SyntheticSpeech(n int) []float32 {
	out := make([]float32, n)
	phase := 0.0
	for i := range out {
		t := float64(i) / Rate
		f0 := 135 + 25*math.Sin(2*math.Pi*0.7*t)
		phase += 2 * math.Pi * f0 / Rate
		var v float64
		for h := 1; h <= 12; h++ {
			// A formant-ish envelope around 500 Hz and 1.5 kHz.
			fh := f0 * float64(h)
			g := math.Exp(-math.Pow((fh-500)/300, 2)) + 0.5*math.Exp(-math.Pow((fh-1500)/400, 2)) + 0.05
			v += g * math.Sin(float64(h)*phase) / float64(h)
		}
		syl := math.Max(0, math.Sin(2*math.Pi*4*t))
		if math.Mod(t, 3) > 2.6 {
			syl = 0 // a pause between phrases
		}
		out[i] = float32(0.3 * v * syl)
	}
	return out
}
