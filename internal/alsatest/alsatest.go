// Package alsatest routes ALSA to a FIFO for tests of code that plays
// audio through oto on a machine without a sound card: the default PCM is a
// file plugin writing raw float32 samples into a FIFO, which the test reads
// at 48 kHz, pacing oto like a real card. oto allows one context per process
// and ALSA reads ALSA_CONFIG_PATH once, so such tests run in a child copy of
// the test binary (RunChild / ChildOnly).
package alsatest

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const childEnv = "LOALANG_ALSATEST_CHILD"

// RunChild re-runs the test binary for one child test and fails if the
// child did not run and pass.
func RunChild(t *testing.T, name string, env ...string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	cmd.Env = append(cmd.Env, childEnv+"="+name)
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		t.Log("child: " + line)
	}
	if err != nil {
		t.Fatalf("child %s: %v", name, err)
	}
	if !strings.Contains(string(out), "--- PASS: "+name) {
		t.Fatalf("child %s did not pass", name)
	}
}

func ChildOnly(t *testing.T) {
	if os.Getenv(childEnv) != t.Name() {
		t.Skip("runs only as a subprocess of its parent test")
	}
}

// FIFOConfig writes an ALSA config whose default PCM is a file plugin
// writing raw float32 samples into a FIFO (with a null slave, which has no
// clock). The test reads the FIFO at 48 kHz, which paces oto like a real
// sound card would.
func FIFOConfig(t *testing.T, dir string) (conf, fifo string) {
	fifo = filepath.Join(dir, "out.f32")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	conf = filepath.Join(dir, "asound.conf")
	body := fmt.Sprintf(`pcm.!default {
	type file
	slave { pcm { type null } }
	file %q
	format "raw"
}
`, fifo)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return conf, fifo
}

// Capture reads the FIFO at the sound card's pace and remembers when each
// chunk was read, standing in for the moment it leaves the loudspeaker.
type Capture struct {
	f        *os.File
	channels int
	mu       sync.Mutex
	data     []byte
	chunks   []chunkAt
	done     chan struct{}
	Restarts int
}

type chunkAt struct {
	frame int // first frame of the chunk
	at    time.Time
}

func StartCapture(t *testing.T, fifo string, channels int) *Capture {
	c := &Capture{channels: channels, done: make(chan struct{})}
	opened := make(chan error, 1)
	go func() {
		defer close(c.done)
		f, err := os.OpenFile(fifo, os.O_RDONLY, 0)
		opened <- err
		if err != nil {
			return
		}
		c.mu.Lock()
		c.f = f
		c.mu.Unlock()
		// A small pipe keeps the fake device's queue near one ALSA period.
		if sc, err := f.SyscallConn(); err == nil {
			sc.Control(func(fd uintptr) { unix.FcntlInt(fd, unix.F_SETPIPE_SZ, 8192) })
		}
		frameBytes := 4 * channels
		buf := make([]byte, 960*frameBytes) // 20 ms
		var t0 time.Time
		for {
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			now := time.Now()
			c.mu.Lock()
			frames := len(c.data) / frameBytes
			c.chunks = append(c.chunks, chunkAt{frame: frames, at: now})
			c.data = append(c.data, buf[:n]...)
			total := len(c.data) / frameBytes
			c.mu.Unlock()
			due := func(fr int) time.Time { return t0.Add(time.Duration(fr) * time.Second / 48000) }
			if t0.IsZero() || now.Sub(due(frames)) > 100*time.Millisecond {
				// Starved (oto suspended): restart the clock, like a card
				// that underran.
				if !t0.IsZero() {
					c.Restarts++
				}
				t0 = now.Add(-time.Duration(frames) * time.Second / 48000)
			}
			time.Sleep(time.Until(due(total)))
		}
	}()
	_ = opened
	return c
}

func (c *Capture) Stop() {
	c.mu.Lock()
	f := c.f
	c.mu.Unlock()
	if f != nil {
		f.Close()
	}
	select {
	case <-c.done:
	case <-time.After(2 * time.Second):
	}
}

// Mono returns the captured samples averaged to mono.
func (c *Capture) Mono() []float32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.data) / (4 * c.channels)
	out := make([]float32, n)
	for i := range out {
		var s float32
		for ch := 0; ch < c.channels; ch++ {
			s += math.Float32frombits(binary.LittleEndian.Uint32(c.data[(i*c.channels+ch)*4:]))
		}
		out[i] = s / float32(c.channels)
	}
	return out
}

// TimeOf returns when frame k was read.
func (c *Capture) TimeOf(k int) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var at chunkAt
	for _, ch := range c.chunks {
		if ch.frame > k {
			break
		}
		at = ch
	}
	return at.at.Add(time.Duration(k-at.frame) * time.Second / 48000)
}
