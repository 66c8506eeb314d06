package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/daemon"
	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/firmware-sim/speaker"
	"github.com/loalang/loalang/store"
)

// testConfig returns a village of n speakers in zones a, b and c, with
// every address on port 0.
func testConfig(t *testing.T, dir string, n int) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Site = "test"
	cfg.DataDir = dir
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.MQTT.Listen = "127.0.0.1:0"
	cfg.WebRTC.UDPPort = 0
	cfg.WebRTC.LoopbackCandidates = true
	cfg.Zones = []config.Zone{{ID: "a"}, {ID: "b"}, {ID: "c"}}
	for i := range n {
		cfg.Devices = append(cfg.Devices, config.Device{ID: fmt.Sprintf("spk-%02d", i+1), Kind: "speaker", Name: fmt.Sprintf("Loa %d", i+1), Zones: []string{string(rune('a' + i%3))}})
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startDaemon runs a daemon until the test ends.
func startDaemon(t *testing.T, cfg config.Config) *daemon.Daemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d, err := daemon.New(ctx, cfg, testLogger(t))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := d.Close(); err != nil {
			t.Errorf("close daemon: %v", err)
		}
	})
	return d
}

// startSpeakers simulates every device of the provisioning bundle.
func startSpeakers(t *testing.T, dataDir string, mutate func(*speaker.Config)) map[string]*speaker.Speaker {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dataDir, daemon.BundleFile))
	if err != nil {
		t.Fatal(err)
	}
	var b wire.Bundle
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	out := map[string]*speaker.Speaker{}
	for _, d := range b.Devices {
		if strings.HasPrefix(d.ID, "probe-") {
			continue // a test's own listener (startProbe), not a simulated speaker
		}
		c := speaker.Config{ID: d.ID, Site: b.Site, Broker: b.Broker, Username: d.Username, Password: d.Password,
			Zones: d.Zones, Firmware: "sim-test", HeartbeatEvery: time.Second, KeepPlayed: -1}
		if mutate != nil {
			mutate(&c)
		}
		s, err := speaker.New(c)
		if err != nil {
			t.Fatal(err)
		}
		out[d.ID] = s
	}
	for _, s := range out {
		go func() { s.Run(ctx); done <- struct{}{} }()
	}
	t.Cleanup(func() {
		cancel()
		for range out {
			<-done
		}
	})
	return out
}

// client is an API client with a token.
type client struct {
	t     *testing.T
	base  string
	token string
}

func (c *client) do(method, path string, body any) (int, []byte) {
	c.t.Helper()
	var r io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		r = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, c.base+path, r)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func login(t *testing.T, base, user, password string) *client {
	t.Helper()
	c := &client{t: t, base: base}
	code, body := c.do("POST", "/api/v1/login", map[string]string{"username": user, "password": password})
	if code != 200 {
		t.Fatalf("login %s: %d %s", user, code, body)
	}
	var resp struct{ Token string }
	json.Unmarshal(body, &resp)
	c.token = resp.Token
	return c
}

func adminPassword(t *testing.T, dir string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, daemon.AdminPassFile))
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(filepath.Join(dir, daemon.AdminPassFile))
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin password file mode %v", fi.Mode())
	}
	return strings.TrimSpace(string(raw))
}

type deviceView struct {
	ID       string `json:"id"`
	Online   bool   `json:"online"`
	Firmware string `json:"firmware"`
}

func devices(c *client) map[string]deviceView {
	code, body := c.do("GET", "/api/v1/devices", nil)
	if code != 200 {
		c.t.Fatalf("devices: %d %s", code, body)
	}
	var list []deviceView
	if err := json.Unmarshal(body, &list); err != nil {
		c.t.Fatal(err)
	}
	out := map[string]deviceView{}
	for _, d := range list {
		out[d.ID] = d
	}
	return out
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if cond() {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v", what, within)
	return 0
}

func allOnline(c *client, n int) func() bool {
	return func() bool {
		devs := devices(c)
		online := 0
		for _, d := range devs {
			if d.Online {
				online++
			}
		}
		return len(devs) == n && online == n
	}
}

// presence runs the foundation's presence acceptance against a daemon
// already started on cfg: 20 speakers online within 5 s, one dropped
// offline within 5 s, a ping answered.
func presence(t *testing.T, cfg config.Config, d *daemon.Daemon) {
	speakers := startSpeakers(t, cfg.DataDir, nil)
	c := login(t, "http://"+d.Ready().HTTP, "admin", adminPassword(t, cfg.DataDir))
	took := eventually(t, 5*time.Second, "20 speakers online", allOnline(c, 20))
	t.Logf("20 speakers online after %v", took)

	speakers["spk-07"].SetOnline(false) // the TCP connection dies without DISCONNECT
	took = eventually(t, 5*time.Second, "spk-07 offline", func() bool { return !devices(c)["spk-07"].Online })
	t.Logf("dropped speaker offline after %v", took)
	if devs := devices(c); !devs["spk-08"].Online || devs["spk-08"].Firmware != "sim-test" {
		t.Fatalf("other speakers affected: %+v", devs["spk-08"])
	}
	if code, body := c.do("POST", "/api/v1/devices/spk-08/ping", nil); code != 200 {
		t.Fatalf("ping: %d %s", code, body)
	}
	if code, _ := c.do("POST", "/api/v1/devices/spk-07/ping", nil); code != http.StatusGatewayTimeout {
		t.Fatalf("ping to an offline speaker: %d, want 504 after the command's expiry", code)
	}
	speakers["spk-07"].SetOnline(true)
	eventually(t, 5*time.Second, "spk-07 back online", func() bool { return devices(c)["spk-07"].Online })
}

func TestPresenceEmbeddedBroker(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), 20)
	d := startDaemon(t, cfg)
	presence(t, cfg, d)
}

