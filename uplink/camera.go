package uplink

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/loalang/loalang/store"
)

// The police camera path across carrier NAT (docs/commune-cameras.md): the
// commune forwards a police browser's WHEP offer (RFC 9725 §4.2) to the
// village over the uplink broker as a signed request; the village answers
// on a topic under its own site prefix, so the broker's ACL still binds a
// village to its topics. Media then flows through the commune's TURN server
// (RFC 8656), which both sides reach by dialling out.

// CameraRequests is the topic the commune publishes camera requests for one
// village to: loalang/v1/<province>/<commune>/<site>/camera/req.
func (t Topics) CameraRequests() string {
	return t.base() + "/" + t.Commune + "/" + t.Site + "/camera/req"
}

// CameraAnswers is where the village publishes its answers:
// loalang/v1/<province>/<commune>/<site>/camera/ans.
func (t Topics) CameraAnswers() string {
	return t.base() + "/" + t.Commune + "/" + t.Site + "/camera/ans"
}

// CameraAnswersFilter is the commune's subscription to every village's
// answers: loalang/v1/<province>/<commune>/+/camera/ans.
func CameraAnswersFilter(province, commune string) string {
	return "loalang/" + Version + "/" + province + "/" + commune + "/+/camera/ans"
}

// Camera request operations.
const (
	CameraOffer  = "offer"
	CameraHangup = "hangup"
)

// Limits on camera requests: they are interactive, so they live seconds,
// not hours, and a stale one queued by the broker while the village was
// offline is refused as expired.
const (
	CameraMaxLifetime = 2 * time.Minute
	maxCameraSDP      = 48 << 10
)

// cameraContext separates camera request signatures from broadcast commands
// signed with the same key.
const cameraContext = "loalang-uplink-camera-v1\n"

// ICEServer is a STUN or TURN server for one session (RFC 7064, RFC 7065),
// with time-limited credentials minted by the commune.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// CameraRequest is a WHEP offer or hangup forwarded by the commune. It
// travels as the exact bytes of its JSON inside a signed Envelope, like a
// Command (docs/protocol.md, "Camera requests").
type CameraRequest struct {
	V int `json:"v"`
	// ID is the correlation id: the answer carries it back.
	ID    string `json:"id"`
	Nonce string `json:"nonce"`
	// Sender is the commune's id; only a commune key may sign.
	Sender  string    `json:"sender"`
	Issued  time.Time `json:"issued"`
	Expires time.Time `json:"expires"`
	// Province, Commune and Village name the one village it is for.
	Province string `json:"province"`
	Commune  string `json:"commune"`
	Village  string `json:"village"`
	Op       string `json:"op"`
	Camera   string `json:"camera"`
	// Viewer names the commune's user, for the village's audit trail.
	Viewer string `json:"viewer"`
	// Offer is the browser's SDP offer (op offer).
	Offer string `json:"offer,omitempty"`
	// Session is the village's session id (op hangup).
	Session string `json:"session,omitempty"`
	// ICEServers are the commune's TURN server(s) with credentials minted
	// for this village and request.
	ICEServers []ICEServer `json:"ice_servers,omitempty"`
}

// CameraAnswer is the village's reply. Status uses HTTP semantics (201 for
// an answered offer, 204 for a hangup, 4xx/5xx with Error otherwise), so the
// commune passes it to the browser unchanged.
type CameraAnswer struct {
	ID      string `json:"id"`
	Status  int    `json:"status"`
	Error   string `json:"error,omitempty"`
	Session string `json:"session,omitempty"`
	Answer  string `json:"answer,omitempty"`
	Codec   string `json:"codec,omitempty"`
}

