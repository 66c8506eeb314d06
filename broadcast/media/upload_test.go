package media

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// streamReader yields size bytes of a repeating pattern without holding
// them, and calls atEOF once when the last byte has been read: the moment
// an importer that buffers would hold the whole upload.
type streamReader struct {
	left  int64
	atEOF func()
	once  sync.Once
}

func (r *streamReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		r.once.Do(r.atEOF)
		return 0, io.EOF
	}
	n := min(int64(len(p)), r.left)
	for i := range p[:n] {
		p[i] = byte(i*7 + 3)
	}
	r.left -= n
	return int(n), nil
}

func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, ".tmp-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestImportStreamsToDisk is issue 9: a 20 MiB upload is streamed to a
// temporary file, so the heap grows by far less than the upload while it
// arrives (before: the whole body was read into memory first), and the
// temporary file is gone afterwards, on failure as on success.
func TestImportStreamsToDisk(t *testing.T) {
	const size = 20 << 20
	dir := t.TempDir()
	lib := newTestLibrary(t, func(c *Config) { c.Dir, c.MaxBytes = dir, 25<<20 })
	before := heapInuse()
	var atEOF uint64
	var spooled []string
	r := &streamReader{left: size, atEOF: func() {
		atEOF = heapInuse()
		spooled = tempFiles(t, dir)
	}}
	_, err := lib.Import(context.Background(), "junk.bin", r)
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("junk upload: %v, want ErrUnsupported", err)
	}
	growth := int64(atEOF) - int64(before)
	t.Logf("heap in use: %d KiB before, %d KiB with the whole 20 MiB upload received (growth %d KiB)", before>>10, atEOF>>10, growth>>10)
	if growth > 4<<20 {
		t.Fatalf("heap grew %d KiB while a 20 MiB upload arrived: it is buffered in memory", growth>>10)
	}
	if len(spooled) != 1 {
		t.Fatalf("temporary files while the upload arrived: %v, want one", spooled)
	}
	if st, err := os.Stat(spooled[0]); err == nil {
		t.Fatalf("temporary file %s left after a failed import (%d bytes)", spooled[0], st.Size())
	}
	if left := tempFiles(t, dir); len(left) != 0 {
		t.Fatalf("temporary files after a failed import: %v", left)
	}

	// Too large: refused with ErrTooLarge, nothing left behind.
	if _, err := lib.Import(context.Background(), "big.bin", &streamReader{left: 26 << 20, atEOF: func() {}}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize upload: %v, want ErrTooLarge", err)
	}
	if left := tempFiles(t, dir); len(left) != 0 {
		t.Fatalf("temporary files after an oversize upload: %v", left)
	}

	// A real clip imports, and its temporary file goes too.
	f, err := os.Open("testdata/tone44k.mp3")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, err := lib.Import(context.Background(), "tone44k.mp3", f)
	if err != nil || info.DurationMS < 100 {
		t.Fatalf("import: %+v %v", info, err)
	}
	if left := tempFiles(t, dir); len(left) != 0 {
		t.Fatalf("temporary files after a successful import: %v", left)
	}
	if _, err := lib.Path(info.ID); err != nil {
		t.Fatal(err)
	}
}

// blockingReader blocks its first Read until release is closed.
type blockingReader struct {
	release chan struct{}
	reads   *atomic.Int32
}

func (r blockingReader) Read(p []byte) (int, error) {
	r.reads.Add(1)
	<-r.release
	return 0, io.EOF
}

// TestImportQueueBound: with Config.Queue imports in flight, another is
// refused at once with ErrBusy, without its body being read.
func TestImportQueueBound(t *testing.T) {
	lib := newTestLibrary(t, func(c *Config) { c.Queue = 2 })
	release := make(chan struct{})
	var reads atomic.Int32
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lib.Import(context.Background(), "slow", blockingReader{release, &reads})
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for reads.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the two slow uploads never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	var extra atomic.Int32
	_, err := lib.Import(context.Background(), "third", blockingReader{release, &extra})
	if !errors.Is(err, ErrBusy) || extra.Load() != 0 {
		t.Fatalf("third upload: %v after %d reads, want ErrBusy unread", err, extra.Load())
	}
	close(release)
	wg.Wait()
	if _, err := lib.Import(context.Background(), "after", &streamReader{left: 0, atEOF: func() {}}); !errors.Is(err, ErrEmpty) {
		t.Fatalf("after the queue drained: %v, want ErrEmpty (admitted)", err)
	}
}
