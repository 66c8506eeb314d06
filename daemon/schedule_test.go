package daemon_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loalang/loalang/broadcast/media"
	"github.com/loalang/loalang/broadcast/schedule"
	"github.com/loalang/loalang/daemon"
	"github.com/loalang/loalang/firmware-sim/speaker"
	"github.com/loalang/loalang/internal/audiotest"
)

type scheduleView struct {
	ID       string `json:"id"`
	Version  int    `json:"version"`
	Enabled  *bool  `json:"enabled"`
	TimeZone string `json:"time_zone"`
	Next     string `json:"next"`
	Source   struct {
		Duration string `json:"duration"`
	} `json:"source"`
}

type auditEvent struct {
	Time   time.Time      `json:"time"`
	Actor  string         `json:"actor"`
	Action string         `json:"action"`
	Target string         `json:"target"`
	Detail map[string]any `json:"detail"`
}

func (c *client) audit(since time.Time) []auditEvent {
	c.t.Helper()
	code, body := c.do("GET", "/api/v1/audit?since="+url.QueryEscape(since.UTC().Format(time.RFC3339Nano)), nil)
	if code != 200 {
		c.t.Fatalf("audit: %d %s", code, body)
	}
	var ev []auditEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		c.t.Fatalf("audit: %v %s", err, body)
	}
	return ev
}

func hasAudit(ev []auditEvent, action, target string) bool {
	for _, e := range ev {
		if e.Action == action && (target == "" || e.Target == target) {
			return true
		}
	}
	return false
}

func (c *client) firings(id string) []schedule.Firing {
	c.t.Helper()
	code, body := c.do("GET", "/api/v1/schedules/"+id+"/firings", nil)
	if code != 200 {
		c.t.Fatalf("firings %s: %d %s", id, code, body)
	}
	var f []schedule.Firing
	json.Unmarshal(body, &f)
	return f
}

// scheduled returns the broadcasts the engine holds for a schedule.
func (c *client) scheduled(id string) []broadcastView {
	c.t.Helper()
	code, body := c.do("GET", "/api/v1/broadcasts", nil)
	if code != 200 {
		c.t.Fatalf("broadcasts: %d %s", code, body)
	}
	var all []struct {
		broadcastView
		ScheduleID string `json:"schedule_id"`
		Origin     string `json:"origin"`
	}
	json.Unmarshal(body, &all)
	var out []broadcastView
	for _, b := range all {
		if b.ScheduleID == id && b.Origin == "schedule" {
			out = append(out, b.broadcastView)
		}
	}
	return out
}

func uploadTone(t *testing.T, c *client, freq float64, ms int) media.Info {
	t.Helper()
	code, body := c.upload(fmt.Sprintf("tone-%v.wav", freq), audiotest.WAV(audiotest.Tone(freq, 0.5, 16000, ms), 16000, 1))
	if code != 201 {
		t.Fatalf("upload: %d %s", code, body)
	}
	var info media.Info
	json.Unmarshal(body, &info)
	return info
}

func waitReady(t *testing.T, speakers map[string]*speaker.Speaker) {
	t.Helper()
	eventually(t, 10*time.Second, "speakers ready", func() bool {
		for _, s := range speakers {
			if !s.Ready() {
				return false
			}
		}
		return true
	})
}

