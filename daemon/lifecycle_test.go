package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/daemon"
	"github.com/loalang/loalang/store"
)

// mosquitto is a Mosquitto process the test started, restartable on the
// same address.
type mosquitto struct {
	t    *testing.T
	bin  string
	conf string
	addr string
	cmd  *exec.Cmd
}

// newMosquitto writes the daemon's Mosquitto config for cfg on a free
// port and points cfg at it, without starting it. Mosquitto must be
// installed (make deps does it): a missing one fails the test.
func newMosquitto(t *testing.T, cfg *config.Config) *mosquitto {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("mosquitto is not installed (make deps installs it): %v", err)
		}
	}
	addr := freePort(t)
	dir := filepath.Join(t.TempDir(), "mosquitto")
	pw, err := daemon.WriteMosquittoConfig(*cfg, dir, addr)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MQTT.URL = "tcp://" + addr
	cfg.MQTT.PasswordFile = pw
	m := &mosquitto{t: t, bin: bin, conf: filepath.Join(dir, "mosquitto.conf"), addr: addr}
	t.Cleanup(m.stop)
	return m
}

// start runs mosquitto and waits until it accepts connections.
func (m *mosquitto) start() {
	m.t.Helper()
	m.cmd = exec.Command(m.bin, "-c", m.conf)
	m.cmd.Stderr = testWriter{m.t}
	if err := m.cmd.Start(); err != nil {
		m.t.Fatal(err)
	}
	eventually(m.t, 10*time.Second, "mosquitto listening", func() bool {
		c, err := net.Dial("tcp", m.addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// stop ends the process this test started (by its pid) and waits for it.
func (m *mosquitto) stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	m.cmd.Wait()
	m.cmd = nil
}

type problem struct {
	Component string `json:"component"`
	Reason    string `json:"reason"`
}

// healthz returns /healthz's status and problems.
func healthz(t *testing.T, base string) (int, []problem) {
	t.Helper()
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatalf("healthz: %v", err)
	}
	defer resp.Body.Close()
	var body struct{ Problems []problem }
	raw, _ := io.ReadAll(resp.Body)
	json.Unmarshal(raw, &body)
	return resp.StatusCode, body.Problems
}

func hasProblem(ps []problem, component string) (problem, bool) {
	for _, p := range ps {
		if p.Component == component {
			return p, true
		}
	}
	return problem{}, false
}

// metric returns the value of one sample line of /metrics, or "" when absent.
func metric(c *client, series string) string {
	code, body := c.do("GET", "/metrics", nil)
	if code != 200 {
		c.t.Fatalf("metrics: %d", code)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return ""
	}
	return string(m[1])
}

// countingHandler counts log records whose message matches, on top of
// the test log.
type countingHandler struct {
	slog.Handler
	msg string
	mu  *sync.Mutex
	n   *int
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.mu.Lock()
		*h.n++
		h.mu.Unlock()
	}
	return h.Handler.Handle(ctx, r)
}

func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return countingHandler{h.Handler.WithAttrs(as), h.msg, h.mu, h.n}
}

func (h countingHandler) WithGroup(name string) slog.Handler {
	return countingHandler{h.Handler.WithGroup(name), h.msg, h.mu, h.n}
}

// TestBuildInfoAndPprof: loalang_build_info reads 1 (it read 0), and the
// profiling endpoint is served on its own loopback listener only when
// configured, never on the API's.
func TestBuildInfoAndPprof(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), 1)
	cfg.Debug.PprofAddr = "127.0.0.1:0"
	d := startDaemon(t, cfg)
	c := login(t, "http://"+d.Ready().HTTP, "admin", adminPassword(t, cfg.DataDir))
	if v := metric(c, `loalang_build_info{version="`+daemon.Version+`"}`); v != "1" {
		t.Fatalf("loalang_build_info = %q, want 1", v)
	}
	if d.Ready().Pprof == "" {
		t.Fatal("ready.json has no pprof address")
	}
	resp, err := http.Get("http://" + d.Ready().Pprof + "/debug/pprof/heap?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "heap profile") {
		t.Fatalf("pprof heap: %d %.100s", resp.StatusCode, body)
	}
	if code, _ := c.do("GET", "/debug/pprof/heap", nil); code == 200 {
		t.Fatal("pprof served on the API listener")
	}
	bad := testConfig(t, t.TempDir(), 1)
	bad.Debug.PprofAddr = "0.0.0.0:6060"
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "debug.pprof_addr") {
		t.Fatalf("non-loopback pprof address accepted: %v", err)
	}
}