func TestPresenceMosquitto(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), 20)
	externalMosquitto(t, &cfg) // mqtt_test.go
	d := startDaemon(t, cfg)
	presence(t, cfg, d)
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir, 3)
	ctx, cancel := context.WithCancel(context.Background())
	d, err := daemon.New(ctx, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	pw := adminPassword(t, dir)
	base := "http://" + d.Ready().HTTP
	c := login(t, base, "admin", pw)
	if code, body := c.do("POST", "/api/v1/users", map[string]string{"username": "truong-thon", "password": "mot-hai-ba-bon", "role": "head"}); code != 201 {
		t.Fatalf("create user: %d %s", code, body)
	}
	bundle1, _ := os.ReadFile(filepath.Join(dir, daemon.BundleFile))

	// A second daemon on the same data dir fails fast with a clear error.
	start := time.Now()
	_, err = daemon.New(context.Background(), cfg, testLogger(t))
	if !errors.Is(err, store.ErrLocked) || time.Since(start) > 5*time.Second {
		t.Fatalf("second instance: %v after %v", err, time.Since(start))
	}
	// A browser opens connections ahead of need and may send nothing on
	// them; one such connection does not make the stop fail.
	idle, err := net.Dial("tcp", d.Ready().HTTP)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	cancel()
	if err := d.Run(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}

	d2 := startDaemon(t, cfg)
	if again := adminPassword(t, dir); again != pw {
		t.Fatal("admin password rotated on restart")
	}
	c = login(t, "http://"+d2.Ready().HTTP, "truong-thon", "mot-hai-ba-bon")
	if code, _ := c.do("GET", "/api/v1/devices", nil); code != 200 {
		t.Fatalf("head lists devices: %d", code)
	}
	bundle2, _ := os.ReadFile(filepath.Join(dir, daemon.BundleFile))
	if secrets(t, bundle1) != secrets(t, bundle2) {
		t.Fatal("device credentials changed on restart")
	}
	// The kept credentials still work: the speakers come online.
	startSpeakers(t, dir, nil)
	eventually(t, 5*time.Second, "3 speakers online after restart", allOnline(c, 3))
}

func secrets(t *testing.T, raw []byte) string {
	var b wire.Bundle
	if err := json.Unmarshal(raw, &b); err != nil || len(b.Devices) == 0 {
		t.Fatalf("bundle: %v", err)
	}
	var out []string
	for _, d := range b.Devices {
		out = append(out, d.ID+":"+d.Password)
	}
	return strings.Join(out, ",")
}

func TestAuth(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), 1)
	cfg.Auth.LoginBurst = 3
	d := startDaemon(t, cfg)
	anon := &client{t: t, base: "http://" + d.Ready().HTTP}
	for _, p := range []string{"/api/v1/devices", "/api/v1/users", "/api/v1/audit", "/metrics"} {
		if code, _ := anon.do("GET", p, nil); code != 401 {
			t.Errorf("GET %s without token: %d, want 401", p, code)
		}
	}
	if code, _ := anon.do("GET", "/healthz", nil); code != 200 {
		t.Errorf("healthz: %d", code)
	}
	codes := []int{}
	for range 5 {
		code, _ := anon.do("POST", "/api/v1/login", map[string]string{"username": "admin", "password": "not-the-password"})
		codes = append(codes, code)
	}
	if codes[0] != 401 || codes[4] != 429 {
		t.Fatalf("failed logins answered %v, want 401s then 429", codes)
	}
	admin := &client{t: t, base: anon.base}
	// The limiter also holds the right password back while throttled.
	if code, _ := admin.do("POST", "/api/v1/login", map[string]string{"username": "admin", "password": adminPassword(t, cfg.DataDir)}); code != 429 {
		t.Fatalf("login while throttled: %d", code)
	}
}

func TestRoles(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), 1)
	d := startDaemon(t, cfg)
	base := "http://" + d.Ready().HTTP
	admin := login(t, base, "admin", adminPassword(t, cfg.DataDir))
	if code, body := admin.do("POST", "/api/v1/users", map[string]any{"username": "congan", "password": "mot-hai-ba-bon", "role": "police", "cameras": []string{"cam-01"}}); code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	code, body := admin.do("GET", "/api/v1/users", nil)
	if code != 200 || bytes.Contains(body, []byte("argon2")) || bytes.Contains(body, []byte("password")) {
		t.Fatalf("users list leaks secrets or fails: %d %s", code, body)
	}
	police := login(t, base, "congan", "mot-hai-ba-bon")
	for _, p := range []string{"/api/v1/devices", "/api/v1/users", "/api/v1/audit", "/metrics"} {
		if code, _ := police.do("GET", p, nil); code != 403 {
			t.Errorf("police GET %s: %d, want 403", p, code)
		}
	}
	if code, _ := admin.do("GET", "/metrics", nil); code != 200 {
		t.Errorf("admin metrics: %d", code)
	}
	if code, _ := admin.do("DELETE", "/api/v1/users/admin", nil); code != 400 {
		t.Errorf("deleting the last admin: %d, want 400", code)
	}
	code, body = admin.do("GET", "/api/v1/audit?format=csv", nil)
	if code != 200 || !bytes.Contains(body, []byte("user.create,congan")) || !bytes.Contains(body, []byte(",login,")) {
		t.Fatalf("audit csv: %d %s", code, body)
	}
}
