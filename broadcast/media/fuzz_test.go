package media

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/loalang/loalang/internal/audiotest"
)

// isSentinel reports whether err is one of the package's input errors, the
// only kind a parser may return for bad input.
func isSentinel(err error) bool {
	for _, s := range []error{ErrEmpty, ErrTooLarge, ErrTooLong, ErrUnsupported, ErrCorrupt, ErrSilent} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func FuzzDecodeWAV(f *testing.F) {
	f.Add(audiotest.WAV(audiotest.Tone(1000, 0.5, 8000, 10), 8000, 1))
	f.Add(audiotest.WAV(audiotest.Tone(1000, 0.5, 48000, 5), 48000, 2))
	f.Add([]byte("RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x03\x00\x01\x00\x80\x3e\x00\x00\x00\xfa\x00\x00\x04\x00\x20\x00data\x00\x00\x00\x00"))
	f.Add([]byte("RIFF"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, lenient := range []bool{false, true} {
			a, err := decodeWAV(data, time.Minute, lenient)
			if err != nil {
				if !isSentinel(err) {
					t.Fatalf("non-sentinel error %v", err)
				}
				continue
			}
			if a.Rate < minRate || a.Rate > maxRate || a.Channels < 1 || a.Channels > 2 {
				t.Fatalf("accepted %+v", a)
			}
			if len(a.Samples)*a.Channels*1 > len(data) {
				t.Fatalf("%d samples from %d bytes", len(a.Samples), len(data))
			}
		}
	})
}

func FuzzMP3Frames(f *testing.F) {
	f.Add([]byte{0xFF, 0xFB, 0x90, 0x64})
	if b, err := os.ReadFile("testdata/tone44k.mp3"); err == nil {
		f.Add(b)
	}
	f.Add([]byte{0xFF, 0xF3, 0x40, 0xC4})
	f.Add(append([]byte("ID3\x04\x00\x00\x00\x00\x00\x02ab"), bytes.Repeat([]byte{0xFF, 0xFB, 0x10, 0xC4, 0, 0, 0, 0}, 40)...))
	f.Fuzz(func(t *testing.T, data []byte) {
		if h, err := parseFrameHeader(data); err == nil {
			if h.FrameSize() < 1 || h.SampleRate == 0 || h.Bitrate == 0 {
				t.Fatalf("bad header accepted: %+v", h)
			}
		}
		fr := newFrameReader(bytes.NewReader(data))
		total := 0
		for {
			h, frame, err := fr.next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !isSentinel(err) {
					t.Fatalf("non-sentinel error %v", err)
				}
				break
			}
			if len(frame) != h.FrameSize() {
				t.Fatalf("frame of %d bytes, header says %d", len(frame), h.FrameSize())
			}
			total += len(frame)
			if total > len(data) {
				t.Fatal("frames exceed input")
			}
			parseInfoFrame(h, frame)
			mainDataBegin(h, frame)
		}
		// The full decoder must also return cleanly (go-mp3 included).
		if _, err := decodeMP3(data, time.Minute); err != nil && !isSentinel(err) {
			t.Fatalf("decodeMP3: non-sentinel error %v", err)
		}
	})
}

func FuzzOggReader(f *testing.F) {
	var buf bytes.Buffer
	_ = writeOggOpus(&buf, 7, [][]byte{{0xF8, 0xFF, 0xFE}, bytes.Repeat([]byte{1}, 300)}, 960)
	f.Add(buf.Bytes())
	f.Add([]byte("OggS\x00\x02"))
	if b, err := os.ReadFile("testdata/tone.opus"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pkts, err := readOggStream(data, "OpusHead")
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("non-sentinel error %v", err)
			}
			return
		}
		n := 0
		for _, p := range pkts {
			n += len(p.Data)
		}
		if n > len(data) {
			t.Fatalf("%d packet bytes from %d input bytes", n, len(data))
		}
		if _, err := decodeOggOpus(data, time.Minute); err != nil && !isSentinel(err) {
			t.Fatalf("decodeOggOpus: non-sentinel error %v", err)
		}
	})
}

// FuzzDecode drives the whole front end (detection and every decoder) with
// the committed real files as seeds.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{"testdata/tone44k.mp3", "testdata/tone.opus"} {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Add(audiotest.WAV(audiotest.Tone(1000, 0.5, 8000, 10), 8000, 2))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := Decode(data, time.Minute)
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("non-sentinel error %v", err)
			}
			return
		}
		if len(a.Samples) == 0 || a.Rate < minRate || a.Rate > maxRate {
			t.Fatalf("accepted %d samples at %d Hz", len(a.Samples), a.Rate)
		}
	})
}
