package web

import (
	"bytes"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/broadcast/catalog"
	"github.com/loalang/loalang/broadcast/media"
	"github.com/loalang/loalang/broadcast/playout"
	"github.com/loalang/loalang/broadcast/schedule"
	"github.com/loalang/loalang/internal/audiotest"
	"github.com/loalang/loalang/store"
)

// recordsServer is a loginServer with the media library (a real
// media.Library on disk) and schedules enabled, zones a and b, and a
// police user "cop".
type recordsServer struct {
	*loginServer
	lib        *media.Library
	dir        string
	admin, cop string
}

func newRecordsServer(t *testing.T) *recordsServer {
	t.Helper()
	ls := newLoginServer(t)
	dir := t.TempDir()
	lib, err := media.NewLibrary(media.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.New(catalog.Config{Dir: dir}, store.NewMediaStore(ls.db))
	if err != nil {
		t.Fatal(err)
	}
	ls.EnableBroadcasts(BroadcastDeps{Media: lib, Catalog: cat, Log: playout.New(store.NewPlayoutStore(ls.db), nil), MaxUpload: 8 << 20})
	ls.EnableSchedules(ScheduleDeps{Service: schedule.NewService(store.NewScheduleStore(ls.db), schedule.ServiceConfig{
		KnownZone: func(z string) bool { return z == "a" || z == "b" }, Now: ls.now, CheckLanguage: media.CheckLanguage,
		CheckVoice: func(c string) error { _, err := media.VoiceFor(c); return err }, DefaultLanguage: media.DefaultLanguage})})
	h, _ := auth.HashPassword("cop-password-123")
	store.Put(ls.db, store.Users, "cop", auth.User{Username: "cop", Role: auth.RolePolice, PasswordHash: h})
	rs := &recordsServer{loginServer: ls, lib: lib, dir: dir}
	rs.admin = ls.mustLogin("10.0.0.1:1", "admin", adminPW)
	rs.cop = ls.mustLogin("10.0.0.2:1", "cop", "cop-password-123")
	return rs
}

func (rs *recordsServer) call(method, path, tok string, body any) (int, []byte) {
	rs.t.Helper()
	var raw []byte
	if body != nil {
		raw, _ = json.Marshal(body)
	}
	w := rs.request(method, path, "10.0.0.1:1", tok, "application/json", raw)
	return w.Code, w.Body.Bytes()
}

// upload posts a 1.5 s tone with the given query (language, name, tags).
func (rs *recordsServer) upload(query string, freq float64) media.Info {
	rs.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("file", "tone.wav")
	fw.Write(audiotest.WAV(audiotest.Tone(freq, 0.5, 16000, 1500), 16000, 1))
	mw.Close()
	w := rs.request("POST", "/api/v1/media?"+query, "10.0.0.1:1", rs.admin, mw.FormDataContentType(), buf.Bytes())
	if w.Code != http.StatusCreated {
		rs.t.Fatalf("upload %s: %d %s", query, w.Code, w.Body)
	}
	var info media.Info
	json.Unmarshal(w.Body.Bytes(), &info)
	return info
}

// TestMediaLibrary: upload tagged clips, filter by language, listen,
// rename and tag, and delete: refused with 409 naming the schedule while
// one plays the clip, then allowed, removing the file.
func TestMediaLibrary(t *testing.T) {
	rs := newRecordsServer(t)
	km := rs.upload("language=km&name=Th%C3%B4ng+b%C3%A1o&tags=y-te,y-te,tiem-chung", 700)
	vi := rs.upload("", 1000)
	if km.Language != "km" || km.Name != "Thông báo" || strings.Join(km.Tags, ",") != "y-te,tiem-chung" {
		t.Fatalf("tagged upload: %+v", km)
	}
	if vi.Language != "vi" || vi.Name != "tone.wav" {
		t.Fatalf("plain upload: %+v", vi)
	}
	list := func(q string) []media.Info {
		code, body := rs.call("GET", "/api/v1/media"+q, rs.admin, nil)
		if code != 200 {
			t.Fatalf("list %s: %d %s", q, code, body)
		}
		var out []media.Info
		json.Unmarshal(body, &out)
		return out
	}
	if got := list("?language=km"); len(got) != 1 || got[0].ID != km.ID {
		t.Errorf("language=km: %+v", got)
	}
	if got := list("?language=vi"); len(got) != 1 || got[0].ID != vi.ID {
		t.Errorf("language=vi: %+v", got)
	}
	if got := list("?tag=tiem-chung"); len(got) != 1 || got[0].ID != km.ID {
		t.Errorf("tag: %+v", got)
	}
	if code, _ := rs.call("GET", "/api/v1/media?language=xx", rs.admin, nil); code != 400 {
		t.Errorf("unknown language filter: %d", code)
	}

	// Listen: the stored Ogg Opus file, with range support.
	w := rs.request("GET", "/api/v1/media/"+vi.ID+"/audio", "10.0.0.1:1", rs.admin, "", nil)
	if w.Code != 200 || w.Header().Get("Content-Type") != "audio/ogg; codecs=opus" || !bytes.HasPrefix(w.Body.Bytes(), []byte("OggS")) {
		t.Fatalf("audio: %d %q %q", w.Code, w.Header().Get("Content-Type"), w.Body.Bytes()[:min(8, w.Body.Len())])
	}
	if w := rs.request("GET", "/api/v1/media/"+vi.ID+"/audio", "10.0.0.2:1", rs.cop, "", nil); w.Code != 403 {
		t.Errorf("police listening: %d, want 403", w.Code)
	}

	// Rename, tag and re-tag the language; bad input is refused.
	code, body := rs.call("PATCH", "/api/v1/media/"+vi.ID, rs.admin, map[string]any{"name": " Loa sáng ", "tags": []string{"sang"}, "language": "tyz"})
	var got media.Info
	json.Unmarshal(body, &got)
	if code != 200 || got.Name != "Loa sáng" || got.Language != "tyz" || len(got.Tags) != 1 {
		t.Fatalf("patch: %d %s", code, body)
	}
	for _, bad := range []map[string]any{{"name": ""}, {"language": "fr"}, {"tags": []string{strings.Repeat("x", 41)}}} {
		if code, body := rs.call("PATCH", "/api/v1/media/"+vi.ID, rs.admin, bad); code != 400 {
			t.Errorf("patch %v: %d %s", bad, code, body)
		}
	}
	if code, _ := rs.call("PATCH", "/api/v1/media/"+vi.ID, rs.cop, map[string]any{"name": "x"}); code != 403 {
		t.Errorf("police rename: %d", code)
	}

	// A schedule plays the clip: deleting it is refused, naming the schedule.
	code, body = rs.call("POST", "/api/v1/schedules", rs.admin, map[string]any{"name": "Bản tin sáng", "rrule": "FREQ=DAILY;BYHOUR=6;BYMINUTE=0",
		"zones": []string{"a"}, "source": map[string]any{"kind": "media", "media_id": vi.ID}})
	if code != 201 {
		t.Fatalf("schedule: %d %s", code, body)
	}
	var sc ScheduleView
	json.Unmarshal(body, &sc)
	if sc.Language != "tyz" {
		t.Errorf("schedule language %q, want the clip's tyz", sc.Language)
	}
	code, body = rs.call("DELETE", "/api/v1/media/"+vi.ID, rs.admin, nil)
	if code != 409 || !strings.Contains(string(body), "Bản tin sáng") || !strings.Contains(string(body), sc.ID) {
		t.Fatalf("delete in use: %d %s", code, body)
	}
	path, _ := rs.lib.Path(vi.ID)
	if code, _ := rs.call("DELETE", "/api/v1/schedules/"+sc.ID, rs.admin, nil); code != 204 {
		t.Fatal("delete schedule")
	}
	if code, body := rs.call("DELETE", "/api/v1/media/"+vi.ID, rs.admin, nil); code != 204 {
		t.Fatalf("delete: %d %s", code, body)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("file %s kept after delete: %v", filepath.Base(path), err)
	}
	if code, _ := rs.call("GET", "/api/v1/media/"+vi.ID, rs.admin, nil); code != 404 {
		t.Errorf("deleted clip still readable: %d", code)
	}
	events, _ := rs.db.AuditRange(time.Time{}, time.Time{}, 100)
	var actions []string
	for _, e := range events {
		actions = append(actions, string(e.Action))
	}
	if s := strings.Join(actions, " "); !strings.Contains(s, "media.update") || !strings.Contains(s, "media.delete") {
		t.Errorf("audit: %s", s)
	}
}

// TestLanguagesAndTTS: text is spoken only in a language espeak-ng has a
// voice for; others are refused with 400 naming the language, for
// broadcasts and schedules alike.
func TestLanguagesAndTTS(t *testing.T) {
	rs := newRecordsServer(t)
	code, body := rs.call("GET", "/api/v1/languages", rs.admin, nil)
	if code != 200 || !strings.Contains(string(body), `"hmn"`) || !strings.Contains(string(body), `"voice":"vi"`) {
		t.Fatalf("languages: %d %s", code, body)
	}
	for _, c := range []struct {
		lang, want string
	}{{"km", "Khmer"}, {"hmn", "H'Mông"}, {"xx", "not one of"}} {
		code, body := rs.call("POST", "/api/v1/broadcasts", rs.admin, map[string]any{"text": "xin chào", "zones": []string{"a"}, "language": c.lang})
		if code != 400 || !strings.Contains(string(body), c.want) {
			t.Errorf("broadcast text in %s: %d %s", c.lang, code, body)
		}
		code, body = rs.call("POST", "/api/v1/schedules", rs.admin, map[string]any{"name": "x", "rrule": "FREQ=DAILY;BYHOUR=6",
			"zones": []string{"a"}, "language": c.lang, "source": map[string]any{"kind": "text", "text": "xin chào"}})
		if code != 400 || !strings.Contains(string(body), c.want) {
			t.Errorf("schedule text in %s: %d %s", c.lang, code, body)
		}
	}
	code, body = rs.call("POST", "/api/v1/schedules", rs.admin, map[string]any{"name": "Tin sáng", "rrule": "FREQ=DAILY;BYHOUR=6",
		"zones": []string{"a"}, "source": map[string]any{"kind": "text", "text": "xin chào"}})
	if code != 201 || !strings.Contains(string(body), `"language":"vi"`) {
		t.Errorf("Vietnamese text schedule: %d %s", code, body)
	}
}

// TestSchedulePreview: the form's preview answers the next five firings of
// an unsaved schedule in its zone, names the field of a bad one, and is
// refused to police.
func TestSchedulePreview(t *testing.T) {
	rs := newRecordsServer(t) // clock: 2026-03-01 08:00 UTC = 15:00 in Hanoi
	code, body := rs.call("POST", "/api/v1/schedules/preview", rs.admin, map[string]any{"rrule": "FREQ=DAILY;BYHOUR=6;BYMINUTE=30",
		"zones": []string{}, "source": map[string]any{"kind": "text"}})
	var out struct {
		TimeZone string   `json:"time_zone"`
		Next     []string `json:"next"`
	}
	json.Unmarshal(body, &out)
	want := []string{"2026-03-02T06:30:00+07:00", "2026-03-03T06:30:00+07:00", "2026-03-04T06:30:00+07:00", "2026-03-05T06:30:00+07:00", "2026-03-06T06:30:00+07:00"}
	if code != 200 || strings.Join(out.Next, " ") != strings.Join(want, " ") || out.TimeZone != "Asia/Ho_Chi_Minh" {
		t.Fatalf("preview: %d %s", code, body)
	}
	code, body = rs.call("POST", "/api/v1/schedules/preview", rs.admin, map[string]any{"rrule": "FREQ=SOMETIMES", "zones": []string{}, "source": map[string]any{}})
	if code != 422 || !strings.Contains(string(body), `"field":"rrule"`) {
		t.Errorf("bad rule: %d %s", code, body)
	}
	if code, _ := rs.call("POST", "/api/v1/schedules/preview", rs.cop, map[string]any{"rrule": "FREQ=DAILY"}); code != 403 {
		t.Errorf("police preview: %d", code)
	}
}
