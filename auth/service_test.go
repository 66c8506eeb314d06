package auth_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/loalang/loalang/audit"
	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/store"
	"github.com/loalang/loalang/store/storetest"
)

// services returns Users and Sessions over a real bbolt file.
func services(t *testing.T) (*store.DB, *auth.Users, *auth.Sessions) {
	t.Helper()
	db := storetest.Open(t)
	st := store.NewAuthStore(db)
	return db, auth.NewUsers(st), auth.NewSessions(st, auth.SessionsConfig{TTL: time.Hour, LoginBurst: 5, LoginEvery: 10 * time.Second})
}

// actions lists the audit trail's actions and targets, oldest first.
func actions(t *testing.T, db *store.DB) []string {
	t.Helper()
	events, err := db.AuditRange(time.Time{}, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range events {
		out = append(out, string(e.Action)+" "+e.Target)
	}
	return out
}

// TestLastAdminKept: the only admin can be neither demoted nor deleted;
// with a second admin both work. Every change is audited with it, a
// refused one not at all.
func TestLastAdminKept(t *testing.T) {
	ctx := context.Background()
	db, users, _ := services(t)
	by := auth.Actor{Username: "root"}
	created, err := users.Bootstrap(ctx, 15, func(string) error { return nil })
	if err != nil || !created {
		t.Fatalf("bootstrap: %v %v", created, err)
	}
	if again, err := users.Bootstrap(ctx, 15, func(string) error { t.Fatal("second bootstrap kept a password"); return nil }); err != nil || again {
		t.Fatalf("second bootstrap: %v %v", again, err)
	}
	head := auth.RoleHead
	var fe *auth.FieldError
	if _, err := users.Update(ctx, by, "admin", auth.UserChange{Role: &head}); !errors.Is(err, auth.ErrInvalid) || !errors.As(err, &fe) || fe.Error() != "username: admin is the last admin" {
		t.Fatalf("demoting the last admin: %v", err)
	}
	if err := users.Delete(ctx, by, "admin"); !errors.Is(err, auth.ErrInvalid) {
		t.Fatalf("deleting the last admin: %v", err)
	}
	if _, err := users.Create(ctx, by, auth.NewUser{Username: "admin2", Role: auth.RoleAdmin, Password: "short"}); !errors.Is(err, auth.ErrWeakPassword) || !errors.Is(err, auth.ErrInvalid) {
		t.Fatalf("weak password: %v", err)
	}
	if _, err := users.Create(ctx, by, auth.NewUser{Username: "admin2", Role: auth.RoleAdmin, Password: "second-admin-pw"}); err != nil {
		t.Fatal(err)
	}
	if _, err := users.Create(ctx, by, auth.NewUser{Username: "admin2", Role: auth.RoleHead, Password: "second-admin-pw"}); !errors.Is(err, auth.ErrExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if u, err := users.Update(ctx, by, "admin", auth.UserChange{Role: &head}); err != nil || u.Role != auth.RoleHead {
		t.Fatalf("demoting one of two admins: %v %v", u.Role, err)
	}
	if err := users.Delete(ctx, by, "admin2"); !errors.Is(err, auth.ErrInvalid) {
		t.Fatalf("deleting the now last admin: %v", err)
	}
	if err := users.Delete(ctx, by, "nobody"); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("deleting a missing user: %v", err)
	}
	if err := users.Delete(ctx, by, "admin"); err != nil {
		t.Fatal(err)
	}
	want := []string{"user.create admin", "user.create admin2", "user.update admin", "user.delete admin"}
	if got := actions(t, db); !slices.Equal(got, want) {
		t.Fatalf("audit %q, want %q", got, want)
	}
}

// TestPasswordChangeAndDeleteEndSessions: a password change ends the
// user's other sessions and deletes their records, keeping the caller's;
// deleting the user deletes the rest. Sign-ins and the change are audited.
func TestPasswordChangeAndDeleteEndSessions(t *testing.T) {
	ctx := context.Background()
	db, users, sessions := services(t)
	by := auth.Actor{Username: "root"}
	for _, n := range []auth.NewUser{{Username: "root", Role: auth.RoleAdmin, Password: "root-password-1"}, {Username: "bob", Role: auth.RoleHead, Password: "bob-password-12"}} {
		if _, err := users.Create(ctx, by, n); err != nil {
			t.Fatal(err)
		}
	}
	login := func(src string) string {
		tok, _, err := sessions.Login(ctx, auth.Attempt{Source: src, IP: src, Username: "bob", Password: "bob-password-12"})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	mine, other := login("a"), login("b")
	if _, _, err := sessions.Login(ctx, auth.Attempt{Source: "c", IP: "c", Username: "bob", Password: "wrong-password"}); !errors.Is(err, auth.ErrBadPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	pw := "bob-new-password"
	if _, err := users.Update(ctx, auth.Actor{Username: "bob", SessionKey: auth.TokenKey(mine)}, "bob", auth.UserChange{Password: &pw}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := sessions.Lookup(ctx, other); !errors.Is(err, auth.ErrNoSession) {
		t.Fatalf("other session after the change: %v", err)
	}
	if _, _, err := sessions.Lookup(ctx, mine); err != nil {
		t.Fatalf("own session after the change: %v", err)
	}
	var stored int
	db.View(func(tx *store.Tx) error {
		return tx.Each(store.Sessions, "", func(string, []byte) error { stored++; return nil })
	})
	if stored != 1 {
		t.Fatalf("%d session records after the change, want 1", stored)
	}
	if err := users.Delete(ctx, by, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := sessions.Lookup(ctx, mine); !errors.Is(err, auth.ErrNoSession) {
		t.Fatalf("session of a deleted user: %v", err)
	}
	if n, err := sessions.Purge(ctx); err != nil || n != 0 {
		t.Fatalf("purge after delete: %d %v, want nothing left", n, err)
	}
	want := []string{"user.create root", "user.create bob", "login ", "login ", "login.failed ", "user.update bob", "user.delete bob"}
	if got := actions(t, db); !slices.Equal(got, want) {
		t.Fatalf("audit %q, want %q", got, want)
	}
}

// TestLogoutAudited: a sign-out revokes the session and is audited in the
// same transaction; revoking a missing session is no error.
func TestLogoutAudited(t *testing.T) {
	ctx := context.Background()
	db, users, sessions := services(t)
	if _, err := users.Create(ctx, auth.Actor{}, auth.NewUser{Username: "cop", Role: auth.RolePolice, Password: "police-password", Cameras: []string{"gate"}}); err != nil {
		t.Fatal(err)
	}
	tok, _, err := sessions.Login(ctx, auth.Attempt{Source: "a", IP: "192.0.2.1", Username: "cop", Password: "police-password"})
	if err != nil {
		t.Fatal(err)
	}
	if err := sessions.Logout(ctx, auth.TokenKey(tok), "cop", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := sessions.Lookup(ctx, tok); !errors.Is(err, auth.ErrNoSession) {
		t.Fatalf("after logout: %v", err)
	}
	if err := sessions.Revoke(ctx, auth.TokenKey(tok)); err != nil {
		t.Fatal(err)
	}
	events, _ := db.AuditRange(time.Time{}, time.Time{}, 0)
	if last := events[len(events)-1]; last.Action != audit.Logout || last.Actor != "cop" || last.Detail["ip"] != "192.0.2.1" {
		t.Fatalf("last entry %+v", last)
	}
}
