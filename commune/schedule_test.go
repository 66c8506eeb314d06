package commune

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/loalang/loalang/uplink"
)

// fakeClock is a settable clock shared by the server's goroutines.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.ns.Store(t.UnixNano())
	return c
}
func (c *fakeClock) now() time.Time             { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) add(d time.Duration)        { c.ns.Add(int64(d)) }
func (c *fakeClock) rfc(d time.Duration) string { return c.now().Add(d).Format(time.RFC3339) }

// TestScheduledBulletin: a draft with air_at is "scheduled" once approved
// and nothing is published before air_at; after the clock passes air_at
// it is signed (audited draft.air) and published; a commune restart
// (reopening the same bbolt file) between approval and air time still
// sends it, signed once; a cancelled scheduled draft is never published;
// air_at in the past, after the expiry or unparsable is a 400.
func TestScheduledBulletin(t *testing.T) {
	broker := startMosquitto(t)
	cfg := testConfig(t, "tcp://"+broker)
	cfg.Commune.ResendEvery = 500 * time.Millisecond
	clock := newFakeClock(time.Now().Truncate(time.Second))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	start := func() (*Server, *httptest.Server) {
		s, err := newServer(context.Background(), cfg, log, clock.now)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, "commune connected", func() bool { return s.mqtt.connected.Load() })
		return s, httptest.NewServer(s.Handler())
	}
	s, srv := start()
	keys, _ := uplink.ParseKeys(nil, []string{uplink.PublicKeyString(s.key.Public().(ed25519.PublicKey))})

	// Published command ids, read by a plain subscriber on thon-1's topic.
	got := make(chan string, 64)
	tops, _ := uplink.NewTopics("hanoi", "xa-1", "thon-1")
	ct := tops.CommandTopics()
	sub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + broker).SetClientID("listener"))
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer sub.Disconnect(100)
	if tok := sub.Subscribe(ct[len(ct)-1], 1, func(_ mqtt.Client, m mqtt.Message) {
		if c, err := uplink.Open(m.Payload(), keys); err == nil {
			got <- c.ID
		}
	}); !tok.WaitTimeout(10 * time.Second) {
		t.Fatal("subscribe")
	}
	// notPublished drains got for a few resend periods and fails if id came.
	notPublished := func(id string) {
		t.Helper()
		deadline := time.After(3 * time.Second)
		for {
			select {
			case x := <-got:
				if x == id {
					t.Fatalf("%s was published before its time", id)
				}
			case <-deadline:
				return
			}
		}
	}
	published := func(id string) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case x := <-got:
				if x == id {
					return
				}
			case <-deadline:
				t.Fatalf("%s was not published", id)
			}
		}
	}

	raw, _ := os.ReadFile(filepath.Join(cfg.DataDir, AdminPassFile))
	adminPass := strings.TrimSpace(string(raw))
	admin := login(t, srv.URL, "admin", adminPass)
	for _, u := range []map[string]any{{"username": "bt", "password": "editor-pass-1", "role": "editor"}, {"username": "dy", "password": "approver-pass-1", "role": "approver"}} {
		admin.do("POST", "/api/v1/commune/users", u)
	}
	ed := login(t, srv.URL, "bt", "editor-pass-1")
	ap := login(t, srv.URL, "dy", "approver-pass-1")

	// Bad air times.
	for _, c := range []struct{ at, want string }{
		{clock.rfc(-time.Minute), "air_at must be in the future"},
		{clock.rfc(3 * time.Hour), "air_at must be before the draft expires"},
		{"7:00 sáng mai", "air_at must be an RFC 3339 time"},
	} {
		code, body := ed.do("POST", "/api/v1/commune/drafts", map[string]any{"text": "x", "villages": []string{"thon-1"}, "expires_in": "2h", "air_at": c.at})
		if code != 400 || !strings.Contains(string(body), c.want) {
			t.Fatalf("air_at %q: %d %s", c.at, code, body)
		}
	}

	hcm, err := time.LoadLocation("Asia/Ho_Chi_Minh")
	if err != nil {
		t.Fatal(err)
	}
	// A local time without offset is read in the commune's zone (UTC+7).
	local := clock.now().Add(20 * time.Minute).In(hcm)
	code, body := ed.do("POST", "/api/v1/commune/drafts", map[string]any{"text": "x", "villages": []string{"thon-1"}, "air_at": local.Format("2006-01-02T15:04")})
	var loc Draft
	json.Unmarshal(body, &loc)
	if code != 201 || !loc.AirAt.Equal(local.Truncate(time.Minute)) {
		t.Fatalf("local air_at: %d %s", code, body)
	}

	draft := func(text string, airIn time.Duration) Draft {
		t.Helper()
		code, body := ed.do("POST", "/api/v1/commune/drafts", map[string]any{"text": text, "villages": []string{"thon-1"}, "expires_in": "2h", "air_at": clock.rfc(airIn)})
		var d Draft
		json.Unmarshal(body, &d)
		if code != 201 || d.AirAt.IsZero() || !strings.HasPrefix(d.AirLocal, clock.now().Add(airIn).In(hcm).Format("15:04 02/01/2006")) {
			t.Fatalf("create: %d %s", code, body)
		}
		code, body = ap.do("POST", "/api/v1/commune/drafts/"+d.ID+"/approve", nil)
		json.Unmarshal(body, &d)
		if code != 200 || d.Status != StatusScheduled {
			t.Fatalf("approve: %d %s", code, body)
		}
		return d
	}

	// 1. Scheduled, then the clock reaches air_at: sent.
	a := draft("Lịch tiêm phòng", 10*time.Minute)
	cancelled := draft("Họp thôn hoãn", 10*time.Minute)
	if code, body := ap.do("POST", "/api/v1/commune/drafts/"+cancelled.ID+"/cancel", map[string]string{"reason": "hoãn"}); code != 200 {
		t.Fatalf("cancel: %d %s", code, body)
	}
	if code, _ := ap.do("POST", "/api/v1/commune/drafts/"+cancelled.ID+"/cancel", nil); code != 409 {
		t.Fatalf("cancel twice: %d", code)
	}
	if code, _ := ed.do("POST", "/api/v1/commune/drafts/"+a.ID+"/cancel", nil); code != 403 {
		t.Fatalf("an editor cancelled: %d", code)
	}
	s.kickResend()
	notPublished(a.ID)
	clock.add(11 * time.Minute)
	s.kickResend()
	published(a.ID)
	_, body = ap.do("GET", "/api/v1/commune/drafts/"+a.ID, nil)
	var v DraftView
	json.Unmarshal(body, &v)
	if v.Status != StatusSent || v.DecidedBy != "dy" {
		t.Fatalf("after air time: %s", body)
	}

	// 2. Approved, the commune restarts, then air time: sent, signed once.
	b := draft("Thu gom rác", 30*time.Minute)
	srv.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	clock.add(31 * time.Minute)
	s, srv = start()
	defer s.Close()
	defer srv.Close()
	published(b.ID)
	admin = login(t, srv.URL, "admin", adminPass)
	_, body = admin.do("GET", "/api/v1/commune/audit", nil)
	var entries []AuditEntry
	json.Unmarshal(body, &entries)
	airs := map[string]int{}
	for _, e := range entries {
		if e.Action == "draft.air" {
			airs[e.Target]++
		}
	}
	if airs[a.ID] != 1 || airs[b.ID] != 1 || airs[cancelled.ID] != 0 {
		t.Fatalf("draft.air audits %v", airs)
	}
	if !strings.Contains(string(body), `"action":"draft.cancel"`) {
		t.Fatal("cancel not audited")
	}

	// 3. The cancelled one: never published, still cancelled.
	notPublished(cancelled.ID)
	ap = login(t, srv.URL, "dy", "approver-pass-1")
	_, body = ap.do("GET", "/api/v1/commune/drafts/"+cancelled.ID, nil)
	json.Unmarshal(body, &v)
	if v.Status != StatusCancelled || v.Envelope != nil {
		t.Fatalf("cancelled draft: %s", body)
	}
}