func (r CameraRequest) check() error {
	switch {
	case r.V != 1:
		return fmt.Errorf("%w: version %d", ErrMalformed, r.V)
	case r.ID == "" || len(r.ID) > 128:
		return fmt.Errorf("%w: id", ErrMalformed)
	case len(r.Nonce) != 32:
		return fmt.Errorf("%w: nonce must be 32 hex digits", ErrMalformed)
	case r.Issued.IsZero() || r.Expires.IsZero() || !r.Expires.After(r.Issued):
		return fmt.Errorf("%w: issued and expires", ErrMalformed)
	case r.Expires.Sub(r.Issued) > CameraMaxLifetime:
		return fmt.Errorf("%w: lifetime %s exceeds %s", ErrMalformed, r.Expires.Sub(r.Issued), CameraMaxLifetime)
	case r.Op != CameraOffer && r.Op != CameraHangup:
		return fmt.Errorf("%w: op %q", ErrMalformed, r.Op)
	case r.Camera == "" || len(r.Camera) > 128:
		return fmt.Errorf("%w: camera", ErrMalformed)
	case r.Op == CameraOffer && (r.Offer == "" || len(r.Offer) > maxCameraSDP):
		return fmt.Errorf("%w: offer", ErrMalformed)
	case r.Op == CameraHangup && r.Session == "":
		return fmt.Errorf("%w: session", ErrMalformed)
	case r.Province == "" || r.Commune == "" || r.Village == "":
		return fmt.Errorf("%w: province, commune and village", ErrMalformed)
	}
	if _, err := hex.DecodeString(r.Nonce); err != nil {
		return fmt.Errorf("%w: nonce must be hex", ErrMalformed)
	}
	return nil
}

// SignCameraRequest encodes r and signs it with the commune's key
// (Ed25519, RFC 8032), over the context "loalang-uplink-camera-v1\n"
// followed by the request's bytes.
func SignCameraRequest(r CameraRequest, key ed25519.PrivateKey) ([]byte, error) {
	if r.V == 0 {
		r.V = 1
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("sign camera request: %w", err)
	}
	sig := ed25519.Sign(key, append([]byte(cameraContext), raw...))
	return json.Marshal(Envelope{Cmd: base64.StdEncoding.EncodeToString(raw), Sig: base64.StdEncoding.EncodeToString(sig)})
}

// OpenCameraRequest verifies an envelope with the commune keys and checks
// that the request is fresh and for this village (t). The correlation id
// is returned with a refusal when the bytes could be parsed.
func OpenCameraRequest(raw []byte, keys []ed25519.PublicKey, now time.Time, t Topics) (CameraRequest, error) {
	if len(raw) > MaxEnvelope {
		return CameraRequest{}, fmt.Errorf("%w: envelope of %d bytes", ErrMalformed, len(raw))
	}
	var env Envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return CameraRequest{}, fmt.Errorf("%w: envelope: %v", ErrMalformed, err)
	}
	reqRaw, err := base64.StdEncoding.DecodeString(env.Cmd)
	if err != nil {
		return CameraRequest{}, fmt.Errorf("%w: cmd is not base64", ErrMalformed)
	}
	sig, err := base64.StdEncoding.DecodeString(env.Sig)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return CameraRequest{}, fmt.Errorf("%w: sig is not a base64 Ed25519 signature", ErrBadSignature)
	}
	var r CameraRequest
	if err := json.Unmarshal(reqRaw, &r); err != nil {
		return CameraRequest{}, fmt.Errorf("%w: request: %v", ErrMalformed, err)
	}
	input := append([]byte(cameraContext), reqRaw...)
	if !slices.ContainsFunc(keys, func(k ed25519.PublicKey) bool { return ed25519.Verify(k, input, sig) }) {
		return r, fmt.Errorf("%w: no trusted commune key signed camera request %q", ErrBadSignature, r.ID)
	}
	if err := r.check(); err != nil {
		return r, err
	}
	switch {
	case !now.Before(r.Expires):
		return r, fmt.Errorf("%w: expired at %s", ErrExpired, r.Expires.UTC().Format(time.RFC3339))
	case r.Issued.After(now.Add(MaxSkew)):
		return r, fmt.Errorf("%w: issued %s is in the future", ErrExpired, r.Issued.UTC().Format(time.RFC3339))
	case r.Province != t.Province || r.Commune != t.Commune || r.Sender != t.Commune || r.Village != t.Site:
		return r, fmt.Errorf("%w: %s/%s/%s from commune %q", ErrNotForUs, r.Province, r.Commune, r.Village, r.Sender)
	}
	return r, nil
}

