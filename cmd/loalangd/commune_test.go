package main

import (
	"bytes"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/loalang/loalang/uplink"
)

// TestCommuneRole: the same binary with role: commune serves the commune
// office (its web app and /healthz), writes the first admin's password
// file with mode 0600, and stops cleanly on SIGTERM. No broker is
// running: the server works and retries it in the background.
func TestCommuneRole(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "commune.key")
	if _, err := uplink.Keygen(key); err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	cfg := filepath.Join(dir, "commune.yaml")
	os.WriteFile(cfg, []byte("role: commune\ndata_dir: "+filepath.Join(dir, "data")+"\nhttp:\n  addr: "+addr+
		"\ncommune:\n  province: hanoi\n  id: xa-1\n  mqtt_url: tcp://127.0.0.1:1\n  client_id: commune-xa-1\n  signing_key_file: "+key+
		"\n  public_url: http://"+addr+"\nwebrtc:\n  udp_port: 0\n  listen_ips: [127.0.0.1]\n"), 0o600)
	if out, err := exec.Command(bin, "--check-config", cfg).CombinedOutput(); err != nil {
		t.Fatalf("check-config: %v %s", err, out)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(bin, "--config", cfg)
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
	deadline := time.Now().Add(30 * time.Second)
	var page int
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + addr + "/"); err == nil {
			page = resp.StatusCode
			resp.Body.Close()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if page != 200 {
		t.Fatalf("the commune's page: %d\n%s", page, stderr.String())
	}
	fi, err := os.Stat(filepath.Join(dir, "data", "initial-admin-password"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("initial admin password file: %v %v", fi, err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
	}
}
