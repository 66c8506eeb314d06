package daemon_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/daemon"
)

// Who may call what. Every route the daemon registers must be listed here,
// and nothing else: a new route without an entry fails
// TestAccessMatrix. "public" routes need no sign-in; pages are signed in by
// the session cookie and send anonymous callers to the sign-in page.
var accessMatrix = map[string]struct {
	who  string // "public", or the roles that may call it: "admin head police"
	page bool
	path string // a concrete path, when placeholders would not do
}{
	"GET /healthz":                       {who: "public"},
	"GET /metrics":                       {who: "admin"},
	"POST /api/v1/login":                 {who: "public"},
	"POST /api/v1/logout":                {who: "admin head police"},
	"GET /api/v1/me":                     {who: "admin head police"},
	"PUT /api/v1/me/password":            {who: "admin head police"},
	"GET /api/v1/users":                  {who: "admin"},
	"POST /api/v1/users":                 {who: "admin"},
	"PUT /api/v1/users/{username}":       {who: "admin"},
	"DELETE /api/v1/users/{username}":    {who: "admin"},
	"GET /api/v1/devices":                {who: "admin head"},
	"POST /api/v1/devices/{id}/ping":     {who: "admin head"},
	"POST /api/v1/devices/{id}/volume":   {who: "admin head"},
	"GET /api/v1/audit":                  {who: "admin"},
	"GET /api/v1/uplink":                 {who: "admin head"},
	"POST /api/v1/uplink/drafts":         {who: "admin head"},
	"GET /api/v1/uplink/drafts":          {who: "admin head"},
	"/api/":                              {who: "public", path: "/api/v1/no-such-thing"},
	"GET /app/static/":                   {who: "public", path: "/app/static/app.css"},
	"GET /{$}":                           {who: "public"},
	"GET /app/login":                     {who: "public"},
	"POST /app/login":                    {who: "public"},
	"POST /app/logout":                   {who: "public"},
	"GET /app/{$}":                       {who: "admin head police", page: true},
	"GET /app/home":                      {who: "admin head police", page: true},
	"GET /app/broadcast":                 {who: "admin head", page: true},
	"GET /app/drafts":                    {who: "admin head", page: true},
	"GET /app/schedules":                 {who: "admin head", page: true},
	"GET /app/library":                   {who: "admin head", page: true},
	"GET /app/reports":                   {who: "admin head", page: true},
	"GET /app/devices":                   {who: "admin head", page: true},
	"GET /app/cameras":                   {who: "admin police", page: true},
	"GET /app/log":                       {who: "admin", page: true},
	"GET /app/users":                     {who: "admin", page: true},
	"GET /app/account":                   {who: "admin head police", page: true},
	"GET /app/":                          {who: "public", path: "/app/no-such-page"},
	"GET /api/v1/hall":                   {who: "admin head"},
	"POST /api/v1/media":                 {who: "admin head"},
	"GET /api/v1/media":                  {who: "admin head"},
	"GET /api/v1/media/{id}":             {who: "admin head"},
	"PATCH /api/v1/media/{id}":           {who: "admin head"},
	"DELETE /api/v1/media/{id}":          {who: "admin head"},
	"GET /api/v1/media/{id}/audio":       {who: "admin head"},
	"GET /api/v1/languages":              {who: "admin head"},
	"POST /api/v1/schedules/preview":     {who: "admin head"},
	"GET /api/v1/reports/monthly":        {who: "admin head"},
	"GET /api/v1/reports/playout":        {who: "admin head"},
	"POST /api/v1/broadcasts":            {who: "admin head"},
	"GET /api/v1/broadcasts":             {who: "admin head"},
	"POST /api/v1/broadcasts/stop-all":   {who: "admin head"},
	"GET /api/v1/broadcasts/{id}":        {who: "admin head"},
	"DELETE /api/v1/broadcasts/{id}":     {who: "admin head"},
	"GET /api/v1/schedules":              {who: "admin head"},
	"POST /api/v1/schedules":             {who: "admin head"},
	"GET /api/v1/schedules/{id}":         {who: "admin head"},
	"PUT /api/v1/schedules/{id}":         {who: "admin head"},
	"DELETE /api/v1/schedules/{id}":      {who: "admin head"},
	"GET /api/v1/schedules/{id}/next":    {who: "admin head"},
	"GET /api/v1/schedules/{id}/firings": {who: "admin head"},
	"GET /api/v1/cameras":                {who: "admin police"},
	"POST /api/v1/cameras":               {who: "admin"},
	"PUT /api/v1/cameras/{id}":           {who: "admin"},
	"DELETE /api/v1/cameras/{id}":        {who: "admin"},
	"POST /api/v1/cameras/{id}/whep":     {who: "admin police", path: "/api/v1/cameras/cam-01/whep"}, // police: permitted camera
	"OPTIONS /api/v1/cameras/{id}/whep":  {who: "public"},
	"DELETE /api/v1/whep/{session}":      {who: "admin police"},
	"POST /api/v1/live/whip":             {who: "admin head"},
	"DELETE /api/v1/live/whip/{id}":      {who: "admin head"},
	"PATCH /api/v1/live/whip/{id}":       {who: "admin head"},
}

