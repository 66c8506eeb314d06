package commune

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/uplink"
)

// testConfig is a commune config in a temporary data dir, with a fresh
// signing key, pointed at broker (which may be down).
func testConfig(t *testing.T, broker string) config.Config {
	t.Helper()
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "commune.key")
	if _, err := uplink.Keygen(keyPath); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Role = config.RoleCommune
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.Commune = config.Commune{Province: "hanoi", ID: "xa-1", MQTTURL: broker, ClientID: "commune-xa-1",
		SigningKeyFile: keyPath, PublicURL: "http://127.0.0.1:1", Villages: []string{"thon-1", "thon-2"}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

type client struct {
	t     *testing.T
	base  string
	token string
}

func (c *client) do(method, path string, body any) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func login(t *testing.T, base, user, pw string) *client {
	t.Helper()
	c := &client{t: t, base: base}
	code, body := c.do("POST", "/api/v1/commune/login", map[string]string{"username": user, "password": pw})
	if code != 200 {
		t.Fatalf("login %s: %d %s", user, code, body)
	}
	var out struct{ Token string }
	json.Unmarshal(body, &out)
	c.token = out.Token
	return c
}

// TestSignInRolesAndHook: the first admin's password is only in the data
// dir's file; the admin creates an editor and a police user; a route
// mounted with Handle admits only its roles (and admin), with the user in
// the context; a cookie session's POST needs the CSRF header.
func TestSignInRolesAndHook(t *testing.T) {
	cfg := testConfig(t, "tcp://127.0.0.1:1") // no broker: the server works without it
	s, err := New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Handle("GET /api/v1/commune/test-police", []string{RolePolice}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := UserFrom(r.Context())
		io.WriteString(w, "hello "+u.Username)
	}))
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()

	if code, body := (&client{t: t, base: srv.URL}).do("GET", "/healthz", nil); code != 503 || !strings.Contains(string(body), "commune-broker") {
		t.Fatalf("healthz without a broker: %d %s", code, body)
	}
	raw, err := os.ReadFile(filepath.Join(cfg.DataDir, AdminPassFile))
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := (&client{t: t, base: srv.URL}).do("POST", "/api/v1/commune/login", map[string]string{"username": "admin", "password": "admin"}); code != 401 {
		t.Fatalf("a guessed admin password got %d", code)
	}
	admin := login(t, srv.URL, "admin", strings.TrimSpace(string(raw)))
	for _, u := range []map[string]any{
		{"username": "bt", "password": "editor-pass-1", "role": "editor"},
		{"username": "ca", "password": "police-pass-1", "role": "police", "cameras": []string{"cong"}},
	} {
		if code, body := admin.do("POST", "/api/v1/commune/users", u); code != 201 {
			t.Fatalf("create %v: %d %s", u["username"], code, body)
		}
	}
	if code, _ := admin.do("POST", "/api/v1/commune/users", map[string]any{"username": "x", "password": "long-enough-1", "role": "head"}); code != 400 {
		t.Fatalf("a village role at the commune got %d", code)
	}
	_, body := admin.do("GET", "/api/v1/commune/users", nil)
	if bytes.Contains(body, []byte("argon2id")) {
		t.Fatal("the user list leaks password hashes")
	}
	editor := login(t, srv.URL, "bt", "editor-pass-1")
	police := login(t, srv.URL, "ca", "police-pass-1")
	if code, body := police.do("GET", "/api/v1/commune/test-police", nil); code != 200 || string(body) != "hello ca" {
		t.Fatalf("police on its route: %d %s", code, body)
	}
	if code, _ := admin.do("GET", "/api/v1/commune/test-police", nil); code != 200 {
		t.Fatalf("admin on a police route: %d", code)
	}
	if code, _ := editor.do("GET", "/api/v1/commune/test-police", nil); code != 403 {
		t.Fatalf("editor on a police route: %d", code)
	}
	if code, _ := (&client{t: t, base: srv.URL}).do("GET", "/api/v1/commune/test-police", nil); code != 401 {
		t.Fatalf("anonymous on a police route: %d", code)
	}
	if code, _ := editor.do("POST", "/api/v1/commune/users", map[string]any{"username": "y", "password": "long-enough-1", "role": "admin"}); code != 403 {
		t.Fatalf("an editor created a user: %d", code)
	}
	// Cookie session: unsafe methods need the CSRF header.
	req, _ := http.NewRequest("POST", srv.URL+"/api/v1/commune/logout", nil)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: editor.token})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("cookie POST without CSRF: %d", resp.StatusCode)
	}
}
