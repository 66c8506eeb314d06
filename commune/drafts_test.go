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
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/loalang/loalang/uplink"
)

// TestEmergencyBypassAndRejection: an emergency with bypass is signed and
// published at once without an approver, audited as
// draft.bypass_approval, and the village's command topic receives an
// envelope that verifies with the commune's public key; a routine draft
// may not bypass; a rejected draft is never published.
func TestEmergencyBypassAndRejection(t *testing.T) {
	broker := startMosquitto(t)
	cfg := testConfig(t, "tcp://"+broker)
	cfg.Commune.ResendEvery = time.Second
	s, err := New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	waitFor(t, 20*time.Second, "commune connected", func() bool { return s.mqtt.connected.Load() })

	// The village's command topic, read by a plain subscriber.
	got := make(chan []byte, 16)
	tops, _ := uplink.NewTopics("hanoi", "xa-1", "thon-1")
	ct := tops.CommandTopics()
	sub := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + broker).SetClientID("listener"))
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer sub.Disconnect(100)
	if tok := sub.Subscribe(ct[len(ct)-1], 1, func(_ mqtt.Client, m mqtt.Message) { got <- m.Payload() }); !tok.WaitTimeout(10 * time.Second) {
		t.Fatal("subscribe")
	}

	raw, _ := os.ReadFile(filepath.Join(cfg.DataDir, AdminPassFile))
	admin := login(t, srv.URL, "admin", strings.TrimSpace(string(raw)))
	for _, u := range []map[string]any{{"username": "bt", "password": "editor-pass-1", "role": "editor"}, {"username": "dy", "password": "approver-pass-1", "role": "approver"}} {
		admin.do("POST", "/api/v1/commune/users", u)
	}
	ed := login(t, srv.URL, "bt", "editor-pass-1")
	ap := login(t, srv.URL, "dy", "approver-pass-1")

	if code, _ := ed.do("POST", "/api/v1/commune/drafts", map[string]any{"text": "x", "villages": []string{"thon-1"}, "urgency": "routine", "bypass": true}); code != 400 {
		t.Fatalf("a routine draft bypassed approval: %d", code)
	}
	code, body := ed.do("POST", "/api/v1/commune/drafts", map[string]any{"text": "Tin bão khẩn cấp", "villages": []string{"thon-1"}, "urgency": "emergency", "bypass": true, "expires_in": "30m"})
	var d Draft
	json.Unmarshal(body, &d)
	if code != 201 || d.Status != StatusSent || !d.Bypass {
		t.Fatalf("bypass: %d %s", code, body)
	}
	var env []byte
	select {
	case env = <-got:
	case <-time.After(20 * time.Second):
		t.Fatal("the emergency was not published")
	}
	keys, _ := uplink.ParseKeys(nil, []string{uplink.PublicKeyString(s.key.Public().(ed25519.PublicKey))})
	cmd, err := uplink.Open(env, keys)
	if err != nil || cmd.ID != d.ID || cmd.Urgency != uplink.UrgencyEmergency || cmd.Text != "Tin bão khẩn cấp" || cmd.Target.Commune != "xa-1" {
		t.Fatalf("published command %+v: %v", cmd, err)
	}
	if err := cmd.Check(time.Now(), tops); err != nil {
		t.Fatalf("the village would refuse it: %v", err)
	}
	_, body = admin.do("GET", "/api/v1/commune/audit", nil)
	if !strings.Contains(string(body), `"action":"draft.bypass_approval"`) {
		t.Fatalf("bypass not audited: %s", body)
	}

	// A rejected draft: nothing published for it, even after resends.
	_, body = ed.do("POST", "/api/v1/commune/drafts", map[string]any{"text": "Không phát", "villages": []string{"thon-1"}, "urgency": "routine"})
	var r Draft
	json.Unmarshal(body, &r)
	if code, body := ap.do("POST", "/api/v1/commune/drafts/"+r.ID+"/reject", map[string]string{"reason": "trùng"}); code != 200 {
		t.Fatalf("reject: %d %s", code, body)
	}
	deadline := time.After(3 * time.Second) // three resend periods
	for {
		select {
		case env := <-got:
			c, _ := uplink.Open(env, keys)
			if c.ID == r.ID {
				t.Fatal("the rejected draft was published")
			}
			continue
		case <-deadline:
		}
		break
	}
}

// TestPublishSubscribeForMountedPackages: the hook's MQTT methods work on
// the server's own connection: a route added with Subscribe receives a
// message published by another client, and Publish reaches a subscriber.
func TestPublishSubscribeForMountedPackages(t *testing.T) {
	broker := startMosquitto(t)
	s, err := New(context.Background(), testConfig(t, "tcp://"+broker), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := make(chan string, 4)
	if err := s.Subscribe("loalang/v1/hanoi/xa-1/+/whep/resp", 1, func(topic string, p []byte) { got <- topic + " " + string(p) }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "commune connected", s.Connected)
	other := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + broker).SetClientID("other"))
	if tok := other.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer other.Disconnect(100)
	heard := make(chan string, 4)
	if tok := other.Subscribe("loalang/v1/hanoi/xa-1/thon-1/whep/req", 1, func(_ mqtt.Client, m mqtt.Message) { heard <- string(m.Payload()) }); !tok.WaitTimeout(10 * time.Second) {
		t.Fatal("subscribe")
	}
	if err := s.Publish(context.Background(), "loalang/v1/hanoi/xa-1/thon-1/whep/req", []byte("offer")); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-heard:
		if p != "offer" {
			t.Fatalf("heard %q", p)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Publish did not arrive")
	}
	other.Publish("loalang/v1/hanoi/xa-1/thon-1/whep/resp", 1, false, []byte("answer")).WaitTimeout(10 * time.Second)
	select {
	case m := <-got:
		if m != "loalang/v1/hanoi/xa-1/thon-1/whep/resp answer" {
			t.Fatalf("got %q", m)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Subscribe's route got nothing")
	}
}
