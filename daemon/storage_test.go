package daemon_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loalang/loalang/daemon"
	"github.com/loalang/loalang/store"
	bolt "go.etcd.io/bbolt"
)

// TestEarlierInstallRefused is finding 3: with the database missing or
// empty next to an earlier install, the old daemon started as a fresh
// install, wrote a new admin password and overwrote provisioning.json with
// new secrets, locking out every speaker. Now it refuses, names the
// files it found and how to restore or re-initialise, and changes no
// file; restoring the backup or re-initialising brings it back with the
// devices' credentials from the bundle, so the speakers come online.
func TestEarlierInstallRefused(t *testing.T) {
	for _, kind := range []string{"missing", "empty", "no-data"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			cfg := testConfig(t, dir, 3)
			d, err := daemon.New(context.Background(), cfg, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			dbPath := filepath.Join(dir, daemon.DBFile)
			eventually(t, 10*time.Second, "the first backup", func() bool { l, _ := store.Backups(dbPath); return len(l) > 0 })
			d.Close()
			bundle, _ := os.ReadFile(filepath.Join(dir, daemon.BundleFile))
			pw := adminPassword(t, dir)
			switch kind {
			case "missing":
				os.Remove(dbPath)
			case "empty":
				os.Truncate(dbPath, 0)
			case "no-data": // bbolt's meta pages only: the first transaction never committed
				os.Remove(dbPath)
				b, err := bolt.Open(dbPath, 0o600, nil)
				if err != nil {
					t.Fatal(err)
				}
				b.Close()
			}
			dbSum := fileSum(dbPath)

			_, err = daemon.New(context.Background(), cfg, testLogger(t))
			if !errors.Is(err, daemon.ErrEarlierInstall) {
				t.Fatalf("start on a %s database: %v, want ErrEarlierInstall", kind, err)
			}
			for _, want := range []string{dbPath, daemon.BundleFile, "loalangd restore --data-dir " + dir, "loalangd reinit --data-dir " + dir} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("message lacks %q:\n%v", want, err)
				}
			}
			t.Log(err)
			if again, _ := os.ReadFile(filepath.Join(dir, daemon.BundleFile)); string(again) != string(bundle) {
				t.Fatal("provisioning.json was rewritten")
			}
			if adminPassword(t, dir) != pw {
				t.Fatal("the admin password file was rewritten")
			}
			if fileSum(dbPath) != dbSum {
				t.Fatal("the database was created or written")
			}

			newPW := pw
			if kind != "empty" {
				list, _ := store.Backups(dbPath)
				if _, err := store.Restore(dbPath, list[0], time.Second); err != nil {
					t.Fatal(err)
				}
			} else {
				file, err := daemon.Reinitialize(cfg)
				if err != nil {
					t.Fatal(err)
				}
				if newPW = adminPassword(t, dir); newPW == pw || file != filepath.Join(dir, daemon.AdminPassFile) {
					t.Fatalf("reinit: admin password file %s not renewed", file)
				}
			}
			d2 := startDaemon(t, cfg)
			if again, _ := os.ReadFile(filepath.Join(dir, daemon.BundleFile)); secrets(t, again) != secrets(t, bundle) {
				t.Fatal("device secrets in provisioning.json changed")
			}
			c := login(t, "http://"+d2.Ready().HTTP, "admin", newPW)
			startSpeakers(t, dir, nil)
			eventually(t, 10*time.Second, "3 speakers online with the old bundle", allOnline(c, 3))
		})
	}
}

// TestRestartRewritesNothing is part of finding 5: a start that changes
// nothing leaves provisioning.json alone (the old code rewrote it on
// every start, so a full disk could not start, and left a .tmp behind).
func fileSum(path string) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "absent"
	}
	return fmt.Sprintf("%x", sha256.Sum256(raw))
}

func TestRestartRewritesNothing(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir, 3)
	cfg.MQTT.PublicURL = "tcp://192.0.2.1:1883" // the bundle's broker address stays the same
	d, err := daemon.New(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	path := filepath.Join(dir, daemon.BundleFile)
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	os.Chtimes(path, old, old)
	d2 := startDaemon(t, cfg)
	_ = d2
	if info, err := os.Stat(path); err != nil || !info.ModTime().Equal(old) {
		t.Fatalf("provisioning.json rewritten on a start that changed nothing: %v %v", info.ModTime(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(cfg.DataDir, ".*.tmp")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

// TestBroadcastEndAuditedOnce is finding 6: each speaker's final report
// used to audit the broadcast's end again (28 broadcasts to 50 speakers
// made 1,428 broadcast.done entries). Now each broadcast has one terminal
// entry, and the per-device detail is in its record.
func TestBroadcastEndAuditedOnce(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), 9)
	d := startDaemon(t, cfg)
	speakers := startSpeakers(t, cfg.DataDir, nil)
	c := login(t, "http://"+d.Ready().HTTP, "admin", adminPassword(t, cfg.DataDir))
	waitReady(t, speakers)
	info := uploadTone(t, c, 800, 600)
	var ids []string
	for range 3 {
		code, body := c.do("POST", "/api/v1/broadcasts", map[string]any{"media_id": info.ID, "zones": []string{"a", "b", "c"}, "priority": "normal"})
		if code != 201 {
			t.Fatalf("broadcast: %d %s", code, body)
		}
		var b broadcastView
		json.Unmarshal(body, &b)
		ids = append(ids, b.ID)
		eventually(t, 20*time.Second, "done with 9 final reports", func() bool {
			b := c.broadcast(b.ID)
			return b.State == "done" && len(b.Devices) == 9
		})
	}
	// Let any straggling report land before counting.
	time.Sleep(500 * time.Millisecond)
	done := map[string]int{}
	for _, e := range c.audit(time.Time{}) {
		if e.Action == "broadcast.done" {
			done[e.Target]++
		}
	}
	total := 0
	for _, id := range ids {
		total += done[id]
		if done[id] != 1 {
			t.Errorf("broadcast %s: %d broadcast.done entries, want 1", id, done[id])
		}
	}
	t.Logf("%d broadcasts to 9 speakers: %d broadcast.done entries", len(ids), total)
}

// TestBundleLostRefused: with provisioning.json gone but the devices'
// credentials in the store, the old code issued new secrets for every
// device (locking out every speaker flashed with the lost bundle). Now it
// refuses and names the deliberate way out, `loalangd reissue`, after
// which the devices with the new bundle come online.
func TestBundleLostRefused(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir, 3)
	d, err := daemon.New(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	bundle := filepath.Join(dir, daemon.BundleFile)
	old, _ := os.ReadFile(bundle)
	os.Remove(bundle)
	_, err = daemon.New(context.Background(), cfg, testLogger(t))
	if !errors.Is(err, daemon.ErrBundleMissing) || !strings.Contains(err.Error(), "loalangd reissue") || !strings.Contains(err.Error(), "3 devices") {
		t.Fatalf("start without the bundle: %v", err)
	}
	if _, err := os.Stat(bundle); !os.IsNotExist(err) {
		t.Fatal("a new bundle was written")
	}
	if _, err := daemon.Reissue(cfg); err != nil {
		t.Fatal(err)
	}
	fresh, _ := os.ReadFile(bundle)
	if secrets(t, fresh) == secrets(t, old) {
		t.Fatal("reissue kept the old secrets")
	}
	d2 := startDaemon(t, cfg)
	c := login(t, "http://"+d2.Ready().HTTP, "admin", adminPassword(t, dir))
	startSpeakers(t, dir, nil)
	eventually(t, 10*time.Second, "3 speakers online with the reissued bundle", allOnline(c, 3))
}
