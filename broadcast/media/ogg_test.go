package media

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/loalang/loalang/internal/audiotest"
)

func TestImportOggOpusFromFFmpeg(t *testing.T) {
	// Stereo 44.1 kHz source: ffmpeg resamples to 48 kHz, sets pre-skip
	// and trims the end with the last granule position.
	data := ffmpegMake(t, "t.opus", "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=44100:duration=2",
		"-af", "pan=stereo|c0=c0|c1=c0", "-c:a", "libopus", "-b:a", "64k")
	a, err := Decode(data, 0)
	if err != nil {
		t.Fatal(err)
	}
	if a.Format != FormatOggOpus || a.Rate != 48000 || a.Channels != 2 {
		t.Errorf("format %s rate %d channels %d", a.Format, a.Rate, a.Channels)
	}
	if len(a.Samples) != 96000 {
		t.Errorf("%d samples, want 96000 (pre-skip and end trim honoured)", len(a.Samples))
	}
	if g := audiotest.Goertzel(middle(a.Samples), 48000, 1000); g < 0.118 || g > 0.132 {
		t.Errorf("tone %.4f, want 0.125", g)
	}
	lib := newTestLibrary(t, nil)
	info, err := lib.Import(context.Background(), "t.opus", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	pkts, err := lib.Packets(info.ID)
	if err != nil {
		t.Fatal(err)
	}
	checkTone(t, decodePackets(t, pkts), sineAmpAt(DefaultTargetLUFS))
}

func TestOggRejects(t *testing.T) {
	opusFile := ffmpegMake(t, "t.opus", "-f", "lavfi", "-i", "sine=frequency=1000:duration=1", "-c:a", "libopus")
	flipped := bytes.Clone(opusFile)
	flipped[len(flipped)-10] ^= 0x55
	if _, err := Decode(flipped, 0); !errors.Is(err, ErrCorrupt) {
		t.Errorf("flipped byte: %v, want ErrCorrupt", err)
	}
	if _, err := Decode(opusFile[:len(opusFile)-20], 0); !errors.Is(err, ErrCorrupt) {
		t.Errorf("truncated: %v, want ErrCorrupt", err)
	}
	vorbis := ffmpegMake(t, "t.ogg", "-f", "lavfi", "-i", "sine=frequency=1000:duration=1", "-c:a", "libvorbis")
	if _, err := Decode(vorbis, 0); !errors.Is(err, ErrUnsupported) {
		t.Errorf("vorbis: %v, want ErrUnsupported", err)
	}
}

func TestOggWriterRoundTrip(t *testing.T) {
	// Packets of awkward sizes (255 needs a 0 lacing value; 600 spans
	// several) survive the writer and reader unchanged.
	var pkts [][]byte
	for i, n := range []int{1, 254, 255, 256, 600, 0, 3000} {
		pkts = append(pkts, bytes.Repeat([]byte{byte(i + 1)}, n))
	}
	var buf bytes.Buffer
	if err := writeOggOpus(&buf, 42, pkts, 1000); err != nil {
		t.Fatal(err)
	}
	got, err := readOggStream(buf.Bytes(), "OpusHead")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(pkts)+2 {
		t.Fatalf("%d packets, want %d", len(got), len(pkts)+2)
	}
	for i, p := range pkts {
		if !bytes.Equal(got[i+2].Data, p) {
			t.Fatalf("packet %d differs", i)
		}
	}
	last := got[len(got)-1]
	if !last.EOS || last.Granule != opusPreSkip+1000 {
		t.Errorf("last packet EOS=%v granule %d", last.EOS, last.Granule)
	}
}
