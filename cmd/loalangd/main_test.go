package main

import (
	"bytes"
	"context"
	"encoding/json"
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
	"github.com/loalang/loalang/store"
	"github.com/loalang/loalang/web/api"
)

// buildBinary builds loalangd once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "loalangd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// startBinary starts loalangd on :0 ports and waits for ready.json.
func startBinary(t *testing.T, bin, dataDir string) (*exec.Cmd, daemon.Ready, *bytes.Buffer) {
	t.Helper()
	// A ready.json left by a killed instance must not be mistaken for this one's.
	os.Remove(filepath.Join(dataDir, daemon.ReadyFile))
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "--config", "../../configs/demo.yaml", "--data-dir", dataDir, "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "LOALANG_WEBRTC_UDP_PORT=0") // keep the test off fixed ports
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		raw, err := os.ReadFile(filepath.Join(dataDir, daemon.ReadyFile))
		if err == nil {
			var r daemon.Ready
			if json.Unmarshal(raw, &r) == nil && r.HTTP != "" {
				return cmd, r, &stderr
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("loalangd not ready:\n%s", stderr.String())
	return nil, daemon.Ready{}, nil
}

func TestBinarySignalsAndLock(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	cmd, ready, stderr := startBinary(t, bin, dir)
	if !strings.HasPrefix(ready.HTTP, "127.0.0.1:") || strings.HasSuffix(ready.HTTP, ":0") || ready.MQTT == "" {
		t.Fatalf("ready.json: %+v", ready)
	}

	// A second instance on the same data dir fails fast and says why.
	start := time.Now()
	out, err := exec.Command(bin, "--config", "../../configs/demo.yaml", "--data-dir", dir, "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "locked by another process") || time.Since(start) > 10*time.Second {
		t.Fatalf("second instance: err=%v after %v:\n%s", err, time.Since(start), out)
	}

	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("exit after %v: %v\n%s", sig, err, stderr)
		}
		if sig == syscall.SIGINT {
			cmd, _, stderr = startBinary(t, bin, dir)
		}
	}
}

func TestCheckConfig(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--check-config", "../../configs/example.yaml"}, func(string) string { return "" }, &out); err != nil {
		t.Fatalf("example: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("mqtt:\n  lisen: 127.0.0.1:1883\n"), 0o644)
	err := run(context.Background(), []string{"--check-config", bad}, func(string) string { return "" }, &out)
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "mqtt.lisen") || !strings.Contains(err.Error(), "unknown key") {
		t.Fatalf("bad config: %v", err)
	}
	err = run(context.Background(), []string{"--config", "../../configs/example.yaml", "--http", "nonsense"}, func(string) string { return "" }, &out)
	if err == nil || !strings.Contains(err.Error(), "http.addr") {
		t.Fatalf("bad flag: %v", err)
	}
}

// TestKillDuringChurn is the foundation's third acceptance item: kill -9
// the daemon while devices churn (presence changes are audited), then
// bbolt's check finds the file consistent and the data is there.
func TestKillDuringChurn(t *testing.T) {
	bin := buildBinary(t)
	fsim := filepath.Join(t.TempDir(), "firmware-sim")
	if out, err := exec.Command("go", "build", "-o", fsim, "../../firmware-sim").CombinedOutput(); err != nil {
		t.Fatalf("build firmware-sim: %v\n%s", err, out)
	}
	dir := t.TempDir()
	onlineBefore := 0
	for round := range 3 {
		cmd, ready, _ := startBinary(t, bin, dir)
		sim := exec.Command(fsim, "--provisioning", filepath.Join(dir, daemon.BundleFile), "--no-cameras", "--no-relay",
			"--churn", "0.5", "--churn-every", "150ms", "--churn-down", "100ms", "--log-level", "error")
		if err := sim.Start(); err != nil {
			t.Fatal(err)
		}
		// Once presence changes are flowing (a device is online), let churn
		// write audit entries for a while, then pull the plug at a
		// different moment each round.
		waitDeviceOnline(t, "http://"+ready.HTTP, dir)
		time.Sleep(time.Duration(200+round*300) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		sim.Process.Signal(syscall.SIGKILL)
		sim.Wait()

		db, err := store.Open(filepath.Join(dir, daemon.DBFile), time.Second)
		if err != nil {
			t.Fatalf("round %d: reopen: %v", round, err)
		}
		if err := db.Check(); err != nil {
			t.Fatalf("round %d: bbolt check: %v", round, err)
		}
		events, err := db.AuditRange(time.Time{}, time.Time{}, 0)
		devices, err2 := store.List[json.RawMessage](db, store.Devices, "")
		db.Close()
		if err != nil || err2 != nil || len(devices) != 12 {
			t.Fatalf("round %d: %d devices, %v %v", round, len(devices), err, err2)
		}
		online := 0
		for _, e := range events {
			if e.Action == "device.online" {
				online++
			}
		}
		t.Logf("round %d: %d audit events, %d device.online", round, len(events), online)
		if online <= onlineBefore {
			t.Fatalf("round %d: no new presence changes were audited (%d, before %d)", round, online, onlineBefore)
		}
		onlineBefore = online
	}
}

// waitDeviceOnline polls the devices API until one device is online: a
// fixed wait was too short on a loaded machine, and the kill came before
// any presence change.
func waitDeviceOnline(t *testing.T, base, dataDir string) {
	t.Helper()
	pw, err := os.ReadFile(filepath.Join(dataDir, daemon.AdminPassFile))
	if err != nil {
		t.Fatal(err)
	}
	token := login(t, base, "admin", strings.TrimSpace(string(pw)))
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest("GET", base+"/api/v1/devices", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			var devices []api.Device
			err := json.NewDecoder(resp.Body).Decode(&devices)
			resp.Body.Close()
			if err == nil && slices.ContainsFunc(devices, func(d api.Device) bool { return d.Online }) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("no device came online within 30 s")
}
