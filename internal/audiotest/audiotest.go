// Package audiotest holds small, dependency-free helpers that tests across
// loalang use to make and check audio: a sine generator, a 16-bit PCM WAV
// writer and reader, and a Goertzel single-bin detector that reports the
// amplitude of one frequency.
//
// It is imported only from _test files; nothing in the daemon depends on it.
package audiotest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Tone returns ms milliseconds of a sine of frequency freq (Hz) and peak
// amplitude amp (1.0 is full scale) sampled at rate Hz, as mono float32
// samples starting at phase 0.
func Tone(freq, amp float64, rate, ms int) []float32 {
	n := rate * ms / 1000
	out := make([]float32, n)
	w := 2 * math.Pi * freq / float64(rate)
	for i := range out {
		out[i] = float32(amp * math.Sin(w*float64(i)))
	}
	return out
}

// WAV encodes mono float32 samples as a canonical RIFF/WAVE file with 16-bit
// signed little-endian PCM (WAVE_FORMAT_PCM, tag 1) at the given sample
// rate. With channels > 1 the mono signal is copied into every channel, so a
// downmixing reader gets the original signal back. Samples are clipped to
// [-1, 1] and rounded.
func WAV(pcm []float32, rate, channels int) []byte {
	if channels < 1 {
		channels = 1
	}
	dataLen := len(pcm) * 2 * channels
	b := make([]byte, 44+dataLen)
	copy(b[0:], "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+dataLen))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)
	binary.LittleEndian.PutUint16(b[20:], 1)
	binary.LittleEndian.PutUint16(b[22:], uint16(channels))
	binary.LittleEndian.PutUint32(b[24:], uint32(rate))
	binary.LittleEndian.PutUint32(b[28:], uint32(rate*2*channels))
	binary.LittleEndian.PutUint16(b[32:], uint16(2*channels))
	binary.LittleEndian.PutUint16(b[34:], 16)
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(dataLen))
	off := 44
	for _, s := range pcm {
		v := math.Round(float64(s) * 32767)
		v = math.Max(-32768, math.Min(32767, v))
		for c := 0; c < channels; c++ {
			binary.LittleEndian.PutUint16(b[off:], uint16(int16(v)))
			off += 2
		}
	}
	return b
}

// ParseWAV decodes a RIFF/WAVE file holding 16-bit integer PCM (format tag 1)
// or 32-bit IEEE float (format tag 3) and returns the samples averaged to
// mono, the sample rate and the channel count. It is meant for reading back
// test output (for example oto's or a simulator's captures), not for
// untrusted uploads; the media package has the hardened parser.
func ParseWAV(b []byte) (pcm []float32, rate, channels int, err error) {
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return nil, 0, 0, errors.New("audiotest: not a RIFF/WAVE file")
	}
	var format, bits int
	var data []byte
	for off := 12; off+8 <= len(b); {
		id := string(b[off : off+4])
		size := int(binary.LittleEndian.Uint32(b[off+4:]))
		body := b[off+8:]
		if size > len(body) {
			size = len(body)
		}
		switch id {
		case "fmt ":
			if size < 16 {
				return nil, 0, 0, errors.New("audiotest: short fmt chunk")
			}
			format = int(binary.LittleEndian.Uint16(body[0:]))
			channels = int(binary.LittleEndian.Uint16(body[2:]))
			rate = int(binary.LittleEndian.Uint32(body[4:]))
			bits = int(binary.LittleEndian.Uint16(body[14:]))
			if format == 0xFFFE && size >= 26 {
				format = int(binary.LittleEndian.Uint16(body[24:]))
			}
		case "data":
			data = body[:size]
		}
		off += 8 + size + size&1
	}
	if channels < 1 || data == nil {
		return nil, 0, 0, errors.New("audiotest: missing fmt or data chunk")
	}
	switch {
	case format == 1 && bits == 16:
		frames := len(data) / (2 * channels)
		pcm = make([]float32, frames)
		for i := range pcm {
			var sum float32
			for c := 0; c < channels; c++ {
				sum += float32(int16(binary.LittleEndian.Uint16(data[(i*channels+c)*2:]))) / 32768
			}
			pcm[i] = sum / float32(channels)
		}
	case format == 3 && bits == 32:
		frames := len(data) / (4 * channels)
		pcm = make([]float32, frames)
		for i := range pcm {
			var sum float32
			for c := 0; c < channels; c++ {
				sum += math.Float32frombits(binary.LittleEndian.Uint32(data[(i*channels+c)*4:]))
			}
			pcm[i] = sum / float32(channels)
		}
	default:
		return nil, 0, 0, fmt.Errorf("audiotest: unsupported WAV format %d with %d bits", format, bits)
	}
	return pcm, rate, channels, nil
}

// Goertzel returns the amplitude of the frequency freq (Hz) in samples taken
// at rate Hz, using the Goertzel algorithm (a single DFT bin) over a Hann
// window. The result is scaled so that a sine of peak amplitude A at exactly
// freq yields approximately A, whatever the length of samples; the Hann
// window keeps leakage from other tones more than a few bins away far below
// that. It returns 0 for an empty slice.
func Goertzel(samples []float32, rate int, freq float64) float64 {
	n := len(samples)
	if n == 0 {
		return 0
	}
	w := 2 * math.Pi * freq / float64(rate)
	c := 2 * math.Cos(w)
	var s1, s2, wsum float64
	for i, v := range samples {
		win := 0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/float64(n))
		wsum += win
		s0 := float64(v)*win + c*s1 - s2
		s2 = s1
		s1 = s0
	}
	p := s1*s1 + s2*s2 - c*s1*s2
	if p < 0 {
		p = 0
	}
	return 2 * math.Sqrt(p) / wsum
}

// RMS returns the root-mean-square level of samples, or 0 for an empty
// slice.
func RMS(samples []float32) float64 {
	if len(samples) == 0 {
		return 0
	}
	var e float64
	for _, v := range samples {
		e += float64(v) * float64(v)
	}
	return math.Sqrt(e / float64(len(samples)))
}
