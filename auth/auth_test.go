package auth

import (
	"encoding/base64"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/argon2"
)

func TestPasswordHash(t *testing.T) {
	h, err := HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$") || strings.Contains(h, "horse") {
		t.Fatalf("hash %q", h)
	}
	if !VerifyPassword(h, "correct horse battery") || VerifyPassword(h, "correct horse batterx") {
		t.Fatal("verify wrong")
	}
	if _, err := HashPassword("short"); err != ErrWeakPassword {
		t.Fatalf("weak password: %v", err)
	}
	for _, bad := range []string{"", "$argon2id$", "$argon2id$v=19$m=99999999,t=1,p=1$AA$AA"} {
		if VerifyPassword(bad, "x") {
			t.Fatalf("verified against %q", bad)
		}
	}
}

// TestLimiter checks the two halves of sign-in throttling: a source that
// failed Burst times is refused, another source is not (finding 7: a
// guesser locked the admin out everywhere), and the account's attempts are
// slowed instead, by a delay that doubles and stops at MaxDelay.
func TestLimiter(t *testing.T) {
	now := time.Unix(0, 0)
	l := NewLimiter(3, 10*time.Second)
	l.Now = func() time.Time { return now }
	for range 3 {
		if !l.Allow("ip:1") {
			t.Fatal("blocked too early")
		}
		if d := l.Delay("bob"); d != 0 {
			t.Fatalf("delay %v before the burst", d)
		}
		l.Fail("ip:1", "bob")
	}
	if l.Allow("ip:1") {
		t.Fatal("source not limited after burst")
	}
	if got := l.Retry("ip:1"); got != 10*time.Second {
		t.Fatalf("retry %v, want 10s", got)
	}
	if !l.Allow("ip:2") {
		t.Fatal("another source is limited: the account is locked out")
	}
	if d := l.Delay("bob"); d != 250*time.Millisecond {
		t.Fatalf("delay after the burst %v, want 250ms", d)
	}
	for range 10 {
		l.Fail("ip:2", "bob")
	}
	if d := l.Delay("bob"); d != 4*time.Second {
		t.Fatalf("delay after 13 failures %v, want the 4s cap", d)
	}
	if d := l.Delay("alice"); d != 0 {
		t.Fatalf("other account delayed %v", d)
	}
	now = now.Add(10 * time.Second)
	if !l.Allow("ip:1") {
		t.Fatal("not refilled")
	}
	now = now.Add(10 * time.Minute)
	if d := l.Delay("bob"); d != 0 {
		t.Fatalf("delay %v after the failures decayed", d)
	}
}

func TestLimiterBoundsMemory(t *testing.T) {
	l := NewLimiter(1, time.Hour)
	for i := range 3 * limiterMaxKeys {
		l.Fail(fmt.Sprint("ip:", i), fmt.Sprint("user", i))
	}
	if len(l.sources) > limiterMaxKeys+1 || len(l.accounts) > limiterMaxKeys+1 {
		t.Fatalf("%d sources, %d accounts kept", len(l.sources), len(l.accounts))
	}
}

// TestDummyHash checks that an unknown user is checked against a hash with
// the real parameters (finding 5: unknown users answered 30× faster).
func TestDummyHash(t *testing.T) {
	real, _ := HashPassword("correct horse battery")
	d := DummyHash()
	params := func(h string) string { return strings.Join(strings.Split(h, "$")[:4], "$") }
	if params(d) != params(real) || d != DummyHash() || VerifyPassword(d, "") {
		t.Fatalf("dummy hash %q vs %q", d, real)
	}
}

func TestValidCameras(t *testing.T) {
	if ValidCameras([]string{"cam-01", "a.b_c"}) != nil {
		t.Fatal("good list refused")
	}
	many := make([]string, MaxCameras+1)
	for i := range many {
		many[i] = "c"
	}
	for _, bad := range [][]string{{""}, {strings.Repeat("x", 65)}, {"=cmd"}, many} {
		if ValidCameras(bad) == nil {
			t.Fatalf("accepted %.40q", bad)
		}
	}
}

// TestHashParametersRFC9106: new hashes use RFC 9106 §4's second
// recommended option (t=3, p=4, m=64 MiB, 128-bit salt, 256-bit tag), and
// hashes made with the weaker parameters used before still verify but ask
// to be re-hashed.
func TestHashParametersRFC9106(t *testing.T) {
	h, err := HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(h, "$")
	if len(parts) != 6 || parts[3] != "m=65536,t=3,p=4" {
		t.Fatalf("hash parameters %q, want m=65536,t=3,p=4", h)
	}
	salt, _ := base64.RawStdEncoding.DecodeString(parts[4])
	tag, _ := base64.RawStdEncoding.DecodeString(parts[5])
	if len(salt) != 16 || len(tag) != 32 {
		t.Fatalf("salt %d B, tag %d B; want 16 and 32", len(salt), len(tag))
	}
	if NeedsRehash(h) {
		t.Errorf("a new hash asks to be re-hashed")
	}
	// A hash made before issue 16 (19 MiB, t=2, p=1).
	oldSalt := []byte("0123456789abcdef")
	old := "$argon2id$v=19$m=19456,t=2,p=1$" + base64.RawStdEncoding.EncodeToString(oldSalt) + "$" +
		base64.RawStdEncoding.EncodeToString(argon2.IDKey([]byte("correct horse battery"), oldSalt, 2, 19456, 1, 32))
	if !VerifyPassword(old, "correct horse battery") || VerifyPassword(old, "correct horse batterY") {
		t.Errorf("old-parameter hash does not verify correctly")
	}
	if !NeedsRehash(old) || !NeedsRehash("$bcrypt$x") {
		t.Errorf("weaker or foreign hashes do not ask to be re-hashed")
	}
}

// TestConcurrentHashesBoundMemory: several sign-ins at once hash one at a
// time and give the 64 MiB of each hash back to the operating system, so
// the process's heap does not keep it (issue 16: idle RSS).
func TestConcurrentHashesBoundMemory(t *testing.T) {
	h, err := HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var peak atomic.Uint64
	stop := make(chan struct{})
	go func() {
		// Sample the heap while the hashes run: with one at a time it
		// never holds two 64 MiB block arrays.
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			default:
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			runtime.Gosched()
		}
	}()
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !VerifyPassword(h, "correct horse battery") {
				t.Errorf("verify failed")
			}
		}()
	}
	wg.Wait()
	close(stop)
	if p := peak.Load(); p > 110<<20 {
		t.Errorf("heap peaked at %d MiB during 3 concurrent hashes, want one 64 MiB hash at a time", p>>20)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if kept := ms.HeapIdle - ms.HeapReleased; kept > 16<<20 {
		t.Errorf("after hashing the heap keeps %d MiB of free pages from the OS, want them returned", kept>>20)
	}
	if ms.HeapInuse > 32<<20 {
		t.Errorf("after hashing %d MiB of heap in use", ms.HeapInuse>>20)
	}
}
