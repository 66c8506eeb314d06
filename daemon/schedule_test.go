package daemon_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/loalang/loalang/broadcast"
	"github.com/loalang/loalang/broadcast/media"
	"github.com/loalang/loalang/broadcast/schedule"
	"github.com/loalang/loalang/broadcast/trigger"
	"github.com/loalang/loalang/daemon"
	"github.com/loalang/loalang/firmware-sim/speaker"
	"github.com/loalang/loalang/internal/audiotest"
	"github.com/loalang/loalang/store"
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
	chime := len(trigger.Chime()) / media.FrameSamples
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

// pollStreams polls speakers every 2 ms until cond holds for every one of
// them, returning when each first did, measured from from (an upper bound:
// the poll period and the speaker's lock add a little).
func pollStreams(t *testing.T, from time.Time, within time.Duration, what string, ids []string, cond func(id string) bool) map[string]time.Duration {
	t.Helper()
	start := time.Now()
	seen := map[string]time.Duration{}
	for time.Since(start) < within {
		for _, id := range ids {
			if _, ok := seen[id]; !ok && cond(id) {
				seen[id] = time.Since(from)
			}
		}
		if len(seen) == len(ids) {
			return seen
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("%s: only %v within %v", what, seen, within)
	return nil
}

// TestPreemptionEndToEnd is issue 4's first acceptance item: a normal
// broadcast plays in zones a and b; an emergency in zone b takes over on
// the simulated speakers within 1 s, zone a carries on, and the normal
// broadcast resumes in b (policy resume) or ends interrupted (policy
// interrupt).
func TestPreemptionEndToEnd(t *testing.T) {
	for _, policy := range []string{"resume", "interrupt"} {
		t.Run(policy, func(t *testing.T) { preemption(t, policy) })
	}
}

func preemption(t *testing.T, policy string) {
	cfg := testConfig(t, t.TempDir(), 6) // spk-01,04 in a; 02,05 in b; 03,06 in c
	cfg.Broadcast.PreemptPolicy = policy
	d := startDaemon(t, cfg)
	rec := t.TempDir()
	speakers := startSpeakers(t, cfg.DataDir, func(c *speaker.Config) { c.RecordDir = rec; c.KeepPlayed = 0 })
	c := login(t, "http://"+d.Ready().HTTP, "admin", adminPassword(t, cfg.DataDir))
	waitReady(t, speakers)
	long := uploadTone(t, c, 440, 6000)
	urgent := uploadTone(t, c, 1000, 1500)
	inA, inB := []string{"spk-01", "spk-04"}, []string{"spk-02", "spk-05"}
	start := time.Now()

	code, body := c.do("POST", "/api/v1/broadcasts", map[string]any{"media_id": long.ID, "zones": []string{"a", "b"}, "priority": "normal"})
	if code != 201 {
		t.Fatalf("normal: %d %s", code, body)
	}
	var normal broadcastView
	json.Unmarshal(body, &normal)
	eventually(t, 5*time.Second, "normal stream id", func() bool { normal = c.broadcast(normal.ID); return len(normal.StreamIDs) > 0 })
	first := normal.StreamIDs[0]
	pollStreams(t, time.Now(), 5*time.Second, "normal playing in a and b", append(inA, inB...), func(id string) bool {
		r, ok := speakers[id].Stats(first)
		return ok && r.Played > 25 // half a second in
	})

	t0 := time.Now()
	code, body = c.do("POST", "/api/v1/broadcasts", map[string]any{"media_id": urgent.ID, "zones": []string{"b"}, "priority": "emergency"})
	if code != 201 {
		t.Fatalf("emergency: %d %s", code, body)
	}
	var em broadcastView
	json.Unmarshal(body, &em)
	if len(em.StreamIDs) == 0 {
		t.Fatalf("emergency did not start at once: %s", body)
	}
	polled := pollStreams(t, t0, 3*time.Second, "emergency heard in b", inB, func(id string) bool {
		r, ok := speakers[id].Stats(em.StreamIDs[0])
		return ok && r.Played > 0
	})
	// The normal stream was cut in b and carries on in a.
	pollStreams(t, t0, time.Second, "normal cut in b", inB, func(id string) bool { r, _ := speakers[id].Stats(first); return r.Final })
	for _, id := range inA {
		if r, _ := speakers[id].Stats(first); r.Final {
			t.Fatalf("%s in zone a lost the normal broadcast", id)
		}
	}
	for _, id := range []string{"spk-03", "spk-06"} {
		if _, ok := speakers[id].Stats(em.StreamIDs[0]); ok {
			t.Fatalf("%s in zone c got the emergency", id)
		}
	}
	// Exact takeover from the recordings: the first emergency sample as
	// played (host clock), against the moment the API was called.
	for _, id := range inB {
		var sc speaker.Sidecar
		eventually(t, 5*time.Second, "emergency recording of "+id, func() bool {
			var ok bool
			sc, ok = sidecar(t, rec, id, em.StreamIDs[0])
			return ok
		})
		takeover := time.Duration(sc.FirstSampleUnixNS - t0.UnixNano())
		t.Logf("%s: emergency first sample %v after the API call (poll saw it at %v); played %d/%d", id, takeover, polled[id], sc.Played, sc.Expected)
		if takeover <= 0 || takeover > time.Second {
			t.Errorf("%s: takeover %v, want within 1 s", id, takeover)
		}
		if sc.Played < sc.Expected*95/100 {
			t.Errorf("%s: emergency played %d of %d", id, sc.Played, sc.Expected)
		}
		cut, ok := sidecar(t, rec, id, first)
		if !ok {
			t.Fatalf("%s: no recording of the cut normal stream", id)
		}
		end := time.Unix(0, cut.FirstSampleUnixNS).Add(time.Duration(cut.Samples) * time.Second / time.Duration(cut.SampleRate))
		t.Logf("%s: normal stream's last sample %v before the emergency's first", id, time.Unix(0, sc.FirstSampleUnixNS).Sub(end))
		if end.After(time.Unix(0, sc.FirstSampleUnixNS).Add(20 * time.Millisecond)) {
			t.Errorf("%s: the normal stream played on after the emergency started", id)
		}
	}

	switch policy {
	case "resume":
		eventually(t, 10*time.Second, "normal resumed in b on a new stream", func() bool {
			normal = c.broadcast(normal.ID)
			if len(normal.StreamIDs) < 2 {
				return false
			}
			for _, id := range inB {
				if r, ok := speakers[id].Stats(normal.StreamIDs[len(normal.StreamIDs)-1]); !ok || r.Played < 10 {
					return false
				}
			}
			return true
		})
		eventually(t, 15*time.Second, "normal done", func() bool { return c.broadcast(normal.ID).State == "done" })
	case "interrupt":
		eventually(t, 15*time.Second, "normal interrupted", func() bool { normal = c.broadcast(normal.ID); return normal.State == "interrupted" })
		if len(normal.StreamIDs) != 1 {
			t.Fatalf("interrupted broadcast used streams %v", normal.StreamIDs)
		}
		eventually(t, 5*time.Second, "interruption audited", func() bool { return hasAudit(c.audit(start), "broadcast.interrupted", normal.ID) })
	}
	if ev := c.audit(start); !hasAudit(ev, "broadcast.playing", em.ID) || !hasAudit(ev, "broadcast.playing", normal.ID) {
		t.Fatalf("broadcast starts not audited")
	}
}

// TestStopAllSilencesSpeakers is issue 4's kill-switch item: with three
// broadcasts playing on six simulated speakers, one call ends every stream
// on every speaker within 1 s, and the call is audited.
func TestStopAllSilencesSpeakers(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), 6)
	d := startDaemon(t, cfg)
	speakers := startSpeakers(t, cfg.DataDir, nil)
	c := login(t, "http://"+d.Ready().HTTP, "admin", adminPassword(t, cfg.DataDir))
	waitReady(t, speakers)
	long := uploadTone(t, c, 440, 20000)
	start := time.Now()
	stream := map[string]uint32{} // speaker -> stream it plays
	var ids []string
	for i, z := range []string{"a", "b", "c"} {
		code, body := c.do("POST", "/api/v1/broadcasts", map[string]any{"media_id": long.ID, "zones": []string{z}, "priority": []string{"background", "normal", "emergency"}[i]})
		if code != 201 {
			t.Fatalf("broadcast %s: %d %s", z, code, body)
		}
		var b broadcastView
		json.Unmarshal(body, &b)
		ids = append(ids, b.ID)
		for _, dev := range cfg.Devices {
			if dev.Zones[0] == z {
				stream[dev.ID] = b.StreamIDs[0]
			}
		}
	}
	all := make([]string, 0, len(stream))
	for id := range stream {
		all = append(all, id)
	}
	pollStreams(t, time.Now(), 5*time.Second, "every speaker playing", all, func(id string) bool {
		r, ok := speakers[id].Stats(stream[id])
		return ok && r.Played > 10
	})

	t0 := time.Now()
	code, body := c.do("POST", "/api/v1/broadcasts/stop-all", nil)
	api := time.Since(t0)
	if code != 200 || !strings.Contains(string(body), `"stopped":3`) {
		t.Fatalf("stop-all: %d %s", code, body)
	}
	silent := pollStreams(t, t0, 2*time.Second, "every speaker stopped", all, func(id string) bool {
		r, _ := speakers[id].Stats(stream[id])
		return r.Final
	})
	var worst time.Duration
	for _, d := range silent {
		worst = max(worst, d)
	}
	t.Logf("stop-all: API answered in %v; every speaker's stream ended within %v of the call (%v)", api, worst, silent)
	if worst > time.Second {
		t.Fatalf("kill switch took %v", worst)
	}
	played := map[string]uint32{}
	for _, id := range all {
		r, _ := speakers[id].Stats(stream[id])
		played[id] = r.Played
	}
	for _, id := range ids {
		if b := c.broadcast(id); b.State != "stopped" {
			t.Fatalf("broadcast %s: %s after stop-all", id, b.State)
		}
	}
	var ev []auditEvent
	eventually(t, 5*time.Second, "stop-all and the stops audited", func() bool {
		ev = c.audit(start)
		for _, id := range ids {
			if !hasAudit(ev, "broadcast.stopped", id) {
				return false
			}
		}
		return hasAudit(ev, "broadcast.stop_all", "")
	})
	for _, id := range all {
		if r, _ := speakers[id].Stats(stream[id]); r.Played != played[id] {
			t.Fatalf("%s played on after stop-all: %d -> %d", id, played[id], r.Played)
		}
	}
}