// CameraError is a refusal with its HTTP status, returned by a CameraRelay.
type CameraError struct {
	Status int
	Msg    string
}

func (e *CameraError) Error() string { return e.Msg }

// OfferResult is an answered WHEP offer.
type OfferResult struct {
	Session, Answer, Codec string
}

// CameraRelay is the village's camera relay as the camera service uses it.
// Errors should be *CameraError to carry a status; others answer 500.
type CameraRelay interface {
	Offer(ctx context.Context, camera, offerSDP, viewer string, ice []ICEServer) (OfferResult, error)
	Hangup(session string) error
}

// Publisher publishes an answer upstream (Client.Publish).
type Publisher interface {
	Publish(ctx context.Context, topic string, payload []byte) error
}

// CamerasConfig configures the village's camera service.
type CamerasConfig struct {
	Topics Topics
	// Keys are the commune's public keys; a province key cannot ask for a
	// camera.
	Keys []ed25519.PublicKey
	// Allowed says whether the commune may view a camera
	// (uplink.commune_cameras).
	Allowed func(camera string) bool
	// MaxConcurrent bounds requests handled at once; 0 means 8.
	MaxConcurrent int
	Now           func() time.Time
}

// CameraService answers the commune's camera requests through the
// village's camera relay.
type CameraService struct {
	cfg   CamerasConfig
	db    *store.DB
	relay CameraRelay
	pub   Publisher
	log   *slog.Logger
	sem   chan struct{}
	wg    sync.WaitGroup

	mu       sync.Mutex
	sessions map[string]string // session id -> camera, for sessions opened through the uplink
	seen     map[string]int
}

// NewCameraService returns the camera service; Handle serves one request.
func NewCameraService(cfg CamerasConfig, db *store.DB, relay CameraRelay, pub Publisher, log *slog.Logger) *CameraService {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 8
	}
	if cfg.Allowed == nil {
		cfg.Allowed = func(string) bool { return false }
	}
	return &CameraService{cfg: cfg, db: db, relay: relay, pub: pub, log: log.With("component", "uplink-cameras"),
		sem: make(chan struct{}, cfg.MaxConcurrent), sessions: map[string]string{}, seen: map[string]int{}}
}

// Receive handles one request without blocking the MQTT client's
// delivery goroutine (paho: never block in a handler): up to
// MaxConcurrent run at once, more are answered 503 at once.
func (s *CameraService) Receive(ctx context.Context, raw []byte) {
	raw = append([]byte(nil), raw...)
	select {
	case s.sem <- struct{}{}:
	default:
		req, err := OpenCameraRequest(raw, s.cfg.Keys, s.cfg.Now(), s.cfg.Topics)
		if err == nil {
			s.answer(ctx, CameraAnswer{ID: req.ID, Status: http.StatusServiceUnavailable, Error: "the village is busy with other camera requests"})
		}
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.sem }()
		s.Handle(ctx, raw)
	}()
}

// Wait waits for the requests being handled.
func (s *CameraService) Wait() { s.wg.Wait() }

// Handle verifies one request, serves it and publishes the answer. A
// request that fails verification is answered only when it is authentic
// (expired, replayed, not permitted): a forged one gets no answer, so a
// forger learns nothing about the village's cameras.
func (s *CameraService) Handle(ctx context.Context, raw []byte) CameraAnswer {
	req, err := OpenCameraRequest(raw, s.cfg.Keys, s.cfg.Now(), s.cfg.Topics)
	if err == nil {
		err = s.claim(req)
	}
	if err != nil {
		s.count("refused:" + Code(err))
		s.log.Warn("camera request refused", "request", req.ID, "camera", req.Camera, "err", err)
		if errors.Is(err, ErrBadSignature) || errors.Is(err, ErrMalformed) || errors.Is(err, ErrNotForUs) || req.ID == "" {
			return CameraAnswer{ID: req.ID, Status: http.StatusForbidden, Error: err.Error()}
		}
		a := CameraAnswer{ID: req.ID, Status: http.StatusForbidden, Error: err.Error()}
		if errors.Is(err, ErrExpired) {
			// Nobody waits for an expired request any more; no answer.
			return a
		}
		s.answer(ctx, a)
		return a
	}
	var a CameraAnswer
	switch req.Op {
	case CameraOffer:
		a = s.offer(ctx, req)
	case CameraHangup:
		a = s.hangup(req)
	}
	a.ID = req.ID
	s.answer(ctx, a)
	return a
}