// caller is one identity of the matrix: a bearer token and a cookie session.
type caller struct {
	name   string
	token  string
	cookie *http.Cookie
	csrf   string
}

// formLogin signs in through the web app's form and returns the session
// cookie, using a client bound to local address from (empty: default).
func formLogin(t *testing.T, base, from, user, pw string) (int, *http.Cookie) {
	t.Helper()
	hc := clientFrom(from)
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := hc.PostForm(base+"/app/login", url.Values{"username": {user}, "password": {pw}, "next": {"/app/"}})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == "loalang_session" && c.Value != "" {
			return resp.StatusCode, c
		}
	}
	return resp.StatusCode, nil
}

// clientFrom is an HTTP client whose connections come from local address
// ip (any 127/8 address is local on Linux), to test throttling by source.
func clientFrom(ip string) *http.Client {
	if ip == "" {
		return &http.Client{Timeout: 30 * time.Second}
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

func matrixPath(pattern, concrete string) (method, path string) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = "GET", pattern
	}
	if concrete != "" {
		return method, concrete
	}
	path = strings.ReplaceAll(path, "{$}", "")
	for _, p := range []string{"{id}", "{username}", "{session}"} {
		path = strings.ReplaceAll(path, p, "no-such-"+strings.Trim(p, "{}"))
	}
	return method, path
}

