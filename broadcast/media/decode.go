package media

import (
	"bytes"
	"errors"
	"fmt"
	"time"
)

// Format names a container/codec that Decode recognises by its magic bytes.
type Format string

// The formats Decode recognises.
const (
	FormatWAV     Format = "wav"
	FormatMP3     Format = "mp3"
	FormatOggOpus Format = "ogg-opus"
)

// Audio is decoded audio: mono float32 samples (nominally in [-1, 1]) at
// Rate Hz, plus what the source was.
type Audio struct {
	// Samples holds the mono signal; multichannel sources are averaged.
	Samples []float32
	// Rate is the sample rate of Samples in Hz.
	Rate int
	// Channels is the channel count of the source before the downmix.
	Channels int
	// Format is the detected source format.
	Format Format
}

// Duration returns the length of the audio.
func (a Audio) Duration() time.Duration {
	if a.Rate <= 0 {
		return 0
	}
	return time.Duration(len(a.Samples)) * time.Second / time.Duration(a.Rate)
}

// Detect returns the format of data judged by its content (magic bytes), never
// by a file name: "RIFF....WAVE" for WAV (RIFF spec), "OggS" whose first
// packet starts with "OpusHead" for Ogg Opus (RFC 7845 §5.1), and an ID3v2 tag
// or a valid MPEG audio frame sync for MP3 (ISO/IEC 11172-3 §2.4.2.3).
func Detect(data []byte) (Format, error) {
	switch {
	case len(data) == 0:
		return "", ErrEmpty
	case len(data) >= 12 && string(data[0:4]) == "RIFF" && string(data[8:12]) == "WAVE":
		return FormatWAV, nil
	case len(data) >= 4 && string(data[0:4]) == "OggS":
		if len(data) >= 36 && bytes.Contains(data[:min(len(data), 512)], []byte("OpusHead")) {
			return FormatOggOpus, nil
		}
		return "", fmt.Errorf("ogg: stream is not Opus (Vorbis/FLAC/Speex in Ogg are not supported); convert to Opus, MP3 or WAV: %w", ErrUnsupported)
	case len(data) >= 3 && string(data[0:3]) == "ID3":
		return FormatMP3, nil
	case len(data) >= 4 && data[0] == 0xFF && data[1]&0xE0 == 0xE0:
		if _, err := parseFrameHeader(data); err == nil {
			return FormatMP3, nil
		}
	case len(data) >= 4 && string(data[0:4]) == "RIFF":
		return "", fmt.Errorf("riff: not a WAVE file (AVI or other RIFF types are not audio uploads): %w", ErrUnsupported)
	case len(data) >= 4 && string(data[0:4]) == "fLaC":
		return "", fmt.Errorf("flac is not supported; convert to WAV, MP3 (44.1/48 kHz) or Opus: %w", ErrUnsupported)
	case len(data) >= 12 && string(data[4:8]) == "ftyp":
		return "", fmt.Errorf("mp4/m4a (AAC) is not supported; convert to WAV, MP3 (44.1/48 kHz) or Opus: %w", ErrUnsupported)
	}
	if looksLikeMP3(data) {
		return FormatMP3, nil
	}
	return "", fmt.Errorf("unrecognised audio format (expected WAV, MP3 or Ogg Opus): %w", ErrUnsupported)
}

// looksLikeMP3 accepts MP3 files that begin with a little junk (padding
// bytes, a damaged tag) if two consecutive valid frame headers follow within
// the first 16 KiB.
func looksLikeMP3(data []byte) bool {
	fr := newFrameReader(bytes.NewReader(data[:min(len(data), 16<<10)]))
	_, _, err := fr.next()
	if err == nil || errors.Is(err, ErrUnsupported) {
		// ErrUnsupported: valid frames of a kind we refuse, still MP3-family,
		// so the decoder can name the reason.
		return true
	}
	return false
}

// Decode detects the format of data, checks the declared duration against
// maxDuration (0 means no limit) before doing the expensive work, and decodes
// it to mono float32 at the source's sample rate. Errors wrap ErrEmpty,
// ErrUnsupported, ErrCorrupt or ErrTooLong.
func Decode(data []byte, maxDuration time.Duration) (Audio, error) {
	f, err := Detect(data)
	if err != nil {
		return Audio{}, err
	}
	var a Audio
	switch f {
	case FormatWAV:
		a, err = decodeWAV(data, maxDuration, false)
	case FormatMP3:
		a, err = decodeMP3(data, maxDuration)
	case FormatOggOpus:
		a, err = decodeOggOpus(data, maxDuration)
	}
	if err != nil {
		return Audio{}, err
	}
	a.Format = f
	if maxDuration > 0 && a.Duration() > maxDuration {
		return Audio{}, tooLong(a.Duration(), maxDuration)
	}
	if len(a.Samples) == 0 {
		return Audio{}, fmt.Errorf("%s: no audio samples: %w", f, ErrEmpty)
	}
	return a, nil
}

func tooLong(got, limit time.Duration) error {
	return fmt.Errorf("audio is %s long, the limit is %s: %w", got.Round(time.Second), limit, ErrTooLong)
}

// durationOf converts a sample count at rate to a duration without overflow
// for any count a 32-bit length field can declare.
func durationOf(samples int64, rate int) time.Duration {
	if rate <= 0 {
		return 0
	}
	return time.Duration(float64(samples) / float64(rate) * float64(time.Second))
}
