package media

import (
	"bytes"
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/loalang/loalang/internal/audiotest"
	"gopkg.in/hraban/opus.v2"
)

// sineAmpAt returns the peak amplitude of a ~1 kHz sine measuring lufs:
// BS.1770-4 §2.1 calibrates a 0 dBFS 997 Hz sine to read -3.01 LKFS.
func sineAmpAt(lufs float64) float64 { return math.Pow(10, (lufs+3.01)/20) }

// decodePackets decodes Opus packets with libopus (an independent decoder
// path from the encoder under test) and drops the pre-skip.
func decodePackets(t testing.TB, packets [][]byte) []float32 {
	t.Helper()
	dec, err := opus.NewDecoder(OpusRate, 1)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]float32, maxOpusPacketSamples)
	var out []float32
	for i, p := range packets {
		n, err := dec.DecodeFloat32(p, buf)
		if err != nil {
			t.Fatalf("decode packet %d: %v", i, err)
		}
		out = append(out, buf[:n]...)
	}
	if len(out) < opusPreSkip {
		t.Fatalf("decoded only %d samples", len(out))
	}
	return out[opusPreSkip:]
}

// middle returns the central part of pcm, away from fades and filter edges.
func middle(pcm []float32) []float32 {
	return pcm[len(pcm)/5 : len(pcm)*4/5]
}

func newTestLibrary(t testing.TB, mod func(*Config)) *Library {
	t.Helper()
	cfg := Config{Dir: t.TempDir()}
	if mod != nil {
		mod(&cfg)
	}
	lib, err := NewLibrary(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return lib
}

// checkTone asserts that pcm (48 kHz) holds a 1 kHz tone of amplitude want
// (within 10%) and nothing at unrelated frequencies.
func checkTone(t *testing.T, pcm []float32, want float64) {
	t.Helper()
	m := middle(pcm)
	got := audiotest.Goertzel(m, OpusRate, 1000)
	if math.Abs(got-want) > 0.1*want {
		t.Errorf("1 kHz amplitude %.4f, want %.4f ±10%%", got, want)
	}
	for _, f := range []float64{250, 3100, 5000, 7000} {
		if g := audiotest.Goertzel(m, OpusRate, f); g > 0.01*want {
			t.Errorf("energy at %.0f Hz: %.5f (tone %.4f)", f, g, got)
		}
	}
}

// needTool skips the test if an external tool used to make fixtures is
// missing; `make test` installs them.
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed", name)
	}
	return p
}

// ffmpegMake runs ffmpeg with args (output last, relative to a temp dir) and
// returns the produced file's bytes.
func ffmpegMake(t testing.TB, out string, args ...string) []byte {
	t.Helper()
	ff := needTool(t, "ffmpeg")
	path := filepath.Join(t.TempDir(), out)
	args = append(append([]string{"-hide_banner", "-loglevel", "error", "-y"}, args...), path)
	cmd := exec.CommandContext(context.Background(), ff, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ffmpeg %v: %v\n%s", args, err, stderr.String())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
