package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loalang/loalang/daemon"
	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/firmware-sim/speaker"
)

// fixtureDir holds the data directory the previous release (commit 01bf8aa,
// the main branch before `--version`) left behind, written by
// testdata/make-upgrade-fixture.sh: two users besides admin, one media
// item, one schedule using it, one camera added through the API, and the
// provisioning bundle with its (fixture-only) device secrets.
const fixtureDir = "testdata/upgrade-01bf8aa"

// copyFixture copies the fixture into a fresh data directory with the
// modes loalangd gives its files (git keeps only the executable bit).
func copyFixture(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(fixtureDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(fixtureDir, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o700)
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), raw, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestUpgradeOpensPreviousRelease follows docs/upgrade.md: with the old
// release stopped, `loalangd backup`, then the new binary starts on the
// same data directory. Users, devices (their credentials still admit a
// speaker), schedules, the media index and cameras are all there, and
// `--version` names the build.
func TestUpgradeOpensPreviousRelease(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "loalangd")
	ld := "-X github.com/loalang/loalang/daemon.Version=v9.9.9-test -X main.commit=0123abcd"
	if out, err := exec.Command("go", "build", "-ldflags", ld, "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "loalangd v9.9.9-test (commit 0123abcd, go1.") {
		t.Fatalf("--version: %q %v", out, err)
	}

	dir := copyFixture(t)
	var oldBundle wire.Bundle
	raw, _ := os.ReadFile(filepath.Join(dir, daemon.BundleFile))
	if err := json.Unmarshal(raw, &oldBundle); err != nil || len(oldBundle.Devices) == 0 {
		t.Fatalf("fixture bundle: %v", err)
	}
	// Step 2 of the upgrade path: a backup before the new binary runs.
	if out, err := exec.Command(bin, "backup", "--config", "../../configs/demo.yaml", "--data-dir", dir).CombinedOutput(); err != nil || !strings.Contains(string(out), "wrote backup") {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	cmd, ready, stderr := startBinary(t, bin, dir)
	base := "http://" + ready.HTTP
	pw, _ := os.ReadFile(filepath.Join(dir, daemon.AdminPassFile))
	tok := login(t, base, "admin", strings.TrimSpace(string(pw)))
	if tok2 := login(t, base, "truongthon", "fixture-pass-123456"); tok2 == "" {
		t.Fatal("the head's password from the old release does not work")
	}

	var users []struct {
		Username string   `json:"username"`
		Role     string   `json:"role"`
		Cameras  []string `json:"cameras"`
	}
	get(t, base, tok, "/api/v1/users", &users)
	var names []string
	for _, u := range users {
		names = append(names, u.Username+":"+u.Role+":"+strings.Join(u.Cameras, ","))
	}
	slices.Sort(names)
	if want := []string{"admin:admin:", "congan:police:cam-01", "truongthon:head:"}; !slices.Equal(names, want) {
		t.Fatalf("users %v, want %v", names, want)
	}

	var media []struct {
		ID         string `json:"id"`
		DurationMS int64  `json:"duration_ms"`
	}
	get(t, base, tok, "/api/v1/media", &media)
	if len(media) != 1 || media[0].DurationMS != 500 {
		t.Fatalf("media index: %+v", media)
	}
	var schedules []struct {
		ID     string `json:"id"`
		RRule  string `json:"rrule"`
		Next   string `json:"next"`
		Source struct {
			MediaID string `json:"media_id"`
		} `json:"source"`
	}
	get(t, base, tok, "/api/v1/schedules", &schedules)
	if len(schedules) != 1 || schedules[0].Source.MediaID != media[0].ID || schedules[0].Next == "" || !strings.Contains(schedules[0].RRule, "BYHOUR=6") {
		t.Fatalf("schedules: %+v", schedules)
	}
	var cams []struct {
		ID        string `json:"id"`
		HasSecret bool   `json:"has_secret"`
	}
	get(t, base, tok, "/api/v1/cameras", &cams)
	if !slices.ContainsFunc(cams, func(c struct {
		ID        string `json:"id"`
		HasSecret bool   `json:"has_secret"`
	}) bool {
		return c.ID == "cam-03" && c.HasSecret
	}) {
		t.Fatalf("cameras: %+v", cams)
	}

	// A speaker flashed from the old bundle still gets in.
	var spk wire.BundleDevice
	for _, d := range oldBundle.Devices {
		if d.ID == "spk-01" {
			spk = d
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := speaker.New(speaker.Config{ID: spk.ID, Site: oldBundle.Site, Broker: "tcp://" + ready.MQTT, Username: spk.Username, Password: spk.Password, Zones: spk.Zones, KeepPlayed: -1})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var devs []struct {
			ID     string `json:"id"`
			Online bool   `json:"online"`
		}
		get(t, base, tok, "/api/v1/devices", &devs)
		if len(devs) != 12 { // the demo's 12 speakers
			t.Fatalf("devices: %d, want 12", len(devs))
		}
		if slices.ContainsFunc(devs, func(d struct {
			ID     string `json:"id"`
			Online bool   `json:"online"`
		}) bool {
			return d.ID == "spk-01" && d.Online
		}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spk-01 with the old release's credentials never came online\n%s", stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("stop: %v\n%s", err, stderr)
	}
}

func login(t *testing.T, base, user, pw string) string {
	t.Helper()
	body := fmt.Sprintf(`{"username":%q,"password":%q}`, user, pw)
	resp, err := http.Post(base+"/api/v1/login", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Token string `json:"token"`
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&r) != nil {
		raw, _ := io.ReadAll(resp.Body)
		t.Fatalf("login %s: %d %s", user, resp.StatusCode, raw)
	}
	return r.Token
}

func get(t *testing.T, base, tok, path string, out any) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, raw)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("GET %s: %v\n%s", path, err, raw)
	}
}
