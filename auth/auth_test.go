package auth

import (
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

func TestLimiter(t *testing.T) {
	now := time.Unix(0, 0)
	l := NewLimiter(3, 10*time.Second)
	l.Now = func() time.Time { return now }
	for range 3 {
		if !l.Allow("u:bob", "ip:1") {
			t.Fatal("blocked too early")
		}
		l.Fail("u:bob", "ip:1")
	}
	if l.Allow("u:bob") || l.Allow("ip:1") {
		t.Fatal("not limited after burst")
	}
	if !l.Allow("u:alice", "ip:2") {
		t.Fatal("other keys limited")
	}
	now = now.Add(10 * time.Second)
	if !l.Allow("u:bob", "ip:1") {
		t.Fatal("not refilled")
	}
}