// upstream is an HTTP MP3 "radio station": it loops an MP3 file at its
// bitrate in real time (after a 0.5 s burst, like Icecast's burst on
// connect), and can be killed and restarted on the same address.
type upstream struct {
	t    *testing.T
	addr string
	data []byte
	rate int // bytes per second
	srv  *http.Server
	wg   sync.WaitGroup
}

func (u *upstream) start() {
	u.t.Helper()
	ln, err := net.Listen("tcp", u.addr)
	if err != nil {
		u.t.Fatalf("upstream listen %s: %v", u.addr, err)
	}
	u.addr = ln.Addr().String()
	u.srv = &http.Server{Handler: u}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		u.srv.Serve(ln)
	}()
}

// kill closes the listener and every connection, as a crashed station.
func (u *upstream) kill() {
	u.srv.Close()
	u.wg.Wait()
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "audio/mpeg")
	fl := w.(http.Flusher)
	start := time.Now()
	sent := 0
	for {
		allowed := int(float64(u.rate) * (time.Since(start).Seconds() + 0.5))
		for sent < allowed {
			off := sent % len(u.data)
			n := min(allowed-sent, len(u.data)-off)
			if _, err := w.Write(u.data[off : off+n]); err != nil {
				return
			}
			sent += n
		}
		fl.Flush()
		select {
		case <-r.Context().Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestRelayScheduleSurvivesUpstreamGap: a scheduled relay of an HTTP MP3
// stream plays on a speaker; the station dies mid-window and comes back;
// the gap is logged and audited, and the programme resumes on the same
// stream until the window ends.
func TestRelayScheduleSurvivesUpstreamGap(t *testing.T) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Skip("ffmpeg is not installed (make test installs it)")
	}
	mp3 := filepath.Join(t.TempDir(), "station.mp3")
	// 44.1 kHz MPEG-1 Layer III at 64 kbit/s, frames only (no ID3, no
	// Xing header), so looping the file is seamless at frame boundaries.
	out, err := exec.Command(ffmpeg, "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=3",
		"-ac", "1", "-ar", "44100", "-b:a", "64k", "-id3v2_version", "0", "-write_xing", "0", "-f", "mp3", mp3).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v %s", err, out)
	}
	data, _ := os.ReadFile(mp3)
	up := &upstream{t: t, addr: "127.0.0.1:0", data: data, rate: 64000 / 8}
	up.start()
	t.Cleanup(up.kill)

	cfg := testConfig(t, t.TempDir(), 3)
	// The station runs on loopback here: allowed explicitly, as an admin
	// would allow a radio encoder on the village LAN.
	cfg.Schedule.RelayAllow = []string{"127.0.0.1/32"}
	d := startDaemon(t, cfg)
	speakers := startSpeakers(t, cfg.DataDir, func(c *speaker.Config) { c.KeepPlayed = 0 })
	c := login(t, "http://"+d.Ready().HTTP, "admin", adminPassword(t, cfg.DataDir))
	waitReady(t, speakers)
	start := time.Now()
	code, body := c.do("POST", "/api/v1/schedules", map[string]any{"id": "dai-tinh", "name": "Tiếp sóng đài tỉnh",
		"at": time.Now().Add(time.Second).Format(time.RFC3339Nano), "zones": []string{"a"}, "priority": "background",
		"source": map[string]any{"kind": "relay", "url": "http://" + up.addr + "/live.mp3", "duration": "10s"}})
	if code != 201 {
		t.Fatalf("create relay: %d %s", code, body)
	}
	var sv scheduleView
	json.Unmarshal(body, &sv)
	if sv.Source.Duration != "10s" {
		t.Fatalf("duration: %s", body)
	}
	spk := speakers["spk-01"] // zone a
	var b broadcastView
	eventually(t, 10*time.Second, "relay playing on the speaker", func() bool {
		bs := c.scheduled("dai-tinh")
		if len(bs) != 1 || len(bs[0].StreamIDs) == 0 {
			return false
		}
		b = bs[0]
		r, ok := spk.Stats(b.StreamIDs[0])
		return ok && r.Played > 75 // 1.5 s
	})
	stream := b.StreamIDs[0]
	// tone reports the 440 Hz amplitude and the broadband level of the
	// last 400 ms the speaker played.
	tone := func() (at440, rms float64) {
		pcm := spk.Played(stream)
		if len(pcm) < 19200 {
			return 0, 0
		}
		tail := pcm[len(pcm)-19200:]
		return audiotest.Goertzel(tail, 48000, 440), audiotest.RMS(tail)
	}
	if a, rms := tone(); a < 0.05 || a < 1.2*rms {
		t.Fatalf("before the gap: 440 Hz amplitude %.3f, rms %.3f: not the station's tone", a, rms)
	}

	up.kill()
	killed := time.Now()
	eventually(t, 3*time.Second, "silence while the station is down", func() bool { a, _ := tone(); return a < 0.01 })
	time.Sleep(1500*time.Millisecond - time.Since(killed)) // the outage itself: 1.5 s
	up.start()
	back := time.Now()
	var gap auditEvent
	eventually(t, 8*time.Second, "gap audited", func() bool {
		for _, e := range c.audit(start) {
			if e.Action == "schedule.relay_gap" && e.Target == "dai-tinh" {
				gap = e
				return true
			}
		}
		return false
	})
	t.Logf("gap audited %v after the restart: %v", time.Since(back), gap.Detail)
	if ms, _ := gap.Detail["gap_ms"].(float64); ms < 1400 || gap.Detail["resumed"] != true {
		t.Fatalf("gap detail: %v", gap.Detail)
	}
	eventually(t, 5*time.Second, "station's tone back on the same stream", func() bool { a, rms := tone(); return a > 0.05 && a > 1.2*rms })
	t.Logf("tone back %v after the restart", time.Since(back))
	eventually(t, 15*time.Second, "relay window over", func() bool {
		bs := c.scheduled("dai-tinh")
		return len(bs) == 1 && bs[0].State == "done"
	})
	if bs := c.scheduled("dai-tinh"); len(bs[0].StreamIDs) != 1 {
		t.Fatalf("relay used streams %v, want one across the gap", bs[0].StreamIDs)
	}
	r, _ := spk.Stats(stream)
	t.Logf("relay stream: expected %d played %d late %d lost %d", r.Expected, r.Played, r.Late, r.Lost)
	if r.Played < 400 { // 10 s window, 8+ s played
		t.Fatalf("relay played only %d packets", r.Played)
	}
	if f := c.firings("dai-tinh"); len(f) != 1 || f[0].Outcome != schedule.OutcomeFired {
		t.Fatalf("firing: %+v", f)
	}
}

