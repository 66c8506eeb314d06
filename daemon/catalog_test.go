package daemon_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loalang/loalang/broadcast/media"
	"github.com/loalang/loalang/daemon"
	"github.com/loalang/loalang/store"
)

// TestLibraryCheckAtStart: a library entry whose clip file is missing is a
// fault of the "media" component on /healthz from the start, naming the
// clip; a file without an entry (as the uplink leaves) is not.
func TestLibraryCheckAtStart(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir, 1)
	missing := strings.Repeat("ab", 32)
	orphan := strings.Repeat("cd", 32)
	db, err := store.Open(filepath.Join(cfg.DataDir, daemon.DBFile), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Put(db, store.Media, missing, media.Info{ID: missing, SourceName: "gone.wav"}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	mdir := filepath.Join(cfg.DataDir, "media")
	if err := os.MkdirAll(mdir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mdir, media.FileName(orphan)), []byte("OggS"), 0o640); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, cfg)
	anon := &client{t: t, base: "http://" + d.Ready().HTTP}
	code, body := anon.do("GET", "/healthz", nil)
	if code != 503 || !bytes.Contains(body, []byte(`"component":"media"`)) || !bytes.Contains(body, []byte(missing)) {
		t.Fatalf("healthz: %d %s", code, body)
	}
	if bytes.Contains(body, []byte(orphan)) {
		t.Fatalf("an orphan file is reported as a fault: %s", body)
	}
}
