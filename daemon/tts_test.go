package daemon_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// espeakProcs counts this process's espeak-ng children in /proc: the real
// processes the daemon (in-process here) started.
func espeakProcs() int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	me := strconv.Itoa(os.Getpid())
	n := 0
	for _, p := range stats {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		open, close := bytes.IndexByte(raw, '('), bytes.LastIndexByte(raw, ')')
		if open < 0 || close < open {
			continue
		}
		f := strings.Fields(string(raw[close+1:]))
		if string(raw[open+1:close]) == "espeak-ng" && len(f) > 1 && f[1] == me {
			n++
		}
	}
	return n
}

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