func (s *CameraService) offer(ctx context.Context, req CameraRequest) CameraAnswer {
	if !s.cfg.Allowed(req.Camera) {
		s.count("refused:not_permitted")
		s.log.Warn("camera request refused: camera not shared with the commune", "camera", req.Camera, "viewer", req.Viewer)
		return CameraAnswer{Status: http.StatusForbidden, Error: fmt.Sprintf("camera %s is not shared with the commune (uplink.commune_cameras)", req.Camera)}
	}
	ctx, cancel := context.WithDeadline(ctx, req.Expires)
	defer cancel()
	started := time.Now()
	res, err := s.relay.Offer(ctx, req.Camera, req.Offer, "commune:"+req.Sender+":"+req.Viewer, req.ICEServers)
	if err != nil {
		st := http.StatusInternalServerError
		var ce *CameraError
		if errors.As(err, &ce) {
			st = ce.Status
		}
		s.count(fmt.Sprintf("failed:%d", st))
		s.log.Warn("camera offer failed", "camera", req.Camera, "viewer", req.Viewer, "status", st, "err", err)
		return CameraAnswer{Status: st, Error: err.Error()}
	}
	s.mu.Lock()
	s.sessions[res.Session] = req.Camera
	s.mu.Unlock()
	s.count("answered")
	s.log.Info("camera offer answered for the commune", "camera", req.Camera, "viewer", req.Viewer, "codec", res.Codec,
		"took", time.Since(started).Round(time.Millisecond))
	return CameraAnswer{Status: http.StatusCreated, Session: res.Session, Answer: res.Answer, Codec: res.Codec}
}

func (s *CameraService) hangup(req CameraRequest) CameraAnswer {
	s.mu.Lock()
	cam, ok := s.sessions[req.Session]
	if ok && cam == req.Camera {
		delete(s.sessions, req.Session)
	}
	s.mu.Unlock()
	if !ok || cam != req.Camera {
		// Only sessions the commune opened, and of the named camera: the
		// commune cannot end a viewer of the village's own LAN.
		return CameraAnswer{Status: http.StatusNotFound, Error: "no such commune session"}
	}
	if err := s.relay.Hangup(req.Session); err != nil {
		s.log.Info("camera hangup", "session", req.Session, "err", err)
	}
	s.count("hangup")
	return CameraAnswer{Status: http.StatusNoContent}
}

// claim records the nonce until the request's expiry in the store's nonce
// bucket, under "camera/<sender>/<nonce>", refusing a replay (also after a
// restart).
func (s *CameraService) claim(r CameraRequest) error {
	var fresh bool
	err := s.db.Update(func(tx *store.Tx) error {
		var err error
		fresh, err = tx.ClaimNonce("camera/"+r.Sender+"/"+r.Nonce, r.Expires)
		return err
	})
	if err != nil {
		return fmt.Errorf("nonce store: %w", err)
	}
	if !fresh {
		return fmt.Errorf("%w: nonce %s", ErrReplay, r.Nonce)
	}
	return nil
}

func (s *CameraService) answer(ctx context.Context, a CameraAnswer) {
	raw, err := json.Marshal(a)
	if err != nil {
		return
	}
	if err := s.pub.Publish(ctx, s.cfg.Topics.CameraAnswers(), raw); err != nil {
		s.log.Warn("camera answer not published", "request", a.ID, "err", err)
	}
}

func (s *CameraService) count(k string) {
	s.mu.Lock()
	s.seen[k]++
	s.mu.Unlock()
}

// Seen counts requests by outcome ("answered", "hangup", "refused:<reason>",
// "failed:<status>").
func (s *CameraService) Seen() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.seen))
	for k, v := range s.seen {
		out[k] = v
	}
	return out
}
