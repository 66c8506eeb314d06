package daemon_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loalang/loalang/daemon"
	"github.com/loalang/loalang/internal/audiotest"
)

// scrape reads /metrics with a bearer token ("" for none).
func scrape(t *testing.T, base, token, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", base+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, b.String()
}

// metricValue finds the sample of name whose labels include every
// label="value" pair given, or -1.
func metricValue(text, name string, labels ...string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			return v
		}
	}
	return -1
}

// TestOperationsMetrics: Prometheus scrapes with the read-only metrics
// token (and nothing else opens with it), and after a broadcast and a
// scheduled firing the product's metrics count them: broadcasts by state
// and priority, frames per zone from delivery reports, firings and their
// lateness, the store's size and audit write failures.
func TestOperationsMetrics(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir, 3)
	token := "0123456789abcdef0123456789abcdef"
	cfg.Metrics.TokenFile = filepath.Join(t.TempDir(), "metrics-token")
	if err := os.WriteFile(cfg.Metrics.TokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, cfg)
	base := "http://" + d.Ready().HTTP
	speakers := startSpeakers(t, dir, nil)
	admin := login(t, base, "admin", adminPassword(t, dir))
	if code, body := admin.do("POST", "/api/v1/users", map[string]any{"username": "truong-thon", "password": "mot-hai-ba-bon", "role": "head"}); code != 201 {
		t.Fatalf("create head: %d %s", code, body)
	}
	head := login(t, base, "truong-thon", "mot-hai-ba-bon")

	for _, c := range []struct {
		token, path string
		want        int
	}{
		{"", "/metrics", 401},
		{"0123456789abcdef0123456789abcdeX", "/metrics", 401},
		{token, "/api/v1/me", 401},
		{token, "/api/v1/audit", 401},
		{head.token, "/metrics", 403},
		{admin.token, "/metrics", 200},
	} {
		if code, _ := scrape(t, base, c.token, c.path); code != c.want {
			t.Errorf("GET %s with token %.6s…: %d, want %d", c.path, c.token, code, c.want)
		}
	}

	eventually(t, 10*time.Second, "speakers ready", func() bool {
		for _, s := range speakers {
			if !s.Ready() {
				return false
			}
		}
		return true
	})
	code, body := admin.upload("tone.wav", audiotest.WAV(audiotest.Tone(1000, 0.5, 16000, 1000), 16000, 1))
	if code != 201 {
		t.Fatalf("upload: %d %s", code, body)
	}
	var clip struct{ ID string }
	json.Unmarshal(body, &clip)
	code, body = admin.do("POST", "/api/v1/broadcasts", map[string]any{"media_id": clip.ID, "zones": []string{"a"}})
	if code != 201 {
		t.Fatalf("broadcast: %d %s", code, body)
	}
	var bc struct{ ID string }
	json.Unmarshal(body, &bc)
	eventually(t, 20*time.Second, "broadcast done with its delivery reported", func() bool {
		b := admin.broadcast(bc.ID)
		return b.State == "done" && len(b.Devices) == 1 && b.Devices[0].Played > 0
	})

	// A firing two seconds from now.
	at := time.Now().Add(2 * time.Second).Truncate(time.Second).Add(time.Second)
	code, body = admin.do("POST", "/api/v1/schedules", map[string]any{"name": "Thử", "at": at.Format(time.RFC3339), "zones": []string{"a"},
		"source": map[string]any{"kind": "media", "media_id": clip.ID}})
	if code != 201 {
		t.Fatalf("schedule: %d %s", code, body)
	}

	var text string
	eventually(t, 20*time.Second, "metrics count the broadcast, its frames and the firing", func() bool {
		_, text = scrape(t, base, token, "/metrics")
		return metricValue(text, "loalang_broadcasts_total", `state="done"`, `priority="normal"`) >= 1 &&
			metricValue(text, "loalang_frames_total", `zone="a"`, `kind="played"`) > 0 &&
			metricValue(text, "loalang_schedule_firings_total", `outcome="fired"`) == 1
	})
	exp := metricValue(text, "loalang_frames_total", `zone="a"`, `kind="expected"`)
	played := metricValue(text, "loalang_frames_total", `zone="a"`, `kind="played"`)
	t.Logf("zone a frames: expected %v played %v; firings: %v; lateness count %v; store %v bytes", exp, played,
		metricValue(text, "loalang_schedule_firings_total", `outcome="fired"`), metricValue(text, "loalang_schedule_lateness_seconds_count"),
		metricValue(text, "loalang_store_bytes"))
	for _, c := range []struct {
		name   string
		labels []string
		ok     func(float64) bool
	}{
		{"loalang_broadcasts_total", []string{`state="playing"`, `priority="normal"`}, func(v float64) bool { return v >= 1 }},
		{"loalang_broadcasts_total", []string{`state="done"`, `priority="emergency"`}, func(v float64) bool { return v == 0 }},
		{"loalang_frames_total", []string{`zone="a"`, `kind="expected"`}, func(v float64) bool { return v >= played && v >= 50 }},
		{"loalang_frames_total", []string{`zone="b"`}, func(v float64) bool { return v == -1 }},
		{"loalang_schedule_firings_total", []string{`outcome="missed"`}, func(v float64) bool { return v == 0 }},
		{"loalang_schedule_lateness_seconds_count", nil, func(v float64) bool { return v == 1 }},
		{"loalang_store_bytes", nil, func(v float64) bool { return v > 0 }},
		{"loalang_audit_write_failures_total", nil, func(v float64) bool { return v == 0 }},
		{"loalang_playout_log_bytes", nil, func(v float64) bool { return v >= 0 }},
		// The embedded broker carried the broadcast: more messages out
		// (fan-out, presence) than in, and the speaker and loalangd's own
		// client are connected.
		{"loalang_broker_messages_received_total", nil, func(v float64) bool { return v >= 50 }},
		{"loalang_broker_messages_sent_total", nil, func(v float64) bool { return v >= 50 }},
		{"loalang_broker_packets_received_total", nil, func(v float64) bool { return v >= 50 }},
		{"loalang_broker_clients_connected", nil, func(v float64) bool { return v >= 2 }},
	} {
		if v := metricValue(text, c.name, c.labels...); !c.ok(v) {
			t.Errorf("%s%v = %v", c.name, c.labels, v)
		}
	}
	if strings.Contains(text, token) {
		t.Error("the metrics token appears in /metrics")
	}
	checkDashboard(t, text)

	// A bad token file stops the start, naming the key and not the content.
	bad := testConfig(t, t.TempDir(), 0)
	bad.Metrics.TokenFile = filepath.Join(t.TempDir(), "short")
	os.WriteFile(bad.Metrics.TokenFile, []byte("s3cret"), 0o600)
	if d, err := daemon.New(context.Background(), bad, testLogger(t)); err == nil {
		d.Close()
		t.Error("a 6-character metrics token was accepted")
	} else if !strings.Contains(err.Error(), "metrics.token_file") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("short token: %v", err)
	}
}

// checkDashboard checks that every loalang metric the shipped Grafana
// dashboard queries is one the daemon serves.
func checkDashboard(t *testing.T, metrics string) {
	t.Helper()
	raw, err := os.ReadFile("../configs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	names := regexp.MustCompile(`loalang_[a-z_]+`)
	n := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, name := range names.FindAllString(tg.Expr, -1) {
				base := strings.TrimSuffix(name, "_bucket")
				if !strings.Contains(metrics, "# TYPE "+base+" ") {
					t.Errorf("dashboard panel %q queries %s, which /metrics does not serve", p.Title, name)
				}
				n++
			}
		}
	}
	if n < 10 {
		t.Errorf("dashboard queries only %d loalang metrics", n)
	}
}
