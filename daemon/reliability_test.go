package daemon_test

// The storage half of `make reliability` (scripts/reliability.sh): a full
// disk, the damage matrix and the kill -9 crash loop. Each prints its
// figures and can fail. make test runs the light forms; the long forms
// run with LOALANG_RELIABILITY=full.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loalang/loalang/daemon"
	"github.com/loalang/loalang/firmware-sim/speaker"
	"github.com/loalang/loalang/internal/audiotest"
	"github.com/loalang/loalang/store"
)

// mountTmpfs mounts a tmpfs of size at a new directory for the test, or
// skips it when that is impossible (mount needs root).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	os.Mkdir(dir, 0o700)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a %s tmpfs for the disk-full test (it needs root): %v %s", size, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// fillDisk writes filler files in dir until the file system is full and
// returns a function that frees the space again.
func fillDisk(t *testing.T, dir string) (free func()) {
	t.Helper()
	var files []string
	chunk := make([]byte, 64<<10)
	for i := 0; ; i++ {
		path := filepath.Join(dir, fmt.Sprintf("filler-%d", i))
		files = append(files, path)
		f, err := os.Create(path)
		if err != nil {
			break
		}
		var werr error
		for werr == nil {
			_, werr = f.Write(chunk)
		}
		f.Close()
		if !errors.Is(werr, syscall.ENOSPC) {
			t.Fatalf("fill: %v", werr)
		}
		if len(chunk) == 1 {
			break
		}
		chunk = chunk[:len(chunk)/4+1] // fill the last blocks with smaller writes
	}
	return func() {
		for _, f := range files {
			os.Remove(f)
		}
	}
}

type healthView struct {
	Status   string `json:"status"`
	Problems []struct {
		Component string `json:"component"`
		Reason    string `json:"reason"`
	} `json:"problems"`
}

func getHealth(t *testing.T, base string) healthView {
	t.Helper()
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h healthView
	if resp.StatusCode == 200 {
		h.Status = "ok"
		return h
	}
	json.NewDecoder(resp.Body).Decode(&h)
	return h
}

func (h healthView) reason(component string) string {
	for _, p := range h.Problems {
		if p.Component == component {
			return p.Reason
		}
	}
	return ""
}

func tmpFiles(dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, ".tmp") {
			out = append(out, path)
		}
		return nil
	})
	return out
}