// damageSchedules writes a schedule record that does not decode into the
// store of data dir dir: valid JSON of the wrong shape, a damaged record
// rather than a torn page.
func damageSchedules(t *testing.T, dir string) {
	t.Helper()
	db, err := store.Open(filepath.Join(dir, daemon.DBFile), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Put(db, store.Schedules, "hong", json.RawMessage(`{"id":42,"zones":"a"}`)); err != nil {
		t.Fatal(err)
	}
	db.Close()
}

// TestHealthBannerChromium: while a background service is down, every
// page of the web app shows a banner naming it, and the home page lists
// it among the alarms.
func TestHealthBannerChromium(t *testing.T) {
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		t.Skip("chromium not installed (apt install chromium)")
	}
	if os.Getenv(netnsEnv) == "" && exec.Command("unshare", "-n", "true").Run() == nil {
		reexecInNetns(t, "TestHealthBannerChromium")
		return
	}
	dir := t.TempDir()
	cfg := testConfig(t, dir, 1)
	damageSchedules(t, dir)
	d := startDaemon(t, cfg)
	b := &browser{t: t, ctx: startChromium(t, chromium, 60*time.Second), base: "http://" + d.Ready().HTTP, out: outputDir(t)}
	b.signIn("admin", adminPassword(t, dir))
	for _, page := range []string{"home", "schedules"} {
		b.open("/app/" + page)
		var text string
		eventually(t, 15*time.Second, page+": banner names the damaged schedule", func() bool {
			text = eval[string](b, `(() => { const el = document.getElementById("health-banner"); return el && !el.hidden ? el.textContent : ""; })()`)
			return strings.Contains(text, "Bản ghi lịch phát") && strings.Contains(text, "hong")
		})
		t.Logf("%s banner: %s", page, text)
		if page == "home" {
			eventually(t, 10*time.Second, "home alarms list the damaged schedule", func() bool {
				return strings.Contains(eval[string](b, `document.getElementById("alarms").textContent`), "Bản ghi lịch phát")
			})
			b.screenshot("health-banner")
		}
	}
}

// TestDamagedStoreSchedulerVisible is the item 2: on a store whose
// schedule record does not decode, the scheduler used to stop for good
// after one ERROR line while /healthz said ok, and later one damaged record
// stopped every schedule. Now the scheduler runs the others, /healthz
// answers 503 naming the record (component "schedules"),
// loalang_component_up shows it, the list leaves it out and DELETE removes
// it, which clears the alarm.
func TestDamagedStoreSchedulerVisible(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir, 1)
	future := time.Now().Add(time.Hour).Format(time.RFC3339)
	func() { // a good schedule beside the one to be damaged
		d := startDaemon(t, cfg)
		c := login(t, "http://"+d.Ready().HTTP, "admin", adminPassword(t, dir))
		if code, body := c.do("POST", "/api/v1/schedules", map[string]any{"id": "good", "name": "good", "at": future,
			"zones": []string{"a"}, "source": map[string]any{"kind": "text", "text": "xin chào"}}); code != 201 {
			t.Fatalf("create: %d %s", code, body)
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}()
	damageSchedules(t, dir)

	d := startDaemon(t, cfg)
	base := "http://" + d.Ready().HTTP
	var p problem
	eventually(t, 10*time.Second, "healthz names the damaged schedule", func() bool {
		code, ps := healthz(t, base)
		var ok bool
		p, ok = hasProblem(ps, "schedules")
		return code == http.StatusServiceUnavailable && ok
	})
	t.Logf("healthz: 503, schedules: %s", p.Reason)
	if !strings.Contains(p.Reason, "hong") {
		t.Errorf("reason %q does not name the damaged record", p.Reason)
	}
	c := login(t, base, "admin", adminPassword(t, dir))
	for component, want := range map[string]string{"schedules": "0", "scheduler": "1", "mqtt": "1"} {
		if v := metric(c, `loalang_component_up{component="`+component+`"}`); v != want {
			t.Errorf(`loalang_component_up{component=%q} = %q, want %s`, component, v, want)
		}
	}
	code, body := c.do("GET", "/api/v1/schedules", nil)
	if code != 200 || !strings.Contains(string(body), `"good"`) || strings.Contains(string(body), `"hong"`) {
		t.Fatalf("list with a damaged record: %d %s", code, body)
	}
	if code, body := c.do("DELETE", "/api/v1/schedules/hong", nil); code != 204 {
		t.Fatalf("delete the damaged record: %d %s", code, body)
	}
	eventually(t, 10*time.Second, "healthz clears", func() bool {
		code, ps := healthz(t, base)
		_, bad := hasProblem(ps, "schedules")
		return code == http.StatusOK && !bad
	})
}

