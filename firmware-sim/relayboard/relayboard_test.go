package relayboard

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.bug.st/serial"
)

func newBoard(t *testing.T) *Board {
	t.Helper()
	b, err := New(Options{Link: filepath.Join(t.TempDir(), "relay0"), Coils: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func open(t *testing.T, path string) serial.Port {
	t.Helper()
	p, err := serial.Open(path, &serial.Mode{BaudRate: 9600})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func frame(h string) []byte {
	b, _ := hex.DecodeString(strings.ReplaceAll(h, " ", ""))
	c := crc(b)
	return append(b, byte(c), byte(c>>8))
}

// roundTrip writes req and reads until want bytes arrived or 2 s passed.
func roundTrip(t *testing.T, p serial.Port, req []byte, want int) []byte {
	t.Helper()
	return roundTripWait(t, p, req, want, 2*time.Second)
}

// noAnswer writes req and returns whatever arrives within 300 ms, for
// requests that must stay unanswered.
func noAnswer(t *testing.T, p serial.Port, req []byte) []byte {
	t.Helper()
	return roundTripWait(t, p, req, 8, 300*time.Millisecond)
}

func roundTripWait(t *testing.T, p serial.Port, req []byte, want int, wait time.Duration) []byte {
	t.Helper()
	if _, err := p.Write(req); err != nil {
		t.Fatal(err)
	}
	p.SetReadTimeout(100 * time.Millisecond)
	var got []byte
	deadline := time.Now().Add(wait)
	buf := make([]byte, 64)
	for len(got) < want && time.Now().Before(deadline) {
		n, err := p.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	return got
}

func TestCRCKnownFrame(t *testing.T) {
	if got := frame("01 05 00 00 ff 00"); !bytes.Equal(got[6:], []byte{0x8c, 0x3a}) {
		t.Fatalf("crc % x", got[6:])
	}
}

func TestCoilFunctions(t *testing.T) {
	b := newBoard(t)
	p := open(t, b.Path())

	if got := roundTrip(t, p, frame("01 05 00 02 ff 00"), 8); !bytes.Equal(got, frame("01 05 00 02 ff 00")) {
		t.Fatalf("write single echo % x", got)
	}
	if got := roundTrip(t, p, frame("01 0f 00 04 00 03 01 05"), 8); !bytes.Equal(got, frame("01 0f 00 04 00 03")) {
		t.Fatalf("write multiple echo % x", got)
	}
	// Coils 2, 4 and 6 are on: 0b0101_0100.
	if got := roundTrip(t, p, frame("01 01 00 00 00 08"), 6); !bytes.Equal(got, frame("01 01 01 54")) {
		t.Fatalf("read coils % x", got)
	}
	want := []bool{false, false, true, false, true, false, true, false}
	for i, on := range b.Coils() {
		if on != want[i] {
			t.Fatalf("coils %v, want %v", b.Coils(), want)
		}
	}
	if h := b.History(); len(h) != 3 || h[0].Coil != 2 || h[1].Coil != 4 || h[2].Coil != 6 {
		t.Fatalf("history %+v", h)
	}
	// Exceptions: address past the last coil, bad single-coil value.
	if got := roundTrip(t, p, frame("01 01 00 07 00 02"), 5); !bytes.Equal(got, frame("01 81 02")) {
		t.Fatalf("illegal address % x", got)
	}
	if got := roundTrip(t, p, frame("01 05 00 00 12 34"), 5); !bytes.Equal(got, frame("01 85 03")) {
		t.Fatalf("illegal value % x", got)
	}
}

func TestFaults(t *testing.T) {
	b := newBoard(t)
	p := open(t, b.Path())

	b.InjectCRCErrors(1)
	got := roundTrip(t, p, frame("01 05 00 00 ff 00"), 8)
	if len(got) != 8 || bytes.Equal(got, frame("01 05 00 00 ff 00")) {
		t.Fatalf("want corrupted echo, got % x", got)
	}
	if !b.Coils()[0] {
		t.Fatal("request with corrupted reply was not carried out")
	}

	b.InjectTimeouts(1)
	if got := noAnswer(t, p, frame("01 05 00 01 ff 00")); len(got) != 0 {
		t.Fatalf("want no answer, got % x", got)
	}
	if b.Coils()[1] {
		t.Fatal("lost request was carried out")
	}

	// A request with a bad CRC is ignored.
	bad := frame("01 05 00 01 ff 00")
	bad[7] ^= 1
	if got := noAnswer(t, p, bad); len(got) != 0 {
		t.Fatalf("bad crc answered % x", got)
	}
	if b.BadFrames() == 0 {
		t.Fatal("bad frame not counted")
	}
	// Another slave's request is ignored; the board still works after.
	if got := noAnswer(t, p, frame("02 01 00 00 00 08")); len(got) != 0 {
		t.Fatalf("other slave answered % x", got)
	}
	if got := roundTrip(t, p, frame("01 01 00 00 00 08"), 6); !bytes.Equal(got, frame("01 01 01 01")) {
		t.Fatalf("read after faults % x", got)
	}
}

func TestUnplugReplug(t *testing.T) {
	b := newBoard(t)
	p := open(t, b.Path())
	roundTrip(t, p, frame("01 05 00 03 ff 00"), 8)

	if err := b.Unplug(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(b.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("link still there: %v", err)
	}
	// The open port now fails instead of timing out silently.
	p.SetReadTimeout(time.Second)
	p.Write(frame("01 01 00 00 00 08"))
	if _, err := p.Read(make([]byte, 8)); err == nil {
		t.Fatal("read on unplugged port did not fail")
	}
	if _, err := serial.Open(b.Path(), &serial.Mode{BaudRate: 9600}); err == nil {
		t.Fatal("opened an unplugged board")
	}

	if err := b.Replug(); err != nil {
		t.Fatal(err)
	}
	p2 := open(t, b.Path())
	if got := roundTrip(t, p2, frame("01 01 00 00 00 08"), 6); !bytes.Equal(got, frame("01 01 01 08")) {
		t.Fatalf("state after replug % x", got)
	}
}
