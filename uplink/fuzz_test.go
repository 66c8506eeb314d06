package uplink

import (
	"os"
	"testing"
	"time"
)

// FuzzOpen feeds arbitrary envelopes to the verifier: it must never
// panic, and whatever it accepts must carry a valid signature by the
// trusted key and pass the field checks.
func FuzzOpen(f *testing.F) {
	if raw, err := os.ReadFile("testdata/envelope.golden"); err == nil {
		f.Add(raw)
	}
	f.Add([]byte(`{"cmd":"","sig":""}`))
	f.Add([]byte(`{"cmd":"e30=","sig":"AAAA"}`))
	keys := Keys{Province: []ed25519PublicKey{seedKey(1).Public().(ed25519PublicKey)}}
	tp := Topics{"hanoi", "xa-1", "thon-3"}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := Open(raw, keys)
		if err != nil {
			return
		}
		if c.check() != nil {
			t.Fatalf("accepted a command that fails its checks: %+v", c)
		}
		_ = c.Check(time.Date(2026, 9, 15, 8, 30, 0, 0, time.UTC), tp)
	})
}

// FuzzOpenChunk feeds arbitrary chunk envelopes to the verifier: it must
// never panic, and whatever it accepts must pass the chunk's checks.
func FuzzOpenChunk(f *testing.F) {
	key := seedKey(2)
	if raw, err := SignChunk(testChunk(), key); err == nil {
		f.Add(raw)
	}
	f.Add([]byte(`{"chunk":"","sig":""}`))
	f.Add([]byte(`{"chunk":"e30=","sig":"AAAA"}`))
	trusted := []ed25519PublicKey{key.Public().(ed25519PublicKey)}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := OpenChunk(raw, trusted)
		if err != nil {
			return
		}
		if c.check() != nil {
			t.Fatalf("accepted a chunk that fails its checks: %+v", c)
		}
	})
}