// TestBrokerDownAtStart is item 7: with an external broker that is down,
// loalangd serves HTTP and writes ready.json at once, degraded and saying
// so; when the broker comes up it connects within the capped backoff.
func TestBrokerDownAtStart(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), 3)
	mq := newMosquitto(t, &cfg)
	start := time.Now()
	d := startDaemon(t, cfg)
	took := time.Since(start)
	base := "http://" + d.Ready().HTTP
	if _, err := os.Stat(filepath.Join(cfg.DataDir, daemon.ReadyFile)); err != nil {
		t.Fatalf("ready.json: %v", err)
	}
	code, ps := healthz(t, base)
	p, ok := hasProblem(ps, "mqtt")
	if code != http.StatusServiceUnavailable || !ok {
		t.Fatalf("healthz with the broker down: %d %+v", code, ps)
	}
	t.Logf("ready in %v with the broker down; healthz 503: mqtt: %s", took, p.Reason)
	if took > 5*time.Second {
		t.Errorf("start took %v with the broker down", took)
	}
	c := login(t, base, "admin", adminPassword(t, cfg.DataDir))
	if len(devices(c)) != 3 {
		t.Fatal("API does not list devices while degraded")
	}
	if v := metric(c, "loalang_mqtt_connected"); v != "0" {
		t.Errorf("loalang_mqtt_connected = %q while down", v)
	}

	// Let the backoff grow for a while, as a broker booting slowly would.
	time.Sleep(8 * time.Second)
	mq.start()
	up := time.Now()
	took = eventually(t, 10*time.Second, "connected and healthy", func() bool {
		code, _ := healthz(t, base)
		return code == 200
	})
	t.Logf("broker up -> healthz ok in %v", took)
	if took > 3500*time.Millisecond {
		t.Errorf("connected %v after the broker came up, want within the 2 s backoff cap (+jitter)", took)
	}
	startSpeakers(t, cfg.DataDir, nil)
	eventually(t, 10*time.Second, "speakers online through the late broker", allOnline(c, 3))
	_ = up
}

