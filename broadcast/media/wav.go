package media

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// WAV limits. Rates outside 8–48 kHz are refused: below 8 kHz speech is
// unintelligible, and above 48 kHz there is nothing a loudspeaker can use.
const (
	minRate = 8000
	maxRate = 48000
)

// WAVE format tags (Microsoft RIFF/WAVE; RFC 2361 lists the registry).
const (
	wavePCM        = 0x0001
	waveFloat      = 0x0003
	waveExtensible = 0xFFFE
)

// streamingDataSize values are written by tools that stream WAV to a pipe
// before they know the length (espeak-ng writes 0x7ffff000, others 0 or
// 0xffffffff). They are honoured only in lenient mode, for our own TTS.
func isStreamingSize(n uint32) bool {
	return n == 0 || n == 0xFFFFFFFF || n == 0x7FFFF000 || n == 0x7FFFFFFF
}

// decodeWAV parses a RIFF/WAVE file holding 8/16/24/32-bit integer PCM or
// 32/64-bit IEEE float, mono or stereo, at 8–48 kHz, and averages the
// channels to mono. In lenient mode a data chunk whose size is a streaming
// placeholder runs to the end of the file; otherwise a data chunk shorter
// than declared is ErrCorrupt.
func decodeWAV(b []byte, maxDuration time.Duration, lenient bool) (Audio, error) {
	if len(b) == 0 {
		return Audio{}, fmt.Errorf("wav: %w", ErrEmpty)
	}
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return Audio{}, fmt.Errorf("wav: missing RIFF/WAVE header: %w", ErrCorrupt)
	}
	var (
		haveFmt                       bool
		format, channels, bits, align int
		rate                          int
		data                          []byte
	)
	off := 12
	for data == nil {
		if off+8 > len(b) {
			if !haveFmt {
				return Audio{}, fmt.Errorf("wav: no fmt chunk: %w", ErrCorrupt)
			}
			return Audio{}, fmt.Errorf("wav: no data chunk: %w", ErrCorrupt)
		}
		id := string(b[off : off+4])
		size := binary.LittleEndian.Uint32(b[off+4:])
		body := b[off+8:]
		switch id {
		case "fmt ":
			if size < 16 || int64(size) > int64(len(body)) {
				return Audio{}, fmt.Errorf("wav: fmt chunk of %d bytes is malformed: %w", size, ErrCorrupt)
			}
			format = int(binary.LittleEndian.Uint16(body[0:]))
			channels = int(binary.LittleEndian.Uint16(body[2:]))
			rate = int(binary.LittleEndian.Uint32(body[4:]))
			align = int(binary.LittleEndian.Uint16(body[12:]))
			bits = int(binary.LittleEndian.Uint16(body[14:]))
			if format == waveExtensible {
				// WAVEFORMATEXTENSIBLE: cbSize(2) validBits(2) mask(4) GUID(16);
				// the GUID's first two bytes are the real format tag.
				if size < 40 {
					return Audio{}, fmt.Errorf("wav: short WAVE_FORMAT_EXTENSIBLE chunk: %w", ErrCorrupt)
				}
				format = int(binary.LittleEndian.Uint16(body[24:]))
			}
			haveFmt = true
		case "data":
			if !haveFmt {
				return Audio{}, fmt.Errorf("wav: data chunk before fmt chunk: %w", ErrCorrupt)
			}
			switch {
			case int64(size) <= int64(len(body)):
				data = body[:size]
			case lenient && isStreamingSize(size):
				data = body
			default:
				return Audio{}, fmt.Errorf("wav: data chunk declares %d bytes but only %d are present (truncated upload?): %w", size, len(body), ErrCorrupt)
			}
			continue
		}
		next := int64(off) + 8 + int64(size) + int64(size&1)
		if next > int64(len(b)) {
			return Audio{}, fmt.Errorf("wav: chunk %q overruns the file: %w", sanitizeID(id), ErrCorrupt)
		}
		off = int(next)
	}
	if channels != 1 && channels != 2 {
		return Audio{}, fmt.Errorf("wav: %d channels are not supported (mono or stereo only): %w", channels, ErrUnsupported)
	}
	if rate < minRate || rate > maxRate {
		return Audio{}, fmt.Errorf("wav: sample rate %d Hz is not supported (8000–48000 Hz): %w", rate, ErrUnsupported)
	}
	var conv func([]byte) float32
	switch {
	case format == wavePCM && bits == 8:
		conv = func(p []byte) float32 { return (float32(p[0]) - 128) / 128 }
	case format == wavePCM && bits == 16:
		conv = func(p []byte) float32 { return float32(int16(binary.LittleEndian.Uint16(p))) / 32768 }
	case format == wavePCM && bits == 24:
		conv = func(p []byte) float32 {
			v := int32(uint32(p[0])<<8|uint32(p[1])<<16|uint32(p[2])<<24) >> 8
			return float32(v) / 8388608
		}
	case format == wavePCM && bits == 32:
		conv = func(p []byte) float32 { return float32(float64(int32(binary.LittleEndian.Uint32(p))) / 2147483648) }
	case format == waveFloat && bits == 32:
		conv = func(p []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(p)) }
	case format == waveFloat && bits == 64:
		conv = func(p []byte) float32 { return float32(math.Float64frombits(binary.LittleEndian.Uint64(p))) }
	case format == wavePCM || format == waveFloat:
		return Audio{}, fmt.Errorf("wav: %d-bit samples are not supported: %w", bits, ErrUnsupported)
	default:
		return Audio{}, fmt.Errorf("wav: format tag 0x%04x is not supported (PCM or IEEE float only; ADPCM/µ-law/A-law are not): %w", format, ErrUnsupported)
	}
	bps := bits / 8
	if align != bps*channels {
		return Audio{}, fmt.Errorf("wav: block align %d does not match %d channels of %d bits: %w", align, channels, bits, ErrCorrupt)
	}
	frames := len(data) / align
	if maxDuration > 0 {
		if d := durationOf(int64(frames), rate); d > maxDuration {
			return Audio{}, tooLong(d, maxDuration)
		}
	}
	out := make([]float32, frames)
	for i := range out {
		p := data[i*align:]
		var s float32
		for c := 0; c < channels; c++ {
			v := conv(p[c*bps:])
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return Audio{}, fmt.Errorf("wav: sample %d is not a finite number: %w", i, ErrCorrupt)
			}
			s += v
		}
		out[i] = s / float32(channels)
	}
	return Audio{Samples: out, Rate: rate, Channels: channels, Format: FormatWAV}, nil
}

// sanitizeID keeps a chunk ID printable for an error message.
func sanitizeID(id string) string {
	r := []byte(id)
	for i, c := range r {
		if c < 0x20 || c > 0x7e {
			r[i] = '?'
		}
	}
	return string(r)
}