// TestReliabilityDiskFull is finding 5 on a real 8 MiB tmpfs: with the
// disk full, requests that must write answer 507 with the reason (never
// 500 "internal error"), an alarm is up while the disk is full, broadcasts
// still play and their records and audit entries are held and retried
// until space returns (the old code saved them once and lost them), and
// loalangd starts on a full disk without leaving .tmp files.
func TestReliabilityDiskFull(t *testing.T) {
	defer daemon.SetDiskCheckEvery(100 * time.Millisecond)()
	dir := mountTmpfs(t, "8m")
	cfg := testConfig(t, dir, 3)
	cfg.MQTT.PublicURL = "tcp://192.0.2.1:1883" // a fixed bundle, as with a fixed port in the field
	start := func() (*daemon.Daemon, *client, map[string]*speaker.Speaker) {
		d, err := daemon.New(context.Background(), cfg, testLogger(t))
		if err != nil {
			t.Fatalf("start: %v", err)
		}
		spk := startSpeakers(t, dir, func(c *speaker.Config) { c.Broker = "tcp://" + d.Ready().MQTT })
		waitReady(t, spk)
		return d, login(t, "http://"+d.Ready().HTTP, "admin", adminPassword(t, dir)), spk
	}
	d, c, _ := start()
	base := "http://" + d.Ready().HTTP
	info := uploadTone(t, c, 600, 400)
	eventually(t, 10*time.Second, "the first backup", func() bool { l, _ := store.Backups(filepath.Join(dir, daemon.DBFile)); return len(l) > 0 })

	free := fillDisk(t, dir)
	h := getHealth(t, base)
	eventually(t, 5*time.Second, "the disk alarm", func() bool { h = getHealth(t, base); return strings.Contains(h.reason("disk"), "disk full") })
	t.Logf("alarm: disk: %s", h.reason("disk"))

	// Writes that need new space answer 507 with the reason.
	code, body := c.upload("full.wav", audiotest.WAV(audiotest.Tone(700, 0.5, 16000, 2000), 16000, 1))
	if code != http.StatusInsufficientStorage || !strings.Contains(string(body), "no space left") {
		t.Fatalf("upload on a full disk: %d %s, want 507 naming the cause", code, body)
	}
	fmt.Printf("disk full: upload → %d %s\n", code, strings.TrimSpace(string(body)))
	statuses := map[int]int{code: 1}
	for i := range 5 {
		code, body = c.do("POST", "/api/v1/schedules", map[string]any{"id": fmt.Sprintf("full-%d", i), "name": strings.Repeat("lịch phát thanh ", 40), "cron": "0 0 6 * * *",
			"zones": []string{"a"}, "source": map[string]any{"kind": "media", "media_id": info.ID}})
		statuses[code]++
		if code != 201 && code != http.StatusInsufficientStorage {
			t.Fatalf("schedule on a full disk: %d %s, want 201 or 507", code, body)
		}
		lc := &client{t: t, base: base}
		code, body = lc.do("POST", "/api/v1/login", map[string]string{"username": "admin", "password": adminPassword(t, dir)})
		statuses[code]++
		if code != 200 && code != http.StatusInsufficientStorage {
			t.Fatalf("login on a full disk: %d %s, want 200 or 507", code, body)
		}
	}

	// Broadcasts are accepted and played; until a write fails they are
	// simply saved, so go on until the store holds some for retry.
	var ids []string
	pending := ""
	for i := 0; i < 12 && (pending == "" || len(ids) < 3); i++ {
		code, body := c.do("POST", "/api/v1/broadcasts", map[string]any{"media_id": info.ID, "zones": []string{"a", "b", "c"}, "priority": "normal"})
		if code != 201 {
			t.Fatalf("broadcast on a full disk: %d %s", code, body)
		}
		var b broadcastView
		json.Unmarshal(body, &b)
		ids = append(ids, b.ID)
		eventually(t, 20*time.Second, "broadcast played", func() bool { b := c.broadcast(b.ID); return b.State == "done" && len(b.Devices) == 3 })
		if p := getHealth(t, base).reason("store"); p != "" {
			pending = p
		}
	}
	if pending == "" {
		t.Fatalf("%d broadcasts on a full disk and no write failed", len(ids))
	}
	t.Logf("alarm: store: %s", pending)
	fmt.Printf("disk full: statuses %v; %d broadcasts played; store alarm %q\n", statuses, len(ids), pending)
	if statuses[http.StatusInternalServerError] > 0 {
		t.Fatal("a 500 on a full disk")
	}

	// Space returns: the held writes land and the alarms clear.
	free()
	took := eventually(t, 10*time.Second, "held writes saved, alarms clear", func() bool { return getHealth(t, base).Status == "ok" })
	fmt.Printf("disk full: space back, held writes saved and alarms clear after %v\n", took.Round(time.Millisecond))
	d.Close()
	if tmp := tmpFiles(dir); len(tmp) > 0 {
		t.Fatalf("temporary files left: %v", tmp)
	}

	// Every broadcast has its record and one broadcast.done entry.
	db, err := store.Open(filepath.Join(dir, daemon.DBFile), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	events, err := db.AuditRange(time.Time{}, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	doneAudits := map[string]int{}
	for _, e := range events {
		if e.Action == "broadcast.done" {
			doneAudits[e.Target]++
		}
	}
	for _, id := range ids {
		rec, err := store.Get[broadcastView](db, store.Broadcasts, id)
		if err != nil || rec.State != "done" || doneAudits[id] != 1 {
			t.Errorf("broadcast %s after the restart: record %+v (%v), %d broadcast.done entries", id, rec.State, err, doneAudits[id])
		}
	}
	db.Close()
	fmt.Printf("disk full: %d of %d broadcasts have their record and one broadcast.done entry after the restart\n", len(ids), len(ids))

	// loalangd starts on a full disk (no unchanged file is rewritten) and
	// says the disk is full.
	free = fillDisk(t, dir)
	defer free()
	d, err = daemon.New(context.Background(), cfg, testLogger(t))
	if err != nil {
		t.Fatalf("start on a full disk: %v", err)
	}
	defer d.Close()
	eventually(t, 5*time.Second, "the disk alarm after a start on a full disk", func() bool {
		return strings.Contains(getHealth(t, "http://"+d.Ready().HTTP).reason("disk"), "disk full")
	})
	if tmp := tmpFiles(dir); len(tmp) > 0 {
		t.Fatalf("temporary files left: %v", tmp)
	}
	fmt.Println("disk full: loalangd starts on a full disk and raises the disk alarm")
}