// loalangd is a real loalangd process for the crash test.
type loalangd struct {
	cmd  *exec.Cmd
	base string
	log  *bytes.Buffer
}

func startLoalangd(t *testing.T, bin, cfgFile, dir string) *loalangd {
	t.Helper()
	os.Remove(filepath.Join(dir, daemon.ReadyFile))
	var log bytes.Buffer
	cmd := exec.Command(bin, "--config", cfgFile, "--data-dir", dir, "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0", "--log-level", "warn")
	cmd.Env = append(os.Environ(), "LOALANG_WEBRTC_UDP_PORT=0")
	cmd.Stderr = &log
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
		raw, err := os.ReadFile(filepath.Join(dir, daemon.ReadyFile))
		var r daemon.Ready
		if err == nil && json.Unmarshal(raw, &r) == nil && r.HTTP != "" {
			return &loalangd{cmd: cmd, base: "http://" + r.HTTP, log: &log}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("loalangd not ready:\n%s", log.String())
	return nil
}

// TestCrashRestartSchedules is issue 4's second acceptance item: the real
// loalangd is killed with SIGKILL ten times, at random moments, while
// schedules are created through the API and fired (one-shots 1–2 s ahead,
// and an every-second cron on the real clock). After each restart every
// schedule whose POST returned 201 is there; at the end every one-shot has
// exactly one firing record and was broadcast at most once, and the
// recurring schedule was never broadcast more often than it was claimed.
func TestCrashRestartSchedules(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "loalangd")
	if out, err := exec.Command("go", "build", "-tags", "nolibopusfile", "-o", bin, "github.com/loalang/loalang/cmd/loalangd").CombinedOutput(); err != nil {
		t.Fatalf("build loalangd: %v\n%s", err, out)
	}
	dir := t.TempDir()
	cfgFile := filepath.Join(t.TempDir(), "crash.yaml")
	os.WriteFile(cfgFile, []byte("site: crash\nzones:\n  - id: a\n  - id: b\nschedule:\n  time_zone: Asia/Ho_Chi_Minh\n  min_interval: 1s\n"), 0o644)
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 4))
	t.Logf("seed %d", seed)
	hc := &http.Client{Timeout: 3 * time.Second}

	var created []string // every id whose POST answered 201
	var mediaID string
	const rounds = 10
	for round := 0; round <= rounds; round++ {
		p := startLoalangd(t, bin, cfgFile, dir)
		c := login(t, p.base, "admin", adminPassword(t, dir))
		for _, id := range created {
			if code, body := c.do("GET", "/api/v1/schedules/"+id, nil); code != 200 {
				t.Fatalf("round %d: schedule %s acknowledged with 201 is gone: %d %s", round, id, code, body)
			}
		}
		if round == 0 {
			mediaID = uploadTone(t, c, 700, 300).ID
			code, body := c.do("POST", "/api/v1/schedules", map[string]any{"id": "every-second", "name": "every second", "cron": "* * * * * *",
				"zones": []string{"a"}, "source": map[string]any{"kind": "media", "media_id": mediaID}})
			if code != 201 {
				t.Fatalf("recurring: %d %s", code, body)
			}
			created = append(created, "every-second")
		}
		if round == rounds {
			// Let the last one-shots come due, then stop cleanly.
			time.Sleep(2500 * time.Millisecond)
			p.cmd.Process.Signal(syscall.SIGTERM)
			if err := p.cmd.Wait(); err != nil {
				t.Fatalf("clean stop: %v\n%s", err, p.log)
			}
			break
		}
		// Create one-shots until the kill; a POST cut by the kill may or
		// may not have committed, and only a 201 is a promise.
		stop := make(chan struct{})
		done := make(chan []string)
		go func() {
			var ok []string
			defer func() { done <- ok }()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("r%02d-%03d", round, i)
				at := time.Now().Add(time.Second + time.Duration(i%5)*250*time.Millisecond)
				raw, _ := json.Marshal(map[string]any{"id": id, "name": id, "at": at.Format(time.RFC3339Nano), "zones": []string{"a", "b"},
					"source": map[string]any{"kind": "media", "media_id": mediaID}})
				req, _ := http.NewRequest("POST", p.base+"/api/v1/schedules", bytes.NewReader(raw))
				req.Header.Set("Authorization", "Bearer "+c.token)
				resp, err := hc.Do(req)
				if err != nil {
					continue // the process is gone
				}
				resp.Body.Close()
				if resp.StatusCode == 201 {
					ok = append(ok, id)
				}
				time.Sleep(time.Duration(40+rand.IntN(80)) * time.Millisecond)
			}
		}()
		// The random moment of the crash (a deliberate wait, not a
		// readiness wait): 0.6–2.6 s into the round.
		time.Sleep(time.Duration(600+rng.IntN(2000)) * time.Millisecond)
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.cmd.Wait()
		close(stop)
		created = append(created, <-done...)
	}

	db, err := store.Open(filepath.Join(dir, daemon.DBFile), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Check(); err != nil {
		t.Fatalf("bbolt check: %v", err)
	}
	firings, err := store.NewScheduleStore(db).Firings("", 0)
	if err != nil {
		t.Fatal(err)
	}
	records, err := store.List[broadcast.Record](db, store.Broadcasts, "")
	if err != nil {
		t.Fatal(err)
	}
	events, _ := db.AuditRange(time.Time{}, time.Time{}, 0)
	bySchedule := map[string][]schedule.Firing{}
	for _, f := range firings {
		bySchedule[f.ScheduleID] = append(bySchedule[f.ScheduleID], f)
	}
	broadcasts := map[string]int{}
	for _, r := range records {
		if r.Origin == "schedule" {
			broadcasts[r.ScheduleID]++
		}
	}
	// Each (schedule, occurrence) is audited as fired at most once.
	firedAudit := map[string]int{}
	for _, e := range events {
		if e.Action == "schedule.fired" || e.Action == "schedule.failed" {
			k := e.Target + "@" + fmt.Sprint(e.Detail["occurrence"])
			if firedAudit[k]++; firedAudit[k] > 1 {
				t.Errorf("%s audited as fired twice", k)
			}
		}
	}
	outcomes := map[string]int{}
	oneShots := 0
	for _, id := range created {
		if id == "every-second" {
			continue
		}
		oneShots++
		f := bySchedule[id]
		if len(f) != 1 {
			t.Errorf("one-shot %s: %d firing records, want exactly 1: %+v", id, len(f), f)
			continue
		}
		outcomes[f[0].Outcome]++
		if broadcasts[id] > 1 {
			t.Errorf("one-shot %s broadcast %d times", id, broadcasts[id])
		}
	}
	rec := bySchedule["every-second"]
	played := 0
	recOutcomes := map[string]int{}
	for _, f := range rec {
		recOutcomes[f.Outcome]++
		if f.Outcome == schedule.OutcomeFired || f.Outcome == schedule.OutcomeClaimed || f.Outcome == schedule.OutcomeFailed {
			played++
		}
	}
	if broadcasts["every-second"] > played {
		t.Errorf("every-second broadcast %d times for %d claimed occurrences", broadcasts["every-second"], played)
	}
	t.Logf("%d schedules acknowledged, %d one-shots: outcomes %v, %d one-shot broadcasts logged", len(created), oneShots, outcomes, len(records)-broadcasts["every-second"])
	t.Logf("every-second: %d records %v, %d broadcasts logged", len(rec), recOutcomes, broadcasts["every-second"])
	if oneShots < 2*rounds || outcomes[schedule.OutcomeFired] < oneShots/2 || recOutcomes[schedule.OutcomeFired] < 10 {
		t.Fatalf("too little happened to prove anything: %d one-shots, %v; recurring %v", oneShots, outcomes, recOutcomes)
	}
}