// TestScheduleAPI covers the schedule API end to end: bad input is a 4xx
// naming the field and changes nothing, a one-shot with chime and repeat
// fires into the engine and reaches a speaker, the firing log and the
// audit trail record it, and edits and deletes are audited.
func TestScheduleAPI(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), 3)
	d := startDaemon(t, cfg)
	speakers := startSpeakers(t, cfg.DataDir, nil)
	c := login(t, "http://"+d.Ready().HTTP, "admin", adminPassword(t, cfg.DataDir))
	start := time.Now()
	info := uploadTone(t, c, 1000, 400)

	future := time.Now().Add(time.Hour).Format(time.RFC3339)
	bad := []struct {
		name  string
		body  map[string]any
		code  int
		field string
	}{
		{"rrule never fires", map[string]any{"name": "x", "rrule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=31", "zones": []string{"a"}, "source": map[string]any{"kind": "text", "text": "x"}}, 422, "rrule"},
		{"unknown zone", map[string]any{"name": "x", "at": future, "zones": []string{"a", "khong-co"}, "source": map[string]any{"kind": "text", "text": "x"}}, 422, "zones[1]"},
		{"until before from", map[string]any{"name": "x", "rrule": "FREQ=DAILY;BYHOUR=6", "from": "2030-01-02T00:00:00+07:00", "until": "2030-01-01T00:00:00+07:00", "zones": []string{"a"}, "source": map[string]any{"kind": "text", "text": "x"}}, 422, "until"},
		{"relay not http", map[string]any{"name": "x", "at": future, "zones": []string{"a"}, "source": map[string]any{"kind": "relay", "url": "rtsp://radio.example/live", "duration": "30m"}}, 422, "source.url"},
		{"one-shot in the past", map[string]any{"name": "x", "at": "2020-01-01T06:00:00+07:00", "zones": []string{"a"}, "source": map[string]any{"kind": "text", "text": "x"}}, 422, "at"},
		{"unknown media", map[string]any{"name": "x", "at": future, "zones": []string{"a"}, "source": map[string]any{"kind": "media", "media_id": "nope"}}, 422, "source.media_id"},
		{"relay longer than max_duration", map[string]any{"name": "x", "at": future, "zones": []string{"a"}, "source": map[string]any{"kind": "relay", "url": "http://radio.example/live", "duration": "2h"}}, 422, "source.duration"},
		{"bad time", map[string]any{"name": "x", "at": "tomorrow at six", "zones": []string{"a"}, "source": map[string]any{"kind": "text", "text": "x"}}, 400, "at"},
		{"bad duration", map[string]any{"name": "x", "at": future, "zones": []string{"a"}, "source": map[string]any{"kind": "relay", "url": "http://radio.example/live", "duration": "forever"}}, 400, "source.duration"},
		{"bad id", map[string]any{"id": "a/b", "name": "x", "at": future, "zones": []string{"a"}, "source": map[string]any{"kind": "text", "text": "x"}}, 400, "id"},
	}
	for _, tc := range bad {
		code, body := c.do("POST", "/api/v1/schedules", tc.body)
		var e struct{ Error, Field string }
		json.Unmarshal(body, &e)
		if code != tc.code || !strings.Contains(e.Error, tc.field+":") || (tc.code == 422 && e.Field != tc.field) {
			t.Errorf("%s: %d %s, want %d naming %s", tc.name, code, body, tc.code, tc.field)
		}
		t.Logf("%s -> %d %s", tc.name, code, e.Error)
	}
	if code, body := c.do("GET", "/api/v1/schedules", nil); code != 200 || strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("schedules after bad input: %d %s", code, body)
	}

	// A recurring schedule: next occurrences in the configured zone.
	code, body := c.do("POST", "/api/v1/schedules", map[string]any{"id": "ban-tin-sang", "name": "Bản tin sáng", "rrule": "FREQ=DAILY;BYHOUR=6;BYMINUTE=30",
		"zones": []string{"a", "b"}, "source": map[string]any{"kind": "media", "media_id": info.ID}, "volume": 80})
	if code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	var sv scheduleView
	json.Unmarshal(body, &sv)
	if sv.Version != 1 || sv.Enabled == nil || !*sv.Enabled || sv.TimeZone != "Asia/Ho_Chi_Minh" || !strings.HasSuffix(sv.Next, "T06:30:00+07:00") {
		t.Fatalf("created: %s", body)
	}
	if code, _ := c.do("POST", "/api/v1/schedules", map[string]any{"id": "ban-tin-sang", "name": "again", "rrule": "FREQ=DAILY", "zones": []string{"a"}, "source": map[string]any{"kind": "text", "text": "x"}}); code != 409 {
		t.Fatalf("duplicate id: %d", code)
	}
	code, body = c.do("GET", "/api/v1/schedules/ban-tin-sang/next?n=3", nil)
	var next struct{ Next []string }
	json.Unmarshal(body, &next)
	if code != 200 || len(next.Next) != 3 || !strings.HasSuffix(next.Next[2], "T06:30:00+07:00") {
		t.Fatalf("next: %d %s", code, body)
	}
	if code, _ := c.do("GET", "/api/v1/schedules/ban-tin-sang/next?n=0", nil); code != 400 {
		t.Fatalf("n=0: %d", code)
	}
	// Edit with optimistic concurrency: a stale version is refused.
	edit := map[string]any{"name": "Bản tin sáng", "cron": "0 7 * * 1-5", "zones": []string{"a"}, "source": map[string]any{"kind": "text", "text": "xin chào"}, "version": 1, "enabled": false}
	if code, body := c.do("PUT", "/api/v1/schedules/ban-tin-sang", edit); code != 200 {
		t.Fatalf("update: %d %s", code, body)
	}
	if code, _ := c.do("PUT", "/api/v1/schedules/ban-tin-sang", edit); code != 409 {
		t.Fatalf("stale update: %d", code)
	}
	if code, _ := c.do("DELETE", "/api/v1/schedules/ban-tin-sang", nil); code != 204 {
		t.Fatalf("delete: %d", code)
	}
	if code, _ := c.do("GET", "/api/v1/schedules/ban-tin-sang", nil); code != 404 {
		t.Fatalf("get deleted: %d", code)
	}

	// A one-shot with the chime and two plays fires into the engine and a
	// speaker plays all of it: chime + tone + gap + tone.
	waitReady(t, speakers)
	at := time.Now().Add(1500 * time.Millisecond)
	code, body = c.do("POST", "/api/v1/schedules", map[string]any{"id": "thong-bao", "name": "Thông báo", "at": at.Format(time.RFC3339Nano),
		"zones": []string{"b"}, "source": map[string]any{"kind": "media", "media_id": info.ID}, "repeat": 2, "chime": true, "priority": "priority"})
	if code != 201 {
		t.Fatalf("create one-shot: %d %s", code, body)
	}
	var fired []broadcastView
	eventually(t, 10*time.Second, "one-shot broadcast", func() bool {
		fired = c.scheduled("thong-bao")
		return len(fired) == 1 && len(fired[0].StreamIDs) > 0
	})
	chime := len(daemon.Chime()) / media.FrameSamples
	if want := info.Packets*2 + chime; fired[0].Packets < want {
		t.Fatalf("scheduled broadcast has %d packets, want at least chime %d + 2×%d", fired[0].Packets, chime, info.Packets)
	}
	eventually(t, 15*time.Second, "speaker in zone b played the scheduled broadcast", func() bool {
		r, ok := speakers["spk-02"].Stats(fired[0].StreamIDs[0])
		return ok && r.Final && r.Played >= uint32(fired[0].Packets)*95/100
	})
	if _, ok := speakers["spk-01"].Stats(fired[0].StreamIDs[0]); ok {
		t.Fatal("speaker in zone a got the zone b broadcast")
	}
	f := c.firings("thong-bao")
	if len(f) != 1 || f[0].Outcome != schedule.OutcomeFired || !f[0].Occurrence.Equal(at.Truncate(0)) {
		t.Fatalf("firing log: %+v (want one fired at %v)", f, at)
	}
	if late := f[0].Fired.Sub(f[0].Occurrence); late < 0 || late > time.Second {
		t.Fatalf("fired %v after its time", late)
	}
	ev := c.audit(start)
	for _, want := range []struct{ action, target string }{
		{"schedule.create", "ban-tin-sang"}, {"schedule.update", "ban-tin-sang"}, {"schedule.delete", "ban-tin-sang"},
		{"schedule.create", "thong-bao"}, {"schedule.fired", "thong-bao"}, {"broadcast.playing", fired[0].ID},
	} {
		if !hasAudit(ev, want.action, want.target) {
			t.Errorf("audit lacks %s %s", want.action, want.target)
		}
	}
}

