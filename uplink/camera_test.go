package uplink

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// camRelay records what the camera service asked of the relay; the relay
// itself is tested in camera/ and end to end in commune/whep.
type camRelay struct {
	mu     sync.Mutex
	offers []string
	ice    []ICEServer
	hungup []string
}

func (r *camRelay) Offer(_ context.Context, cam, _, viewer string, ice []ICEServer) (OfferResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cam == "missing" {
		return OfferResult{}, &CameraError{Status: http.StatusNotFound, Msg: "camera missing: not found"}
	}
	r.offers = append(r.offers, cam+"|"+viewer)
	r.ice = ice
	return OfferResult{Session: "s-" + cam, Answer: "v=0 answer", Codec: "H264"}, nil
}

func (r *camRelay) Hangup(s string) error {
	r.mu.Lock()
	r.hungup = append(r.hungup, s)
	r.mu.Unlock()
	return nil
}

type pubRec struct {
	mu  sync.Mutex
	got []CameraAnswer
	top []string
}

func (p *pubRec) Publish(_ context.Context, topic string, raw []byte) error {
	var a CameraAnswer
	if err := json.Unmarshal(raw, &a); err != nil {
		return err
	}
	p.mu.Lock()
	p.got, p.top = append(p.got, a), append(p.top, topic)
	p.mu.Unlock()
	return nil
}

// TestCameraRequests: a commune-signed offer for a shared camera is
// answered on the village's own answer topic with the relay's answer and
// the commune's TURN servers passed through; forged, province-signed,
// replayed, expired, other-village and unshared requests are refused, and a
// forged or expired one gets no answer at all; a hangup ends only a session
// the commune opened.
func TestCameraRequests(t *testing.T) {
	db := newDB(t)
	clk := newClock()
	topics := testTopics(t)
	commune, other := seedKey(7), seedKey(9)
	relay, pub := &camRelay{}, &pubRec{}
	s := NewCameraService(CamerasConfig{Topics: topics, Keys: []ed25519.PublicKey{commune.Public().(ed25519.PublicKey)},
		Allowed: func(c string) bool { return c != "private" }, Now: clk.Now}, db, relay, pub, testLog)
	req := func(op, cam string) CameraRequest {
		now := clk.Now()
		return CameraRequest{ID: NewNonce()[:12], Nonce: NewNonce(), Sender: topics.Commune, Issued: now, Expires: now.Add(30 * time.Second),
			Province: topics.Province, Commune: topics.Commune, Village: topics.Site, Op: op, Camera: cam, Viewer: "police:an",
			Offer: "v=0 offer", Session: "s-" + cam,
			ICEServers: []ICEServer{{URLs: []string{"turn:10.0.0.1:3478?transport=udp"}, Username: "1:thon-3", Credential: "x"}}}
	}
	sign := func(r CameraRequest, k ed25519.PrivateKey) []byte {
		raw, err := SignCameraRequest(r, k)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	ctx := context.Background()

	good := req(CameraOffer, "cam-1")
	raw := sign(good, commune)
	a := s.Handle(ctx, raw)
	if a.Status != http.StatusCreated || a.Session != "s-cam-1" || a.Answer == "" || a.ID != good.ID {
		t.Fatalf("good offer: %+v", a)
	}
	if len(relay.offers) != 1 || relay.offers[0] != "cam-1|commune:"+topics.Commune+":police:an" || len(relay.ice) != 1 || relay.ice[0].Username != "1:thon-3" {
		t.Fatalf("relay saw %v %+v", relay.offers, relay.ice)
	}
	if pub.top[0] != topics.CameraAnswers() || !strings.HasSuffix(pub.top[0], "/thon-3/camera/ans") {
		t.Fatalf("answer topic %q", pub.top[0])
	}
	if a := s.Handle(ctx, raw); a.Status != http.StatusForbidden || !strings.Contains(a.Error, "replay") {
		t.Fatalf("replay: %+v", a)
	}

	answered := len(pub.got)
	forged := sign(req(CameraOffer, "cam-1"), other)
	if a := s.Handle(ctx, forged); a.Status != http.StatusForbidden || !strings.Contains(a.Error, "bad signature") {
		t.Fatalf("forged: %+v", a)
	}
	// Tampered bytes: the signature no longer covers them.
	var env Envelope
	_ = json.Unmarshal(raw, &env)
	env.Sig = env.Sig[:len(env.Sig)-4] + "AAA="
	tampered, _ := json.Marshal(env)
	if a := s.Handle(ctx, tampered); a.Status != http.StatusForbidden {
		t.Fatalf("tampered: %+v", a)
	}
	elsewhere := req(CameraOffer, "cam-1")
	elsewhere.Village = "thon-9"
	if a := s.Handle(ctx, sign(elsewhere, commune)); a.Status != http.StatusForbidden || !strings.Contains(a.Error, "not for this village") {
		t.Fatalf("other village: %+v", a)
	}
	stale := sign(req(CameraOffer, "cam-1"), commune)
	clk.Advance(time.Minute)
	if a := s.Handle(ctx, stale); a.Status != http.StatusForbidden || !strings.Contains(a.Error, "expired") {
		t.Fatalf("expired: %+v", a)
	}
	long := req(CameraOffer, "cam-1")
	long.Expires = long.Issued.Add(time.Hour)
	if _, err := SignCameraRequest(long, commune); err == nil {
		t.Fatal("a camera request living an hour was signed")
	}
	if len(pub.got) != answered {
		t.Fatalf("forged, tampered, foreign or expired requests were answered: %+v", pub.got[answered:])
	}
	if a := s.Handle(ctx, sign(req(CameraOffer, "private"), commune)); a.Status != http.StatusForbidden || !strings.Contains(a.Error, "not shared") {
		t.Fatalf("unshared camera: %+v", a)
	}
	if a := s.Handle(ctx, sign(req(CameraOffer, "missing"), commune)); a.Status != http.StatusNotFound {
		t.Fatalf("missing camera: %+v", a)
	}
	if len(relay.offers) != 1 {
		t.Fatalf("refused requests reached the relay: %v", relay.offers)
	}

	// Hangup: a session the commune did not open is not ended.
	if a := s.Handle(ctx, sign(req(CameraHangup, "cam-2"), commune)); a.Status != http.StatusNotFound {
		t.Fatalf("hangup of a LAN session: %+v", a)
	}
	if a := s.Handle(ctx, sign(req(CameraHangup, "cam-1"), commune)); a.Status != http.StatusNoContent {
		t.Fatalf("hangup: %+v", a)
	}
	if len(relay.hungup) != 1 || relay.hungup[0] != "s-cam-1" {
		t.Fatalf("hung up %v", relay.hungup)
	}
	if got := s.Seen(); got["answered"] != 1 || got["refused:replay"] != 1 || got["refused:bad_signature"] != 2 || got["hangup"] != 1 {
		t.Fatalf("seen %v", got)
	}
}