// TestAccessMatrix calls every route the daemon registers as anonymous,
// police, head and admin: 401 for anonymous, 403 for a role that may not,
// and neither for a role that may (the request itself may still be bad:
// it carries no body). Pages are checked on cookie sessions. Police may
// watch only the cameras they were given.
func TestAccessMatrix(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), 1)
	for _, id := range []string{"cam-01", "cam-02"} {
		on := true
		cfg.Cameras = append(cfg.Cameras, config.Camera{ID: id, Name: id, URL: "rtsp://127.0.0.1:9/" + id, OnDemand: &on})
	}
	// A relay board on a missing port registers the hall routes.
	cfg.RelayBoards = []config.RelayBoard{{ID: "relay-01", Port: filepath.Join(cfg.DataDir, "no-such-tty"), Baud: 9600, SlaveID: 1}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, cfg)
	base := "http://" + d.Ready().HTTP
	admin := login(t, base, "admin", adminPassword(t, cfg.DataDir))
	for _, u := range []map[string]any{
		{"username": "congan", "password": "mot-hai-ba-bon", "role": "police", "cameras": []string{"cam-01"}},
		{"username": "truongthon", "password": "mot-hai-ba-bon", "role": "head"},
	} {
		if code, body := admin.do("POST", "/api/v1/users", u); code != 201 {
			t.Fatalf("create user: %d %s", code, body)
		}
	}
	callers := []*caller{{name: "anonymous"}}
	for _, c := range []struct{ name, user, pw string }{
		{"police", "congan", "mot-hai-ba-bon"}, {"head", "truongthon", "mot-hai-ba-bon"}, {"admin", "admin", adminPassword(t, cfg.DataDir)},
	} {
		_, cookie := formLogin(t, base, "", c.user, c.pw)
		if cookie == nil {
			t.Fatalf("form login %s", c.user)
		}
		callers = append(callers, &caller{name: c.name, token: login(t, base, c.user, c.pw).token, cookie: cookie})
	}

	// The table and the registered routes are the same set.
	var registered []string
	for _, r := range d.Routes() {
		registered = append(registered, r.Pattern)
		e, ok := accessMatrix[r.Pattern]
		if !ok {
			t.Errorf("route %q has no access-matrix entry: say who may call it", r.Pattern)
			continue
		}
		var roles []string
		for _, role := range r.Roles {
			roles = append(roles, string(role))
		}
		want := strings.Fields(e.who)
		if e.who == "public" {
			want = nil
		}
		slices.Sort(roles)
		slices.Sort(want)
		if !slices.Equal(roles, want) || e.page != r.Page {
			t.Errorf("route %q is registered for %v (page %v), the matrix says %q (page %v)", r.Pattern, roles, r.Page, e.who, e.page)
		}
	}
	for p := range accessMatrix {
		if !slices.Contains(registered, p) {
			t.Errorf("matrix entry %q matches no registered route", p)
		}
	}

	hc := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	call := func(c *caller, method, path string, page bool) (int, string) {
		req, _ := http.NewRequest(method, base+path, nil)
		switch {
		case page && c.cookie != nil:
			req.AddCookie(c.cookie)
		case c.token != "":
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header.Get("Location")
	}
	patterns := slices.Sorted(func(yield func(string) bool) {
		for p := range accessMatrix {
			if !yield(p) {
				return
			}
		}
	})
	// Sign-outs last: they end the caller's session.
	slices.SortStableFunc(patterns, func(a, b string) int {
		return boolInt(strings.Contains(a, "logout")) - boolInt(strings.Contains(b, "logout"))
	})
	checked := 0
	for _, p := range patterns {
		e := accessMatrix[p]
		method, path := matrixPath(p, e.path)
		for _, c := range callers {
			code, loc := call(c, method, path, e.page)
			allowed := e.who == "public" || strings.Contains(" "+e.who+" ", " "+c.name+" ")
			switch {
			case e.page && c.name == "anonymous":
				if code != http.StatusSeeOther || !strings.HasPrefix(loc, "/app/login") {
					t.Errorf("%s %s as %s: %d to %q, want 303 to the sign-in page", method, path, c.name, code, loc)
				}
			case !allowed && c.name == "anonymous":
				if code != http.StatusUnauthorized {
					t.Errorf("%s %s as %s: %d, want 401", method, path, c.name, code)
				}
			case !allowed:
				if code != http.StatusForbidden {
					t.Errorf("%s %s as %s: %d, want 403", method, path, c.name, code)
				}
			case e.who == "public" && (code == http.StatusForbidden || code >= 500 && code != http.StatusServiceUnavailable):
				t.Errorf("%s %s as %s: %d, want it allowed", method, path, c.name, code) // a sign-in may answer 401
			case e.who != "public" && (code == http.StatusUnauthorized || code == http.StatusForbidden || code >= 500 && code != http.StatusServiceUnavailable):
				t.Errorf("%s %s as %s: %d, want it allowed", method, path, c.name, code)
			}
			checked++
		}
	}
	t.Logf("%d routes × %d callers checked", len(patterns), len(callers))

	// Police × camera permission: congan was given cam-01, not cam-02.
	police := &client{t: t, base: base, token: login(t, base, "congan", "mot-hai-ba-bon").token}
	adm := &client{t: t, base: base, token: login(t, base, "admin", adminPassword(t, cfg.DataDir)).token}
	if code, _, _ := whep(police, "cam-02", "application/sdp", "v=0\r\n"); code != 403 {
		t.Errorf("police WHEP on a camera not given: %d, want 403", code)
	}
	if code, _, _ := whep(police, "cam-01", "application/sdp", "v=0\r\n"); code == 403 || code == 401 {
		t.Errorf("police WHEP on its camera: %d, want it allowed", code)
	}
	if code, _, _ := whep(adm, "cam-02", "application/sdp", "v=0\r\n"); code == 403 || code == 401 {
		t.Errorf("admin WHEP: %d, want it allowed", code)
	}
	if code, list, body := cameraList(police); code != 200 || len(list) != 1 || list[0].ID != "cam-01" {
		t.Errorf("police camera list: %d %s, want cam-01 only", code, body)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestLoginAbuseEndToEnd runs the sign-in findings against the whole
// daemon over real sockets, as an attacker would.
func TestLoginAbuseEndToEnd(t *testing.T) {
	restore := daemon.SetAuditCheckEvery(200 * time.Millisecond)
	defer restore()
	cfg := testConfig(t, t.TempDir(), 1)
	d := startDaemon(t, cfg)
	base := "http://" + d.Ready().HTTP
	pw := adminPassword(t, cfg.DataDir)
	post := func(from string, body []byte) int {
		resp, err := clientFrom(from).Post(base+"/api/v1/login", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	creds := func(user, pw string) []byte {
		b, _ := json.Marshal(map[string]string{"username": user, "password": pw})
		return b
	}

	t.Run("finding 7: guessing from one address does not lock the owner out", func(t *testing.T) {
		for i := range 5 {
			post("127.0.0.9", creds("admin", fmt.Sprint("guess-", i)))
		}
		if code := post("127.0.0.9", creds("admin", "guess-6")); code != 429 {
			t.Fatalf("sixth guess: %d, want 429", code)
		}
		if code := post("127.0.0.2", creds("admin", pw)); code != 200 {
			t.Fatalf("the admin from another address (API): %d, want 200", code)
		}
		if code, cookie := formLogin(t, base, "127.0.0.3", "admin", pw); code != http.StatusSeeOther || cookie == nil {
			t.Fatalf("the admin from another address (form): %d", code)
		}
	})

	admin := login(t, base, "admin", pw) // from 127.0.0.1

	t.Run("finding 13: an oversized JSON body is 413", func(t *testing.T) {
		if code := post("127.0.0.4", creds(strings.Repeat("a", 100<<10), "x")); code != http.StatusRequestEntityTooLarge {
			t.Fatalf("100 kB login body: %d, want 413", code)
		}
	})

	t.Run("finding 2: an anonymous flood grows the audit by a bounded amount", func(t *testing.T) {
		db := filepath.Join(cfg.DataDir, daemon.DBFile)
		before, _ := os.Stat(db)
		long := creds(strings.Repeat("A", 60<<10), "x")
		for range 300 {
			post("127.0.0.5", long)
		}
		after, _ := os.Stat(db)
		t.Logf("300 sign-ins with a 60 kB username: store %d → %d bytes", before.Size(), after.Size())
		if grew := after.Size() - before.Size(); grew > 256<<10 {
			t.Fatalf("store grew %d bytes", grew)
		}
	})

	t.Run("finding 8: the CSV export defuses formulas", func(t *testing.T) {
		post("127.0.0.6", creds("-1-1", "x"))
		code, body := admin.do("GET", "/api/v1/audit?format=csv", nil)
		rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
		if code != 200 || err != nil {
			t.Fatalf("csv: %d %v", code, err)
		}
		found := false
		for _, row := range rows[1:] {
			for _, cell := range row[1:] {
				if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
					t.Fatalf("cell %q starts a formula", cell)
				}
				found = found || cell == "'-1-1"
			}
		}
		if !found {
			t.Fatal("the failed sign-in of -1-1 is not in the export")
		}
	})

	t.Run("finding 3: a password change ends the other sessions", func(t *testing.T) {
		if code, body := admin.do("POST", "/api/v1/users", map[string]any{"username": "truongthon", "password": "mot-hai-ba-bon", "role": "head"}); code != 201 {
			t.Fatalf("create: %d %s", code, body)
		}
		phone := login(t, base, "truongthon", "mot-hai-ba-bon")
		stolen := login(t, base, "truongthon", "mot-hai-ba-bon")
		if code, body := phone.do("PUT", "/api/v1/me/password", map[string]string{"old_password": "mot-hai-ba-bon", "new_password": "nam-sau-bay-tam"}); code != 204 {
			t.Fatalf("own change: %d %s", code, body)
		}
		if code, _ := stolen.do("GET", "/api/v1/me", nil); code != 401 {
			t.Fatalf("old session after own change: %d, want 401", code)
		}
		if code, _ := phone.do("GET", "/api/v1/me", nil); code != 200 {
			t.Fatalf("changing session after own change: %d, want 200", code)
		}
		if code, _ := admin.do("PUT", "/api/v1/users/truongthon", map[string]string{"password": "chin-muoi-muoi-mot"}); code != 200 {
			t.Fatalf("reset: %d", code)
		}
		if code, _ := phone.do("GET", "/api/v1/me", nil); code != 401 {
			t.Fatalf("session after the admin's reset: %d, want 401", code)
		}
	})

	t.Run("finding 5: an unknown user costs as much as a wrong password", func(t *testing.T) {
		best := func(user string, from int) time.Duration {
			b := time.Hour
			for i := range 3 {
				start := time.Now()
				if code := post(fmt.Sprintf("127.0.1.%d", from+i), creds(user, "wrong-password")); code != 401 {
					t.Fatalf("%s: %d", user, code)
				}
				b = min(b, time.Since(start))
			}
			return b
		}
		if code, body := admin.do("POST", "/api/v1/users", map[string]any{"username": "thu-ky", "password": "mot-hai-ba-bon", "role": "head"}); code != 201 {
			t.Fatalf("create: %d %s", code, body)
		}
		known, unknown := best("thu-ky", 1), best("khong-co-ai", 10)
		t.Logf("best of 3: wrong password %v, unknown user %v", known, unknown)
		if float64(unknown) < 0.3*float64(known) {
			t.Fatalf("an unknown user answers in %v, a wrong password in %v: usernames can be found by timing", unknown, known)
		}
	})

	t.Run("the audit size alarm reaches /healthz and the metrics", func(t *testing.T) {
		code, body := admin.do("GET", "/metrics", nil)
		if code != 200 || !bytes.Contains(body, []byte("loalang_audit_bytes ")) || !bytes.Contains(body, []byte(`loalang_component_up{component="audit"} 1`)) ||
			!bytes.Contains(body, []byte(`loalang_login_attempts_total{result="throttled"}`)) {
			t.Fatalf("metrics: %d, audit gauges, audit component or sign-in counts missing", code)
		}
		if code, _ := admin.do("GET", "/healthz", nil); code != 200 {
			t.Fatalf("healthz before: %d", code)
		}
	})
}

// TestAuditAlarm fills the audit trail towards a small bound and waits for
// the "audit" component to go bad on /healthz, naming the bound.
func TestAuditAlarm(t *testing.T) {
	restore := daemon.SetAuditCheckEvery(100 * time.Millisecond)
	defer restore()
	cfg := testConfig(t, t.TempDir(), 1)
	cfg.Audit.MaxBytes = 48 << 10 // below the validated minimum, to fill it quickly
	d := startDaemon(t, cfg)
	base := "http://" + d.Ready().HTTP
	admin := login(t, base, "admin", adminPassword(t, cfg.DataDir))
	anon := &client{t: t, base: base}
	if code, body := admin.do("POST", "/api/v1/users", map[string]any{"username": "filler", "password": "mot-hai-ba-bon", "role": "head"}); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	var body []byte
	eventually(t, 60*time.Second, "audit alarm on /healthz", func() bool {
		// Each user change is one audit entry.
		for range 20 {
			if code, _ := admin.do("PUT", "/api/v1/users/filler", map[string]any{"role": "head"}); code != 200 {
				t.Fatalf("update: %d", code)
			}
		}
		var code int
		code, body = anon.do("GET", "/healthz", nil)
		return code == 503 && bytes.Contains(body, []byte(`"component":"audit"`))
	})
	if !bytes.Contains(body, []byte("audit.max_bytes")) {
		t.Fatalf("healthz: %s", body)
	}
	if _, m := admin.do("GET", "/metrics", nil); !bytes.Contains(m, []byte(`loalang_component_up{component="audit"} 0`)) {
		t.Fatal("metrics do not show the audit component down")
	}
	t.Logf("healthz: %s", body)
}
