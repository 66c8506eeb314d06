package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loalang/loalang/internal/audiotest"
)

func TestImportWAVTone(t *testing.T) {
	lib := newTestLibrary(t, nil)
	want := sineAmpAt(DefaultTargetLUFS)
	for _, rate := range []int{8000, 16000, 44100, 48000} {
		for _, ch := range []int{1, 2} {
			t.Run(fmt.Sprintf("%dHz_%dch", rate, ch), func(t *testing.T) {
				tone := audiotest.Tone(1000, 0.3, rate, 1500)
				info, err := lib.Import(context.Background(), "tone.wav", bytes.NewReader(audiotest.WAV(tone, rate, ch)))
				if err != nil {
					t.Fatal(err)
				}
				if info.Codec != "opus" || info.SampleRate != 48000 || info.FrameMS != 20 || info.Bitrate != DefaultBitrate {
					t.Errorf("info = %+v", info)
				}
				if info.DurationMS < 1499 || info.DurationMS > 1500 {
					t.Errorf("duration %d ms, want 1500", info.DurationMS)
				}
				pkts, err := lib.Packets(info.ID)
				if err != nil {
					t.Fatal(err)
				}
				if len(pkts) != info.Packets || len(pkts) != (72000+opusPreSkip+959)/960 {
					t.Errorf("%d packets, info says %d", len(pkts), info.Packets)
				}
				checkTone(t, decodePackets(t, pkts), want)
			})
		}
	}
}

func TestImportIsContentAddressed(t *testing.T) {
	lib := newTestLibrary(t, nil)
	wav := audiotest.WAV(audiotest.Tone(440, 0.5, 16000, 500), 16000, 1)
	a, err := lib.Import(context.Background(), "a.wav", bytes.NewReader(wav))
	if err != nil {
		t.Fatal(err)
	}
	b, err := lib.Import(context.Background(), "b.wav", bytes.NewReader(wav))
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != b.ID || a.SourceSHA256 != b.SourceSHA256 {
		t.Fatalf("same content gave IDs %s and %s", a.ID, b.ID)
	}
	if b.SourceName != "b.wav" {
		t.Errorf("source name %q", b.SourceName)
	}
	files, _ := filepath.Glob(filepath.Join(lib.cfg.Dir, "*"))
	if len(files) != 1 || filepath.Base(files[0]) != a.ID+".opus" {
		t.Fatalf("library holds %v", files)
	}
	if err := lib.Remove(a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := lib.Packets(a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after remove: %v", err)
	}
	if _, err := lib.Packets("../../etc/passwd"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("bad id: %v", err)
	}
}

func TestImportRejects(t *testing.T) {
	lib := newTestLibrary(t, func(c *Config) {
		c.MaxBytes = 200 << 10
		c.MaxDuration = 2 * time.Second
	})
	wav := audiotest.WAV(audiotest.Tone(1000, 0.5, 8000, 1000), 8000, 1)
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrEmpty},
		{"truncated", wav[:len(wav)-100], ErrCorrupt},
		{"bad header", append([]byte("RIFF\x00\x00\x00\x00WAVEjunk"), make([]byte, 40)...), ErrCorrupt},
		{"too large", make([]byte, 200<<10+1), ErrTooLarge},
		{"too long", audiotest.WAV(audiotest.Tone(1000, 0.5, 8000, 3000), 8000, 1), ErrTooLong},
		{"silent", audiotest.WAV(make([]float32, 8000), 8000, 1), ErrSilent},
		{"text", []byte("hello, this is not audio at all"), ErrUnsupported},
		{"flac", []byte("fLaC\x00\x00\x00\x22rest"), ErrUnsupported},
		{"3 channels", wav3ch(), ErrUnsupported},
		{"6 kHz", audiotest.WAV(audiotest.Tone(1000, 0.5, 6000, 500), 6000, 1), ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := lib.Import(context.Background(), tt.name, bytes.NewReader(tt.data))
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			t.Logf("%v", err)
		})
	}
	if files, _ := filepath.Glob(filepath.Join(lib.cfg.Dir, "*")); len(files) != 0 {
		t.Errorf("rejected imports left files: %v", files)
	}
}

// countingReader counts bytes read, to prove an oversize upload is not read
// to the end.
type countingReader struct{ n int64 }

func (c *countingReader) Read(p []byte) (int, error) {
	clear(p)
	c.n += int64(len(p))
	return len(p), nil
}

func TestImportStopsReadingOversize(t *testing.T) {
	lib := newTestLibrary(t, func(c *Config) { c.MaxBytes = 1 << 20 })
	cr := &countingReader{}
	_, err := lib.Import(context.Background(), "endless", cr)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v", err)
	}
	if cr.n > 2<<20 {
		t.Fatalf("read %d bytes of an endless upload", cr.n)
	}
}

