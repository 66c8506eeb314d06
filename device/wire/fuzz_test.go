package wire

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// seedGolden adds every golden file as a seed of f.
func seedGolden(f *testing.F, pattern string) {
	files, _ := filepath.Glob(filepath.Join("testdata", "golden", pattern))
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
}

func FuzzFrame(f *testing.F) {
	seedGolden(f, "*.bin")
	f.Add([]byte{0x4C, 0x41, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var fr Frame
		if err := fr.UnmarshalBinary(b); err != nil {
			return
		}
		out, err := fr.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded frame does not re-encode: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoding differs")
		}
	})
}

func FuzzJSON(f *testing.F) {
	seedGolden(f, "*.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		// None of these may panic; a value that decodes must validate again after a round trip.
		if s, err := Decode[Status](b); err == nil {
			roundTrip(t, s)
		}
		if h, err := Decode[Heartbeat](b); err == nil {
			roundTrip(t, h)
		}
		if c, err := Decode[Command](b); err == nil {
			roundTrip(t, c)
		}
		if r, err := Decode[Reply](b); err == nil {
			roundTrip(t, r)
		}
		if s, err := Decode[StreamControl](b); err == nil {
			roundTrip(t, s)
		}
		if r, err := Decode[Report](b); err == nil {
			roundTrip(t, r)
		}
		if r, err := Decode[ClockResponse](b); err == nil {
			roundTrip(t, r)
		}
		if r, err := Decode[ClockRequest](b); err == nil {
			roundTrip(t, r)
		}
	})
}

func roundTrip[T interface{ Validate() error }](t *testing.T, v T) {
	b, err := Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode[T](b); err != nil {
		t.Fatalf("valid %T does not survive a round trip: %v", v, err)
	}
}