// TestScheduleLimits covers issues 11 and 12 through the API: a schedule
// firing more often than schedule.min_interval, or overlapping itself, and
// a relay pointed at the daemon's own loopback API are refused with 422
// naming the field; a token in a relay URL never reaches the audit trail.
func TestScheduleLimits(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), 0)
	d := startDaemon(t, cfg)
	c := login(t, "http://"+d.Ready().HTTP, "admin", adminPassword(t, cfg.DataDir))
	start := time.Now()
	api := d.Ready().HTTP
	text := map[string]any{"kind": "text", "text": "Họp thôn lúc 7 giờ tối"}
	relay := func(u, dur string) map[string]any { return map[string]any{"kind": "relay", "url": u, "duration": dur} }
	for _, tc := range []struct {
		name  string
		body  map[string]any
		field string
	}{
		{"every second", map[string]any{"name": "x", "rrule": "FREQ=SECONDLY", "zones": []string{"a"}, "source": text}, "rrule"},
		{"every minute, with an end", map[string]any{"name": "x", "rrule": "FREQ=MINUTELY;COUNT=30", "zones": []string{"a"}, "source": text}, "rrule"},
		{"one-minute cron", map[string]any{"name": "x", "cron": "* * * * *", "zones": []string{"a"}, "source": text}, "cron"},
		{"relay overlapping itself", map[string]any{"name": "x", "cron": "*/10 * * * *", "zones": []string{"a"}, "source": relay("http://radio.example/live", "15m")}, "cron"},
		{"relay to the daemon's API", map[string]any{"name": "x", "at": time.Now().Add(time.Hour).Format(time.RFC3339), "zones": []string{"a"}, "source": relay("http://"+api+"/api/v1/users", "10m")}, "source.url"},
		{"relay to localhost", map[string]any{"name": "x", "at": time.Now().Add(time.Hour).Format(time.RFC3339), "zones": []string{"a"}, "source": relay("http://localhost:8080/", "10m")}, "source.url"},
		{"relay to cloud metadata", map[string]any{"name": "x", "at": time.Now().Add(time.Hour).Format(time.RFC3339), "zones": []string{"a"}, "source": relay("http://169.254.169.254/latest/meta-data/", "10m")}, "source.url"},
		{"relay to the LAN", map[string]any{"name": "x", "at": time.Now().Add(time.Hour).Format(time.RFC3339), "zones": []string{"a"}, "source": relay("http://192.168.1.1/", "10m")}, "source.url"},
	} {
		code, body := c.do("POST", "/api/v1/schedules", tc.body)
		var e struct{ Error, Field string }
		json.Unmarshal(body, &e)
		if code != 422 || e.Field != tc.field {
			t.Errorf("%s: %d %s, want 422 naming %s", tc.name, code, body, tc.field)
			continue
		}
		t.Logf("%s -> %d %s", tc.name, code, e.Error)
	}
	// Accepted: every five minutes, hourly relay shorter than the hour, a
	// public relay whose URL carries a token.
	for _, body := range []map[string]any{
		{"id": "nhac-nho", "name": "x", "rrule": "FREQ=MINUTELY;INTERVAL=5", "zones": []string{"a"}, "source": text},
		{"id": "dai", "name": "x", "rrule": "FREQ=HOURLY", "zones": []string{"a"}, "source": relay("http://radio.example/live.mp3?token=S3cr3tT0ken&ch=1", "20m")},
	} {
		if code, resp := c.do("POST", "/api/v1/schedules", body); code != 201 {
			t.Fatalf("create %s: %d %s", body["id"], code, resp)
		}
	}
	code, raw := c.do("GET", "/api/v1/audit?format=csv", nil)
	if code != 200 || !strings.Contains(string(raw), "schedule.create") {
		t.Fatalf("audit: %d %s", code, raw)
	}
	if strings.Contains(string(raw), "S3cr3tT0ken") {
		t.Fatalf("audit trail holds the relay token:\n%s", raw)
	}
	for _, e := range c.audit(start) {
		if e.Action == "schedule.create" && e.Target == "dai" {
			t.Logf("relay audited as %v", e.Detail["url"])
		}
	}
	// The API shows the relay URL without the token; sent back as shown,
	// the stored URL (token included) is kept.
	code, raw = c.do("GET", "/api/v1/schedules/dai", nil)
	if code != 200 || strings.Contains(string(raw), "S3cr3tT0ken") || !strings.Contains(string(raw), "token=***") {
		t.Fatalf("GET relay schedule: %d %s", code, raw)
	}
	var v map[string]any
	json.Unmarshal(raw, &v)
	v["name"] = "Đài tỉnh"
	if code, raw := c.do("PUT", "/api/v1/schedules/dai", v); code != 200 || strings.Contains(string(raw), "S3cr3tT0ken") {
		t.Fatalf("PUT relay schedule as shown: %d %s", code, raw)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(cfg.DataDir, daemon.DBFile), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sc, err := store.Get[schedule.Schedule](db, store.Schedules, "dai")
	if err != nil || sc.Name != "Đài tỉnh" || !strings.Contains(sc.Source.URL, "token=S3cr3tT0ken") {
		t.Fatalf("stored relay after the PUT: %+v %v", sc.Source, err)
	}
}