func wav3ch() []byte {
	b := audiotest.WAV(audiotest.Tone(1000, 0.5, 8000, 300), 8000, 3)
	return b
}

func TestWAVSampleFormats(t *testing.T) {
	// ffmpeg writes each integer/float layout; the decoder must read the
	// same tone from all of them.
	for _, codec := range []string{"pcm_u8", "pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le", "pcm_f64le"} {
		t.Run(codec, func(t *testing.T) {
			b := ffmpegMake(t, "t.wav", "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=22050:duration=1",
				"-af", "volume=4,pan=stereo|c0=c0|c1=c0", "-c:a", codec)
			a, err := Decode(b, 0)
			if err != nil {
				t.Fatal(err)
			}
			if a.Rate != 22050 || a.Channels != 2 || len(a.Samples) != 22050 {
				t.Fatalf("rate %d channels %d samples %d", a.Rate, a.Channels, len(a.Samples))
			}
			// lavfi sine is 1/8 full scale; ×4 → 0.5.
			if g := audiotest.Goertzel(a.Samples, a.Rate, 1000); g < 0.48 || g > 0.52 {
				t.Errorf("tone amplitude %.3f, want 0.5", g)
			}
		})
	}
}

func TestStoredFileIsValidOggOpus(t *testing.T) {
	ffprobe := needTool(t, "ffprobe")
	lib := newTestLibrary(t, nil)
	info, err := lib.Import(context.Background(), "x.wav", bytes.NewReader(audiotest.WAV(audiotest.Tone(1000, 0.3, 44100, 1000), 44100, 2)))
	if err != nil {
		t.Fatal(err)
	}
	path, err := lib.Path(info.ID)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(ffprobe, "-v", "error", "-show_entries", "stream=codec_name,sample_rate,channels:format=duration",
		"-of", "default=noprint_wrappers=1", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v\n%s", err, out)
	}
	s := string(out)
	for _, want := range []string{"codec_name=opus", "sample_rate=48000", "channels=1", "duration=1.0"} {
		if !strings.Contains(s, want) {
			t.Errorf("ffprobe output lacks %q:\n%s", want, s)
		}
	}
	// ffprobe's duration includes the 6.5 ms pre-skip; ffmpeg's decoder
	// honours pre-skip and the end granule, so it yields exactly 1 s.
	dec := exec.Command("ffmpeg", "-v", "error", "-i", path, "-f", "wav", "-c:a", "pcm_s16le", "-")
	wav, err := dec.Output()
	if err != nil {
		t.Fatalf("ffmpeg decode: %v", err)
	}
	pcm, rate, _, err := audiotest.ParseWAV(wav)
	if err != nil {
		t.Fatal(err)
	}
	if rate != 48000 || len(pcm) != 48000 {
		t.Errorf("ffmpeg decoded %d samples at %d Hz, want 48000 at 48000", len(pcm), rate)
	}
	checkTone(t, pcm, sineAmpAt(DefaultTargetLUFS))
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}

func TestImportConcurrentSameContent(t *testing.T) {
	lib := newTestLibrary(t, nil)
	wav := audiotest.WAV(audiotest.Tone(1000, 0.3, 16000, 800), 16000, 1)
	ids := make(chan string, 3)
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			info, err := lib.Import(context.Background(), "same.wav", bytes.NewReader(wav))
			ids <- info.ID
			errs <- err
		}()
	}
	first := ""
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		id := <-ids
		if first == "" {
			first = id
		} else if id != first {
			t.Fatalf("IDs differ: %s %s", first, id)
		}
	}
	if files, _ := filepath.Glob(filepath.Join(lib.cfg.Dir, "*")); len(files) != 1 {
		t.Fatalf("library holds %v", files)
	}
}

func TestImportCancelled(t *testing.T) {
	lib := newTestLibrary(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := lib.Import(ctx, "x.wav", bytes.NewReader(audiotest.WAV(audiotest.Tone(1000, 0.3, 16000, 800), 16000, 1)))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestImportPCMRejects(t *testing.T) {
	lib := newTestLibrary(t, func(c *Config) { c.MaxDuration = time.Second })
	ctx := context.Background()
	if _, err := lib.ImportPCM(ctx, "tts", nil); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty: %v", err)
	}
	if _, err := lib.ImportPCM(ctx, "tts", make([]float32, 2*OpusRate)); !errors.Is(err, ErrTooLong) {
		t.Errorf("long: %v", err)
	}
	if _, err := lib.ImportPCM(ctx, "tts", make([]float32, OpusRate/2)); !errors.Is(err, ErrSilent) {
		t.Errorf("silent: %v", err)
	}
}
