package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loalang/loalang/camera"
	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/daemon"
	"github.com/loalang/loalang/firmware-sim/camsim"
	"github.com/loalang/loalang/store"
)

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestCameraSecretsNeverShown is issue 6: cameras whose credentials ride in
// the query ("?user=admin&pw=…"), the user information, the path (Xiongmai
// "/user=admin_password=…") or a config-file URL (user information and a
// "cred" key) are watched through simulated cameras that demand exactly
// those credentials, so the relay must dial with them; yet the secret shows
// in no API response (create, list, update), no audit entry and no log line
// at debug level, and the store keeps it apart from the URL.
func TestCameraSecretsNeverShown(t *testing.T) {
	const secret = "S3cr3t-9x"
	_, queryURL := startCam(t, camsim.Options{Path: "/q", Query: "user=admin&pw=" + secret})
	_, authURL := startCam(t, camsim.Options{Path: "/a", Username: "admin", Password: secret})
	pathSecret := "/user=admin_password=" + secret + "_channel=1_stream=0.sdp"
	_, pathURL := startCam(t, camsim.Options{Path: pathSecret})
	_, fileURL := startCam(t, camsim.Options{Path: "/f", Username: "admin", Password: secret, Query: "channel=1&cred=" + secret})

	dir := t.TempDir()
	cfg := cameraConfig(t, dir, config.Camera{ID: "tep", Name: "Tệp", URL: strings.Replace(fileURL, "rtsp://", "rtsp://admin:"+secret+"@", 1) + "?channel=1&cred=" + secret})
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	d, err := daemon.New(ctx, cfg, slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	closed := false
	defer func() {
		cancel()
		if !closed {
			d.Close()
		}
	}()
	admin := login(t, "http://"+d.Ready().HTTP, "admin", adminPassword(t, dir))
	noSecret := func(what string, body []byte) {
		t.Helper()
		if bytes.Contains(body, []byte(secret)) {
			t.Fatalf("%s shows the camera secret: %s", what, body)
		}
	}

	for _, c := range []struct{ id, url string }{
		{"query", queryURL + "?user=admin&pw=" + secret},
		{"auth", strings.Replace(authURL, "rtsp://", "rtsp://admin:"+secret+"@", 1)},
		{"path", pathURL},
	} {
		code, body := admin.do("POST", "/api/v1/cameras", map[string]any{"id": c.id, "url": c.url})
		noSecret("POST "+c.id, body)
		var v struct {
			URL       string `json:"url"`
			HasSecret bool   `json:"has_secret"`
		}
		json.Unmarshal(body, &v)
		if code != 201 || !v.HasSecret || !strings.Contains(v.URL, "***") {
			t.Fatalf("POST %s: %d %s, want 201 with has_secret and *** in the URL", c.id, code, body)
		}
		t.Logf("%s shown as %s", c.id, v.URL)
	}
	// Rename, and send back the URL as shown: the stored secret stays.
	code, body := admin.do("GET", "/api/v1/cameras", nil)
	noSecret("GET /api/v1/cameras", body)
	var list []struct{ ID, URL string }
	json.Unmarshal(body, &list)
	if code != 200 || len(list) != 4 {
		t.Fatalf("list: %d %s", code, body)
	}
	for _, c := range list {
		code, body := admin.do("PUT", "/api/v1/cameras/"+c.ID, map[string]any{"name": "Cam " + c.ID, "url": c.URL})
		noSecret("PUT "+c.ID, body)
		if code != 200 {
			t.Fatalf("PUT %s with the shown URL %s: %d %s", c.ID, c.URL, code, body)
		}
	}
	// The relay still dials with the secrets: every camera plays.
	for _, id := range []string{"query", "auth", "path", "tep"} {
		v, loc := watchPion(t, admin, id)
		eventually(t, 15*time.Second, "frames from camera "+id, func() bool { return v.Count() > 0 })
		admin.do("DELETE", loc, nil)
		v.Close()
	}
	_, list2, raw := cameraList(admin)
	noSecret("GET /api/v1/cameras after viewing", raw)
	for _, c := range list2 {
		if c.State == "error" {
			t.Errorf("camera %s in error: %s", c.ID, raw)
		}
	}
	noSecret("audit CSV", []byte(auditActions(t, admin)))
	_, auditJSON := admin.do("GET", "/api/v1/audit", nil)
	noSecret("audit JSON", auditJSON)
	if !strings.Contains(auditActions(t, admin), "camera.update,query") {
		t.Error("camera.update not audited")
	}

	cancel()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	out := logs.String()
	if !strings.Contains(out, `"camera added"`) || !strings.Contains(out, "camera ingest started") {
		t.Fatalf("log lacks the camera lines:\n%s", out)
	}
	if i := strings.Index(out, secret); i >= 0 {
		t.Fatalf("log holds the camera secret: …%s…", out[max(0, i-300):min(len(out), i+100)])
	}
	// In bbolt the secret is apart from the URL.
	db, err := store.Open(filepath.Join(dir, daemon.DBFile), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	recs, err := store.List[camera.Record](db, store.Cameras, "")
	if err != nil || len(recs) != 4 {
		t.Fatalf("stored cameras: %v %v", recs, err)
	}
	for _, r := range recs {
		if strings.Contains(r.URL, secret) {
			t.Errorf("stored URL of %s holds the secret: %s", r.ID, r.URL)
		}
		if r.Secret.IsZero() {
			t.Errorf("stored camera %s has no secret", r.ID)
		}
	}
}

// TestCameraLegacyRecordMigrated: a camera stored by an earlier version,
// its credentials inside the URL, has them moved out of the stored URL at
// the next start, and still plays.
func TestCameraLegacyRecordMigrated(t *testing.T) {
	const secret = "S3cr3t-legacy"
	_, camURL := startCam(t, camsim.Options{Path: "/old", Username: "admin", Password: secret, Query: "pwd=" + secret})
	dir := t.TempDir()
	cfg := cameraConfig(t, dir)
	d := startDaemon(t, cfg) // creates the store and the admin
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, daemon.DBFile)
	db, err := store.Open(path, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	legacy := camera.Record{ID: "cu", Name: "Cũ", URL: strings.Replace(camURL, "rtsp://", "rtsp://admin:"+secret+"@", 1) + "?pwd=" + secret, Updated: time.Now()}
	if err := store.Put(db, store.Cameras, legacy.ID, legacy); err != nil {
		t.Fatal(err)
	}
	db.Close()

	d = startDaemon(t, cfg)
	admin := login(t, "http://"+d.Ready().HTTP, "admin", adminPassword(t, dir))
	_, list, raw := cameraList(admin)
	if len(list) != 1 || bytes.Contains(raw, []byte(secret)) {
		t.Fatalf("cameras: %s", raw)
	}
	v, _ := watchPion(t, admin, "cu")
	eventually(t, 15*time.Second, "frames from the migrated camera", func() bool { return v.Count() > 0 })
	v.Close()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = store.Open(path, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r, err := store.Get[camera.Record](db, store.Cameras, "cu")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(r.URL, secret) || r.Secret.Password != secret || len(r.Secret.Params) != 1 {
		t.Fatalf("stored after migration: url %s, secret set %v", r.URL, !r.Secret.IsZero())
	}
	t.Logf("stored URL after migration: %s", r.URL)
}
