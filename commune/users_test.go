package commune

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUserManagement: only the admin manages users (editor, approver and
// police get 403 on every user route); no response carries a password
// hash; the last admin cannot be deleted or demoted (409) but can once a
// second admin exists; a password reset, an own password change and a
// deletion end that user's sessions; every change is audited.
func TestUserManagement(t *testing.T) {
	cfg := testConfig(t, "tcp://127.0.0.1:1")
	s, err := New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	raw, _ := os.ReadFile(filepath.Join(cfg.DataDir, AdminPassFile))
	admin := login(t, srv.URL, "admin", strings.TrimSpace(string(raw)))
	var bodies []string
	do := func(c *client, method, path string, body any) int {
		t.Helper()
		code, out := c.do(method, path, body)
		bodies = append(bodies, string(out))
		return code
	}
	for _, u := range []string{"editor", "approver", "police"} {
		if code := do(admin, "POST", "/api/v1/commune/users", map[string]any{"username": u + "1", "password": u + "-pass-1", "role": u}); code != 201 {
			t.Fatalf("create %s: %d", u, code)
		}
	}
	for _, u := range []string{"editor", "approver", "police"} {
		c := login(t, srv.URL, u+"1", u+"-pass-1")
		for _, r := range []struct{ m, p string }{{"GET", "/api/v1/commune/users"}, {"POST", "/api/v1/commune/users"},
			{"PATCH", "/api/v1/commune/users/police1"}, {"DELETE", "/api/v1/commune/users/police1"}} {
			if code := do(c, r.m, r.p, map[string]any{"username": "x1", "password": "whatever-pass-1", "role": "admin"}); code != 403 {
				t.Fatalf("%s %s %s: %d", u, r.m, r.p, code)
			}
		}
	}
	if code := do(admin, "GET", "/api/v1/commune/users", nil); code != 200 || !strings.Contains(bodies[len(bodies)-1], `"username":"police1"`) {
		t.Fatalf("list: %d %s", code, bodies[len(bodies)-1])
	}

	// The last admin.
	if code := do(admin, "DELETE", "/api/v1/commune/users/admin", nil); code != 409 {
		t.Fatalf("deleting the last admin: %d", code)
	}
	if code := do(admin, "PATCH", "/api/v1/commune/users/admin", map[string]string{"role": "editor"}); code != 409 {
		t.Fatalf("demoting the last admin: %d", code)
	}
	if code := do(admin, "PATCH", "/api/v1/commune/users/approver1", map[string]string{"role": "admin"}); code != 200 {
		t.Fatalf("promote: %d", code)
	}
	boss := login(t, srv.URL, "approver1", "approver-pass-1")
	if code := do(boss, "PATCH", "/api/v1/commune/users/admin", map[string]string{"role": "editor"}); code != 200 {
		t.Fatalf("demoting one of two admins: %d", code)
	}
	if code := do(admin, "GET", "/api/v1/commune/me", nil); code != 401 {
		t.Fatalf("a demoted admin's session still works: %d", code)
	}

	// A password reset ends the user's sessions; the new password works.
	ed := login(t, srv.URL, "editor1", "editor-pass-1")
	if code := do(boss, "PATCH", "/api/v1/commune/users/editor1", map[string]string{"password": "short"}); code != 400 {
		t.Fatalf("a weak password: %d", code)
	}
	if code := do(boss, "PATCH", "/api/v1/commune/users/editor1", map[string]string{"password": "editor-pass-2"}); code != 200 {
		t.Fatalf("reset: %d", code)
	}
	if code := do(ed, "GET", "/api/v1/commune/me", nil); code != 401 {
		t.Fatalf("session after a reset: %d", code)
	}
	ed = login(t, srv.URL, "editor1", "editor-pass-2")

	// An own password change needs the current one and ends the sessions.
	if code := do(ed, "POST", "/api/v1/commune/me/password", map[string]string{"current": "wrong-pass-9", "new": "editor-pass-3"}); code != 403 {
		t.Fatalf("own change with a wrong current password: %d", code)
	}
	if code := do(ed, "POST", "/api/v1/commune/me/password", map[string]string{"current": "editor-pass-2", "new": "editor-pass-3"}); code != 200 {
		t.Fatalf("own change: %d", code)
	}
	if code := do(ed, "GET", "/api/v1/commune/me", nil); code != 401 {
		t.Fatalf("session after an own change: %d", code)
	}
	login(t, srv.URL, "editor1", "editor-pass-3")

	// Deleting a user ends their sessions.
	pol := login(t, srv.URL, "police1", "police-pass-1")
	if code := do(boss, "DELETE", "/api/v1/commune/users/police1", nil); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	if code := do(pol, "GET", "/api/v1/commune/me", nil); code != 401 {
		t.Fatalf("session after delete: %d", code)
	}
	if code := do(boss, "DELETE", "/api/v1/commune/users/police1", nil); code != 404 {
		t.Fatalf("delete twice: %d", code)
	}

	do(boss, "GET", "/api/v1/commune/audit", nil)
	auditBody := bodies[len(bodies)-1]
	for _, a := range []string{`"action":"user.update"`, `"action":"user.password"`, `"action":"user.delete"`} {
		if !strings.Contains(auditBody, a) {
			t.Fatalf("%s not audited: %s", a, auditBody)
		}
	}
	for _, b := range bodies {
		if strings.Contains(b, "argon2") || strings.Contains(strings.ToLower(b), "password_hash") {
			t.Fatalf("a response carries a password hash: %s", b)
		}
	}
}
