package daemon_test

import (
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loalang/loalang/internal/proctest"
)

// espeakProcs counts this process's espeak-ng children in /proc: the real
// processes the daemon (in-process here) started.
func espeakProcs() int { return len(proctest.Children("espeak-ng")) }

// TestTextBroadcastsShareOneSpeechEngine is issue 10 through the API: six
// simultaneous text broadcasts (before: six espeak-ng processes at once,
// 30 s each) run at most broadcast.tts_concurrency (1) espeak-ng at a
// time; the queue (2 here) holds the next ones and the rest are refused at
// once with 503 and Retry-After.
func TestTextBroadcastsShareOneSpeechEngine(t *testing.T) {
	if _, err := exec.LookPath("espeak-ng"); err != nil {
		t.Skip("espeak-ng not installed")
	}
	cfg := testConfig(t, t.TempDir(), 0)
	cfg.Broadcast.TTSQueue = 2
	d := startDaemon(t, cfg)
	c := login(t, "http://"+d.Ready().HTTP, "admin", adminPassword(t, cfg.DataDir))
	text := strings.Repeat("Thông báo: chiều nay có họp thôn tại nhà văn hóa. ", 20) // 1,000 characters

	var peak atomic.Int32
	stop := make(chan struct{})
	var watch sync.WaitGroup
	watch.Add(1)
	go func() {
		defer watch.Done()
		for {
			if n := int32(espeakProcs()); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body := c.do("POST", "/api/v1/broadcasts", map[string]any{"text": text, "zones": []string{"a"}})
			mu.Lock()
			codes[code]++
			mu.Unlock()
			if code != 201 && !(code == 503 && strings.Contains(string(body), "busy")) {
				t.Errorf("text broadcast: %d %s, want 201 or 503 busy", code, body)
			}
		}()
	}
	wg.Wait()
	close(stop)
	watch.Wait()
	t.Logf("six text broadcasts: %v (status: count), at most %d espeak-ng at once", codes, peak.Load())
	if p := peak.Load(); p != 1 {
		t.Fatalf("%d espeak-ng processes at once, want broadcast.tts_concurrency = 1", p)
	}
	if codes[201] < 1 || codes[201] > 3 || codes[503] < 3 {
		t.Fatalf("statuses %v: want 1–3 accepted (one running, two queued) and the rest 503", codes)
	}
}