// TestShutdownStopsSpeakers is item 4: SIGTERM (the context ending, then
// Close, as cmd/loalangd does) tells every playing speaker to stop before
// the broker closes. With the embedded broker 0 of 60 used to get the stop.
func TestShutdownStopsSpeakers(t *testing.T) {
	for _, broker := range []string{"embedded", "mosquitto"} {
		t.Run(broker, func(t *testing.T) {
			n := 60
			if broker == "mosquitto" {
				n = 20
			}
			cfg := testConfig(t, t.TempDir(), n)
			if broker == "mosquitto" {
				newMosquitto(t, &cfg).start()
			}
			ctx, cancel := context.WithCancel(context.Background())
			d, err := daemon.New(ctx, cfg, testLogger(t))
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			closed := false
			t.Cleanup(func() {
				cancel()
				if !closed {
					d.Close()
				}
			})
			speakers := startSpeakers(t, cfg.DataDir, nil)
			c := login(t, "http://"+d.Ready().HTTP, "admin", adminPassword(t, cfg.DataDir))
			waitReady(t, speakers)
			long := uploadTone(t, c, 440, 20000)
			stream := map[string]uint32{}
			for _, z := range []string{"a", "b", "c"} {
				code, body := c.do("POST", "/api/v1/broadcasts", map[string]any{"media_id": long.ID, "zones": []string{z}})
				if code != 201 {
					t.Fatalf("broadcast %s: %d %s", z, code, body)
				}
				var b broadcastView
				json.Unmarshal(body, &b)
				for _, dev := range cfg.Devices {
					if dev.Zones[0] == z {
						stream[dev.ID] = b.StreamIDs[0]
					}
				}
			}
			var ids []string
			for id := range stream {
				ids = append(ids, id)
			}
			pollStreams(t, time.Now(), 10*time.Second, "every speaker playing", ids, func(id string) bool {
				r, ok := speakers[id].Stats(stream[id])
				return ok && r.Played > 10
			})

			t0 := time.Now()
			cancel() // SIGTERM
			if err := d.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
			closed = true
			closeTook := time.Since(t0)
			ended := pollStreams(t, t0, 10*time.Second, "every stream ended", ids, func(id string) bool {
				return speakers[id].EndReason(stream[id]) != ""
			})
			reasons := map[string]int{}
			var worst time.Duration
			for _, id := range ids {
				reasons[speakers[id].EndReason(stream[id])]++
				worst = max(worst, ended[id])
			}
			t.Logf("%s: SIGTERM -> closed in %v; %d/%d speakers told to stop (%v), last silent after %v",
				broker, closeTook, reasons["stopped"], len(ids), reasons, worst)
			if reasons["stopped"] != len(ids) {
				t.Fatalf("%d of %d speakers got stop: %v", reasons["stopped"], len(ids), reasons)
			}
			if worst > 2*time.Second {
				t.Errorf("speakers played on for %v after SIGTERM", worst)
			}
		})
	}
}

// TestShutdownStopsSpeakersBinary is item 4 as observed: the real loalangd
// with its embedded broker gets SIGTERM while 60 speakers play; every one
// is told to stop (it was 0 of 60) and the process exits 0.
func TestShutdownStopsSpeakersBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "loalangd")
	if out, err := exec.Command("go", "build", "-tags", "nolibopusfile", "-o", bin, "github.com/loalang/loalang/cmd/loalangd").CombinedOutput(); err != nil {
		t.Fatalf("build loalangd: %v\n%s", err, out)
	}
	dir := t.TempDir()
	cfg := testConfig(t, dir, 60)
	var y strings.Builder
	y.WriteString("site: test\nzones:\n  - id: a\n  - id: b\n  - id: c\ndevices:\n")
	for _, dev := range cfg.Devices {
		fmt.Fprintf(&y, "  - id: %s\n    kind: speaker\n    zones: [%s]\n", dev.ID, dev.Zones[0])
	}
	cfgFile := filepath.Join(t.TempDir(), "village.yaml")
	os.WriteFile(cfgFile, []byte(y.String()), 0o644)
	p := startLoalangd(t, bin, cfgFile, dir)
	speakers := startSpeakers(t, dir, nil)
	c := login(t, p.base, "admin", adminPassword(t, dir))
	waitReady(t, speakers)
	long := uploadTone(t, c, 440, 20000)
	stream, _ := playEverywhere(t, c, cfg, long.ID)
	ids := keys(stream)
	pollStreams(t, time.Now(), 10*time.Second, "every speaker playing", ids, func(id string) bool {
		r, ok := speakers[id].Stats(stream[id])
		return ok && r.Played > 10
	})
	t0 := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.log)
	}
	exited := time.Since(t0)
	ended := pollStreams(t, t0, 10*time.Second, "every stream ended", ids, func(id string) bool {
		return speakers[id].EndReason(stream[id]) != ""
	})
	reasons := map[string]int{}
	var worst time.Duration
	for _, id := range ids {
		reasons[speakers[id].EndReason(stream[id])]++
		worst = max(worst, ended[id])
	}
	t.Logf("loalangd SIGTERM: exited 0 in %v; %d/%d speakers told to stop (%v), last silent after %v", exited, reasons["stopped"], len(ids), reasons, worst)
	if reasons["stopped"] != len(ids) {
		t.Fatalf("%d of %d speakers got stop: %v", reasons["stopped"], len(ids), reasons)
	}
}