// TestQuietHours: inside quiet hours a normal one-shot is skipped and
// logged, an emergency one plays.
func TestQuietHours(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), 3)
	now := time.Now().UTC()
	cfg.Schedule.TimeZone = "UTC"
	cfg.Schedule.QuietFrom = now.Add(-time.Hour).Format("15:04")
	cfg.Schedule.QuietTo = now.Add(time.Hour).Format("15:04")
	d := startDaemon(t, cfg)
	c := login(t, "http://"+d.Ready().HTTP, "admin", adminPassword(t, cfg.DataDir))
	at := time.Now().Add(time.Second).Format(time.RFC3339Nano)
	for _, p := range []string{"normal", "emergency"} {
		if code, body := c.do("POST", "/api/v1/schedules", map[string]any{"id": "q-" + p, "name": p, "at": at, "zones": []string{"a"},
			"source": map[string]any{"kind": "text", "text": "a"}, "priority": p}); code != 201 {
			t.Fatalf("create %s: %d %s", p, code, body)
		}
	}
	eventually(t, 10*time.Second, "both one-shots handled", func() bool {
		n, e := c.firings("q-normal"), c.firings("q-emergency")
		return len(n) == 1 && len(e) == 1 && e[0].Outcome != schedule.OutcomeClaimed
	})
	if f := c.firings("q-normal"); f[0].Outcome != schedule.OutcomeSkippedQuiet {
		t.Fatalf("normal in quiet hours: %+v", f[0])
	}
	if len(c.scheduled("q-normal")) != 0 {
		t.Fatal("the skipped normal one-shot was broadcast")
	}
	if f := c.firings("q-emergency"); f[0].Outcome != schedule.OutcomeFired && f[0].Outcome != schedule.OutcomeFailed {
		t.Fatalf("emergency in quiet hours: %+v", f[0])
	} else if f[0].Outcome == schedule.OutcomeFailed {
		t.Logf("emergency fired but failed in the engine (text-to-speech?): %s", f[0].Detail)
	}
	if !hasAudit(c.audit(now.Add(-time.Minute)), "schedule.skipped_quiet", "q-normal") {
		t.Fatal("skip not audited")
	}
}

// sidecar reads a speaker's recording sidecar once the stream has ended.
func sidecar(t *testing.T, dir, id string, stream uint32) (speaker.Sidecar, bool) {
	raw, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%s-%d.json", id, stream)))
	if err != nil {
		return speaker.Sidecar{}, false
	}
	var s speaker.Sidecar
	return s, json.Unmarshal(raw, &s) == nil
}
