package auth

import (
	"fmt"
	"strings"
	"testing"
	"time"
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