// TestScheduleFiresOnInjectedClock drives one firing through the whole
// daemon on an injected clock five years ahead of the wall clock: the
// schedule service stamps the schedule on it, the scheduler fires at the
// clock's 06:00 (stepped, never slept), the engine stamps the broadcast on
// it and plays it out as the clock advances.
func TestScheduleFiresOnInjectedClock(t *testing.T) {
	cfg := testConfig(t, t.TempDir(), 1)
	start := time.Date(2031, 5, 4, 5, 59, 0, 0, time.UTC)
	clock := schedule.NewFakeClock(start)
	ctx, cancel := context.WithCancel(context.Background())
	d, err := daemon.New(ctx, cfg, testLogger(t), daemon.WithClock(clock))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); d.Close() })
	c := login(t, "http://"+d.Ready().HTTP, "admin", adminPassword(t, cfg.DataDir))
	tone := uploadTone(t, c, 500, 300)
	at := start.Add(time.Minute)
	code, body := c.do("POST", "/api/v1/schedules", map[string]any{"id": "dawn", "name": "dawn", "at": at.Format(time.RFC3339),
		"zones": []string{"a"}, "source": map[string]any{"kind": "media", "media_id": tone.ID}})
	if code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	var created struct {
		CreatedAt time.Time `json:"created_at"`
		Next      string    `json:"next"`
	}
	json.Unmarshal(body, &created)
	if !created.CreatedAt.Equal(start) || created.Next != "2031-05-04T13:00:00+07:00" {
		t.Fatalf("created on the injected clock? created_at %v, next %q", created.CreatedAt, created.Next)
	}

	// walk steps the clock one armed timer at a time (the scheduler's and
	// the engine's), waiting for each to be armed: no sleep.
	walk := func(to time.Time) {
		for clock.Now().Before(to) {
			var d time.Duration
			eventually(t, 10*time.Second, "a timer armed", func() bool {
				var ok bool
				d, ok = clock.NextTimer()
				return ok
			})
			clock.Advance(min(d, to.Sub(clock.Now())))
		}
	}
	walk(at.Add(time.Second))
	eventually(t, 10*time.Second, "the occurrence fired", func() bool {
		f := c.firings("dawn")
		return len(f) == 1 && f[0].Outcome == schedule.OutcomeFired && f[0].Occurrence.Equal(at)
	})
	played := c.scheduled("dawn")
	if len(played) != 1 {
		t.Fatalf("%d scheduled broadcasts, want 1", len(played))
	}
	var b struct {
		State   string    `json:"state"`
		Created time.Time `json:"created"`
	}
	get := func() {
		code, body := c.do("GET", "/api/v1/broadcasts/"+played[0].ID, nil)
		if code != 200 {
			t.Fatalf("broadcast: %d %s", code, body)
		}
		json.Unmarshal(body, &b)
	}
	get()
	if b.Created.Before(at) || b.Created.After(at.Add(time.Minute)) {
		t.Fatalf("broadcast created %v, want on the injected clock at %v", b.Created, at)
	}
	// The engine waits on the injected clock: the 300 ms tone ends once
	// the clock has moved past it, however long the wall clock takes.
	walk(clock.Now().Add(5 * time.Second))
	eventually(t, 10*time.Second, "the broadcast ended", func() bool { get(); return b.State != "playing" && b.State != "queued" })
	t.Logf("fired at %v on the injected clock; broadcast %s created %v, state %s", at, played[0].ID, b.Created.UTC(), b.State)
	if b.State != "done" {
		t.Errorf("broadcast state %q, want done", b.State)
	}
}
