package media

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loalang/loalang/internal/proctest"
)

// espeakChildren lists this process's espeak-ng children, read from /proc:
// the test observes the real processes, not a counter of the code under
// test.
func espeakChildren(t *testing.T) []int {
	t.Helper()
	return proctest.Children(espeakBinary)
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTTSConcurrencyLimit is issue 10: with one slot and a queue of two,
// four simultaneous long texts run one espeak-ng process at a time (seen in
// /proc), two wait and are spoken in turn, and the fourth is refused at
// once with ErrBusy.
func TestTTSConcurrencyLimit(t *testing.T) {
	if _, err := exec.LookPath(espeakBinary); err != nil {
		t.Skip("espeak-ng not installed")
	}
	tts := NewTTS(TTSConfig{Concurrency: 1, Queue: 2})
	text := strings.Repeat("Xin chào bà con, chiều nay có họp thôn. ", 10) // 400 characters
	var peak atomic.Int32
	stop := make(chan struct{})
	var watch sync.WaitGroup
	watch.Add(1)
	go func() {
		defer watch.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if n := int32(len(espeakChildren(t))); n > peak.Load() {
				peak.Store(n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	ctx := context.Background()
	errs := make(chan error, 3)
	var wg sync.WaitGroup
	speakOne := func() {
		defer wg.Done()
		pcm, err := tts.Speak(ctx, text, "")
		if err == nil && len(pcm) < OpusRate*3 {
			err = fmt.Errorf("only %d samples", len(pcm))
		}
		errs <- err
	}
	wg.Add(1)
	go speakOne()
	waitFor(t, 10*time.Second, "the first espeak-ng", func() bool { return len(espeakChildren(t)) == 1 })
	wg.Add(2)
	go speakOne()
	go speakOne()
	waitFor(t, 10*time.Second, "two requests queued", func() bool {
		tts.mu.Lock()
		defer tts.mu.Unlock()
		return tts.waiting == 2
	})
	start := time.Now()
	_, err := tts.Speak(ctx, text, "")
	if !errors.Is(err, ErrBusy) || time.Since(start) > time.Second {
		t.Fatalf("fourth request: %v after %v, want ErrBusy at once", err, time.Since(start))
	}
	wg.Wait()
	close(stop)
	watch.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("queued request: %v", err)
		}
	}
	if p := peak.Load(); p != 1 {
		t.Fatalf("%d espeak-ng processes ran at once, want 1", p)
	}
	t.Logf("3 requests spoken one at a time, the 4th refused: %v", err)
}

// TestTTSCancelKillsProcess: a cancelled request (the client went away)
// ends its espeak-ng process at once, and a request waiting in the queue
// leaves it.
func TestTTSCancelKillsProcess(t *testing.T) {
	if _, err := exec.LookPath(espeakBinary); err != nil {
		t.Skip("espeak-ng not installed")
	}
	tts := NewTTS(TTSConfig{Concurrency: 1, Queue: 1})
	text := strings.Repeat("Xin chào bà con, chiều nay có họp thôn. ", 100) // 4,000 characters
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := tts.Speak(ctx, text, ""); done <- err }()
	waitFor(t, 10*time.Second, "espeak-ng running", func() bool { return len(espeakChildren(t)) == 1 })
	// A second request waits for the slot, then gives up.
	wctx, wcancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer wcancel()
	if _, err := tts.Speak(wctx, "xin chào", ""); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting request: %v, want its deadline", err)
	}
	cancel()
	start := time.Now()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled request: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancelled request still running after 5 s")
	}
	waitFor(t, 2*time.Second, "espeak-ng gone", func() bool { return len(espeakChildren(t)) == 0 })
	t.Logf("espeak-ng ended %v after the cancel", time.Since(start).Round(time.Millisecond))
	tts.mu.Lock()
	defer tts.mu.Unlock()
	if tts.waiting != 0 || len(tts.slots) != 0 {
		t.Fatalf("slots %d, waiting %d after everything ended", len(tts.slots), tts.waiting)
	}
}

// TestTTSSpeaksInTheLanguage: the language picks the espeak-ng voice, not
// the configured one, and a language espeak-ng has no voice for is refused
// with ErrNoVoice before espeak-ng runs.
func TestTTSSpeaksInTheLanguage(t *testing.T) {
	if _, err := exec.LookPath("espeak-ng"); err != nil {
		t.Fatal("espeak-ng is not installed (make deps)")
	}
	ctx := context.Background()
	tts := NewTTS(TTSConfig{Voice: "en"})
	got, err := tts.Speak(ctx, "xin chào bà con", "vi")
	if err != nil {
		t.Fatal(err)
	}
	vi, err := Speak(ctx, "xin chào bà con", "vi")
	if err != nil {
		t.Fatal(err)
	}
	en, err := tts.Speak(ctx, "xin chào bà con", "")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, vi) || slices.Equal(got, en) {
		t.Errorf("language vi spoken in the configured voice: %d samples, vi voice %d, configured voice %d", len(got), len(vi), len(en))
	}
	if _, err := tts.Speak(ctx, "xin chào", "km"); !errors.Is(err, ErrNoVoice) {
		t.Errorf("Khmer: %v, want ErrNoVoice", err)
	}
}
