package media

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/loalang/loalang/internal/audiotest"
)

func TestSpeak(t *testing.T) {
	if _, err := exec.LookPath(espeakBinary); err != nil {
		t.Skip("espeak-ng not installed")
	}
	// A text that starts with '-' must be spoken, not parsed as an option.
	pcm, err := Speak(context.Background(), "--help Xin chào bà con, chiều nay có họp thôn.", "")
	if err != nil {
		t.Fatal(err)
	}
	secs := float64(len(pcm)) / OpusRate
	if secs < 1 || secs > 15 {
		t.Fatalf("speech lasts %.1f s", secs)
	}
	if rms := audiotest.RMS(pcm); rms < 0.01 {
		t.Fatalf("speech RMS %.4f: silent", rms)
	}
	// Speech energy sits in the voice band, not in a DC offset.
	if g := audiotest.Goertzel(pcm, OpusRate, 0); g > 0.05 {
		t.Errorf("DC %.3f", g)
	}
	lib := newTestLibrary(t, nil)
	info, err := lib.ImportPCM(context.Background(), "tts", pcm)
	if err != nil {
		t.Fatal(err)
	}
	pkts, err := lib.Packets(info.ID)
	if err != nil {
		t.Fatal(err)
	}
	out := decodePackets(t, pkts)
	lufs, ok := IntegratedLoudness(out)
	if !ok || lufs < DefaultTargetLUFS-3 || lufs > DefaultTargetLUFS+1 {
		t.Errorf("stored speech measures %.1f LUFS (ok=%v), want about %.0f", lufs, ok, DefaultTargetLUFS)
	}
}

func TestSpeakRejects(t *testing.T) {
	ctx := context.Background()
	if _, err := Speak(ctx, "  \n", ""); !errors.Is(err, ErrEmpty) {
		t.Errorf("blank: %v", err)
	}
	if _, err := Speak(ctx, strings.Repeat("a", MaxTextRunes+1), ""); !errors.Is(err, ErrTooLong) {
		t.Errorf("long: %v", err)
	}
	for _, v := range []string{"--stdin", "vi; rm -rf /", "../x"} {
		if _, err := Speak(ctx, "xin chào", v); !errors.Is(err, ErrUnsupported) {
			t.Errorf("voice %q: %v", v, err)
		}
	}
}

func TestSpeakUnavailable(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, err := Speak(context.Background(), "xin chào", "vi"); !errors.Is(err, ErrTTSUnavailable) {
		t.Fatalf("got %v, want ErrTTSUnavailable", err)
	}
}
