package daemon_test

import (
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// streamUpload posts size bytes of a pattern as multipart field "file",
// generated on the fly so the client holds none of it.
func streamUpload(c *client, name string, size int) (int, string, error) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		part, err := mw.CreateFormFile("file", name)
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		buf := make([]byte, 64<<10)
		for i := range buf {
			buf[i] = byte(i*7 + 3)
		}
		for left := size; left > 0; left -= len(buf) {
			if _, err := part.Write(buf[:min(len(buf), left)]); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(mw.Close())
	}()
	req, _ := http.NewRequest("POST", c.base+"/api/v1/media", pr)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		pr.CloseWithError(err)
		return 0, "", err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	pr.CloseWithError(io.ErrClosedPipe)
	return resp.StatusCode, resp.Header.Get("Retry-After"), nil
}

// TestParallelUploadsStayOnDisk is issue 9's scenario: six parallel
// uploads of 19 MiB (under the 20 MiB limit). Before, each was read into
// memory before it was queued (216 MB → 705 MB). Now they stream to
// temporary files and are decoded one at a time from a memory map, so the
// heap of the whole process (daemon and clients) grows by far less than
// one upload; every
// upload is answered (415 for these bytes, which are no audio, or 503 with
// Retry-After when the queue is full) and no temporary file is left.
func TestParallelUploadsStayOnDisk(t *testing.T) {
	const n, size = 6, 19 << 20
	cfg := testConfig(t, t.TempDir(), 0)
	d := startDaemon(t, cfg)
	c := login(t, "http://"+d.Ready().HTTP, "admin", adminPassword(t, cfg.DataDir))

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	var wg sync.WaitGroup
	codes := make(chan string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, retry, err := streamUpload(c, fmt.Sprintf("upload-%d.wav", i), size)
			codes <- fmt.Sprintf("%d retry-after=%q err=%v", code, retry, err)
			if err != nil || !(code == 415 || code == 503 && retry != "") {
				t.Errorf("upload %d: %d Retry-After %q %v, want 415, or 503 with Retry-After", i, code, retry, err)
			}
		}()
	}
	wg.Wait()
	close(stop)
	sampler.Wait()
	close(codes)
	for s := range codes {
		t.Log(s)
	}
	growth := int64(peak.Load()) - int64(base)
	t.Logf("heap in use: %d MiB before, peak %d MiB during %d parallel %d MiB uploads (+%d MiB)", base>>20, peak.Load()>>20, n, size>>20, growth>>20)
	if growth > 8<<20 { // less than half of one upload
		t.Fatalf("heap grew %d MiB for %d uploads of %d MiB: uploads are buffered in memory", growth>>20, n, size>>20)
	}
	left, _ := filepath.Glob(filepath.Join(cfg.DataDir, "media", ".tmp-*"))
	if len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "media")); err != nil {
		t.Fatal(err)
	}
}
