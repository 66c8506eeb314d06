package camera

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loalang/loalang/firmware-sim/camsim"
	"github.com/loalang/loalang/internal/whepview"
)

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("CAMERA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startSim starts a simulated camera on an ephemeral loopback port.
func startSim(t *testing.T, opts camsim.Options) (*camsim.Sim, string) {
	t.Helper()
	s, err := camsim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	url, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, url
}

func testConfig() Config {
	return Config{
		UDPPort:            0,
		ListenIP:           "127.0.0.1",
		LoopbackCandidates: true,
		HandshakeTimeout:   10 * time.Second,
		IdleClose:          300 * time.Millisecond,
		ReconnectMin:       100 * time.Millisecond,
		ReconnectMax:       400 * time.Millisecond,
	}
}

func newRelay(t *testing.T, cfg Config, cams ...Camera) *Relay {
	t.Helper()
	r, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("close relay: %v", err)
		}
	})
	r.SetCameras(cams)
	return r
}

// decodeFrames decodes H.264 Annex B with ffmpeg and returns the number of
// decoded frames.
func decodeFrames(t *testing.T, aus []whepview.AU) int {
	t.Helper()
	var buf bytes.Buffer
	for _, au := range aus {
		buf.Write(au.AnnexB)
	}
	path := filepath.Join(t.TempDir(), "viewer.h264")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v: %s", err, out)
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.Split(string(out), "\n")[0]))
	if err != nil {
		t.Fatalf("ffprobe output %q: %v", out, err)
	}
	return n
}

// watch offers from a new client and accepts the answer.
func watch(t *testing.T, r *Relay, camID string, cs []whepview.Codec) (*whepview.Viewer, Session, time.Time) {
	t.Helper()
	c := whepview.New(t, cs)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	sess, err := r.Offer(ctx, camID, c.Offer, "police-1")
	if err != nil {
		t.Fatalf("offer: %v", err)
	}
	c.Accept(sess.AnswerSDP)
	return c, sess, start
}

func requireFFprobe(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ffprobe"); err != nil {
		t.Skip("ffprobe not installed (apt install ffmpeg)")
	}
}
