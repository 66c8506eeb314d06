// Package whep is the commune's side of the police camera path across
// carrier NAT (docs/commune-cameras.md). A police browser posts its WHEP
// offer (RFC 9725 §4.2) to the commune; the commune signs it with its
// Ed25519 key and forwards it to the village's loalangd over the uplink
// broker (uplink.CameraRequest, with a correlation id, a nonce and a
// short expiry), and passes the village's answer back. Media flows through
// the commune's TURN server (coturn, RFC 8656), which the browser and the
// village both reach by dialling out, with credentials the commune mints
// per viewer and per village request (TURNCredentials).
package whep

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/uplink"
)

// Authorizer decides whether the request's user may view a village's
// camera. It returns the user's name for the village's audit trail, or an
// HTTP status (401 not signed in, 403 not permitted) with status != 0.
// Empty village and camera ask whether the user may use the camera grid
// at all (the police role).
type Authorizer func(r *http.Request, village, camera string) (user string, status int)

// Config configures the handler.
type Config struct {
	// Province and Commune are this commune's topic levels.
	Province, Commune string
	// Key is the commune's Ed25519 private key, whose public key is in
	// every village's uplink.commune_keys.
	Key ed25519.PrivateKey
	// BrokerURL is the commune's MQTT broker (tcp:// or ssl://), with
	// Username, Password, ClientID and TLS for it.
	BrokerURL, Username, Password, ClientID string
	TLS                                     *tls.Config
	// TURNURLs are the TURN server's turn: URLs (RFC 7065), as reachable
	// from both the villages and the police, and TURNSecret its
	// static-auth-secret. TURNTTL bounds a credential's life and so a
	// viewing session's (the allocation is refreshed with it); 0 means 4h.
	TURNURLs   []string
	TURNSecret string
	TURNTTL    time.Duration
	// Timeout bounds the wait for a village's answer; 0 means 15s.
	Timeout time.Duration
	// RequestTTL is a request's lifetime (its expiry); 0 means 30s.
	RequestTTL time.Duration
	// RelayOnly makes the browser use only TURN relay candidates
	// (iceTransportPolicy "relay"), so no address of the police LAN is
	// offered to the village.
	RelayOnly bool
	Authorize Authorizer
	// Cameras lists the cameras user may see, by village, for the grid
	// page; nil shows none.
	Cameras func(r *http.Request, user string) []VillageCameras
	Log     *slog.Logger
	Now     func() time.Time
}

// Handler serves the commune's camera routes and owns its MQTT connection.
type Handler struct {
	cfg Config
	log *slog.Logger
	pc  mqtt.Client
	mux *http.ServeMux

	connected atomic.Bool

	mu       sync.Mutex
	pending  map[string]pending
	sessions map[string]session
	presence map[string]presenceState
}

type pending struct {
	village string
	ch      chan uplink.CameraAnswer
}

type session struct {
	user, village, camera, remote string
	started                       time.Time
}

type presenceState struct {
	online bool
	at     time.Time
}

// Routes the handler serves, for mounting on another mux.
var Routes = []string{
	"POST /api/v1/commune/villages/{village}/cameras/{camera}/whep",
	"GET /api/v1/commune/villages/{village}/cameras/{camera}/ice-servers",
	"DELETE /api/v1/commune/whep/{session}",
	"GET /api/v1/commune/villages/presence",
	"GET /api/v1/commune/cameras",
	"GET /commune/cameras",
}

// New checks the configuration and connects to the broker in the
// background (paho reconnects by itself); Close disconnects.
func New(cfg Config) (*Handler, error) {
	switch {
	case cfg.Key == nil:
		return nil, errors.New("commune cameras: no signing key")
	case cfg.Authorize == nil:
		return nil, errors.New("commune cameras: no authorizer")
	case len(cfg.TURNURLs) == 0 || cfg.TURNSecret == "":
		return nil, errors.New("commune cameras: TURN urls and secret are required")
	case cfg.BrokerURL == "":
		return nil, errors.New("commune cameras: no broker url")
	}
	for name, v := range map[string]string{"province": cfg.Province, "commune": cfg.Commune} {
		if err := wire.ValidLevel(v); err != nil {
			return nil, fmt.Errorf("commune cameras %s: %w", name, err)
		}
	}
	if cfg.TURNTTL <= 0 {
		cfg.TURNTTL = 4 * time.Hour
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	if cfg.RequestTTL <= 0 {
		cfg.RequestTTL = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "commune-" + cfg.Commune + "-cameras-" + randHex(4)
	}
	h := &Handler{cfg: cfg, log: cfg.Log.With("component", "commune-cameras"), pending: map[string]pending{},
		sessions: map[string]session{}, presence: map[string]presenceState{}}
	h.mux = http.NewServeMux()
	h.mux.HandleFunc(Routes[0], h.handleOffer)
	h.mux.HandleFunc(Routes[1], h.handleICEServers)
	h.mux.HandleFunc(Routes[2], h.handleDelete)
	h.mux.HandleFunc(Routes[3], h.handlePresence)
	h.mux.HandleFunc(Routes[4], h.handleCameras)
	h.mux.HandleFunc(Routes[5], h.handleGrid)

	answers := uplink.CameraAnswersFilter(cfg.Province, cfg.Commune)
	presence := "loalang/" + uplink.Version + "/" + cfg.Province + "/" + cfg.Commune + "/+/presence"
	opts := mqtt.NewClientOptions().AddBroker(cfg.BrokerURL).SetClientID(cfg.ClientID).
		SetUsername(cfg.Username).SetPassword(cfg.Password).SetProtocolVersion(4).
		SetCleanSession(true).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).SetMaxReconnectInterval(10 * time.Second).
		SetKeepAlive(30 * time.Second).SetWriteTimeout(10 * time.Second).SetOrderMatters(false)
	if cfg.TLS != nil {
		opts.SetTLSConfig(cfg.TLS)
	}
	opts.SetOnConnectHandler(func(c mqtt.Client) {
		// Subscribed on every connect: a clean session drops them.
		c.SubscribeMultiple(map[string]byte{answers: 1, presence: 1}, func(_ mqtt.Client, m mqtt.Message) { h.onMessage(m) })
		h.connected.Store(true)
		h.log.Info("commune cameras connected to the broker", "broker", cfg.BrokerURL)
	})
	opts.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		h.connected.Store(false)
		h.log.Warn("commune cameras lost the broker", "err", err)
	})
	h.pc = mqtt.NewClient(opts)
	h.pc.Connect()
	return h, nil
}

// Close disconnects from the broker.
func (h *Handler) Close() { h.pc.Disconnect(250) }

// Connected reports whether the broker connection is up and subscribed.
func (h *Handler) Connected() bool { return h.connected.Load() }

// ServeHTTP serves Routes.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// onMessage takes a village's answer or presence. An answer is accepted
// only from the village the request went to: the topic's site level, which
// the broker's ACL binds to that village's credentials.
func (h *Handler) onMessage(m mqtt.Message) {
	levels := strings.Split(m.Topic(), "/")
	if len(levels) < 6 {
		return
	}
	site := levels[4]
	if levels[len(levels)-1] == "presence" {
		h.mu.Lock()
		h.presence[site] = presenceState{online: string(m.Payload()) == "online", at: h.cfg.Now()}
		h.mu.Unlock()
		return
	}
	var a uplink.CameraAnswer
	if err := json.Unmarshal(m.Payload(), &a); err != nil {
		h.log.Warn("bad camera answer", "village", site, "err", err)
		return
	}
	h.mu.Lock()
	p, ok := h.pending[a.ID]
	if ok && p.village == site {
		delete(h.pending, a.ID)
	}
	h.mu.Unlock()
	switch {
	case !ok:
		return // a late answer: its request timed out
	case p.village != site:
		h.log.Warn("camera answer from the wrong village ignored", "request", a.ID, "from", site, "want", p.village)
		return
	}
	p.ch <- a
}

// iceServers mints the TURN credential for one TURN user.
func (h *Handler) iceServers(user string) []uplink.ICEServer {
	u, p := TURNCredentials(h.cfg.TURNSecret, user, h.cfg.TURNTTL, h.cfg.Now())
	return []uplink.ICEServer{{URLs: h.cfg.TURNURLs, Username: u, Credential: p}}
}

// ask publishes a signed request to a village and waits for its answer.
func (h *Handler) ask(ctx context.Context, req uplink.CameraRequest) (uplink.CameraAnswer, int, error) {
	if !h.Connected() {
		return uplink.CameraAnswer{}, http.StatusServiceUnavailable, errors.New("the commune's broker is not connected; try again shortly")
	}
	h.mu.Lock()
	ps, known := h.presence[req.Village]
	h.mu.Unlock()
	if known && !ps.online {
		return uplink.CameraAnswer{}, http.StatusServiceUnavailable,
			fmt.Errorf("village %s is offline (its uplink dropped at %s)", req.Village, ps.at.UTC().Format(time.RFC3339))
	}
	now := h.cfg.Now()
	req.V, req.ID, req.Nonce, req.Sender = 1, randHex(12), uplink.NewNonce(), h.cfg.Commune
	req.Issued, req.Expires = now, now.Add(h.cfg.RequestTTL)
	req.Province, req.Commune = h.cfg.Province, h.cfg.Commune
	raw, err := uplink.SignCameraRequest(req, h.cfg.Key)
	if err != nil {
		return uplink.CameraAnswer{}, http.StatusBadRequest, err
	}
	topics, err := uplink.NewTopics(h.cfg.Province, h.cfg.Commune, req.Village)
	if err != nil {
		return uplink.CameraAnswer{}, http.StatusNotFound, fmt.Errorf("village %q: %w", req.Village, err)
	}
	ch := make(chan uplink.CameraAnswer, 1)
	h.mu.Lock()
	h.pending[req.ID] = pending{village: req.Village, ch: ch}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.pending, req.ID)
		h.mu.Unlock()
	}()
	tok := h.pc.Publish(topics.CameraRequests(), 1, false, raw)
	timer := time.NewTimer(h.cfg.Timeout)
	defer timer.Stop()
	select {
	case <-tok.Done():
		if tok.Error() != nil {
			return uplink.CameraAnswer{}, http.StatusServiceUnavailable, fmt.Errorf("publish to the broker: %w", tok.Error())
		}
	case <-timer.C:
		return uplink.CameraAnswer{}, http.StatusServiceUnavailable, fmt.Errorf("the commune's broker did not take the request within %s", h.cfg.Timeout)
	case <-ctx.Done():
		return uplink.CameraAnswer{}, http.StatusServiceUnavailable, ctx.Err()
	}
	select {
	case a := <-ch:
		return a, a.Status, nil
	case <-timer.C:
		return uplink.CameraAnswer{}, http.StatusGatewayTimeout,
			fmt.Errorf("village %s did not answer within %s: it may be offline or its line down", req.Village, h.cfg.Timeout)
	case <-ctx.Done():
		return uplink.CameraAnswer{}, http.StatusServiceUnavailable, ctx.Err()
	}
}

func httpError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// handleICEServers gives the police browser its TURN server and a
// credential minted for it, before it makes its offer (the browser needs
// them to gather relay candidates, RFC 8445 §5.1.1.2).
func (h *Handler) handleICEServers(w http.ResponseWriter, r *http.Request) {
	village, cam := r.PathValue("village"), r.PathValue("camera")
	user, st := h.cfg.Authorize(r, village, cam)
	if st != 0 {
		httpError(w, st, http.StatusText(st))
		return
	}
	policy := "all"
	if h.cfg.RelayOnly {
		policy = "relay"
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{"ice_servers": h.iceServers("police:" + user), "ice_transport_policy": policy})
}

// handleOffer forwards a WHEP offer to the village (RFC 9725 §4.2): 201
// with the answer and a Location for DELETE; the village's refusal with
// its status; 503 when the commune's broker or the village is known to be
// offline; 504 when the village did not answer in time.
func (h *Handler) handleOffer(w http.ResponseWriter, r *http.Request) {
	village, cam := r.PathValue("village"), r.PathValue("camera")
	user, st := h.cfg.Authorize(r, village, cam)
	if st != 0 {
		httpError(w, st, http.StatusText(st))
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/sdp") {
		httpError(w, http.StatusUnsupportedMediaType, "the offer must be application/sdp (RFC 9725 §4.2)")
		return
	}
	offer, err := io.ReadAll(io.LimitReader(r.Body, 48<<10+1))
	if err != nil || len(offer) == 0 || len(offer) > 48<<10 {
		httpError(w, http.StatusBadRequest, "the offer is empty or larger than 48 KiB")
		return
	}
	started := time.Now()
	a, st, err := h.ask(r.Context(), uplink.CameraRequest{Op: uplink.CameraOffer, Village: village, Camera: cam, Viewer: user,
		Offer: string(offer), ICEServers: h.iceServers("village:" + village)})
	if err != nil {
		h.log.Warn("camera offer not answered", "village", village, "camera", cam, "user", user, "status", st, "err", err)
		httpError(w, st, err.Error())
		return
	}
	if a.Status != http.StatusCreated {
		h.log.Warn("village refused a camera offer", "village", village, "camera", cam, "user", user, "status", a.Status, "err", a.Error)
		if a.Status < 400 || a.Status > 599 {
			a.Status = http.StatusBadGateway
		}
		httpError(w, a.Status, fmt.Sprintf("village %s: %s", village, a.Error))
		return
	}
	id := randHex(16)
	h.mu.Lock()
	for k, old := range h.sessions {
		// A browser that vanished without DELETE: its TURN credential has
		// expired, so the session is over.
		if h.cfg.Now().Sub(old.started) > h.cfg.TURNTTL {
			delete(h.sessions, k)
		}
	}
	h.sessions[id] = session{user: user, village: village, camera: cam, remote: a.Session, started: h.cfg.Now()}
	h.mu.Unlock()
	h.log.Info("camera offer answered through the uplink", "village", village, "camera", cam, "user", user, "codec", a.Codec,
		"took", time.Since(started).Round(time.Millisecond))
	for _, s := range h.iceServers("police:" + user) {
		for _, u := range s.URLs {
			// RFC 9725 §4.6: ICE servers as Link headers.
			w.Header().Add("Link", fmt.Sprintf(`<%s>; rel="ice-server"; username="%s"; credential="%s"; credential-type="password"`, u, s.Username, s.Credential))
		}
	}
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", "/api/v1/commune/whep/"+id)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, a.Answer)
}

// handleDelete ends a session (RFC 9725 §4.3): only its owner may, and the
// village is told to hang up; the commune forgets the session either way.
func (h *Handler) handleDelete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("session")
	h.mu.Lock()
	s, ok := h.sessions[id]
	h.mu.Unlock()
	if !ok {
		httpError(w, http.StatusNotFound, "no such session")
		return
	}
	user, st := h.cfg.Authorize(r, s.village, s.camera)
	if st != 0 {
		httpError(w, st, http.StatusText(st))
		return
	}
	if user != s.user {
		httpError(w, http.StatusForbidden, "the session belongs to another user")
		return
	}
	h.mu.Lock()
	delete(h.sessions, id)
	h.mu.Unlock()
	a, st, err := h.ask(r.Context(), uplink.CameraRequest{Op: uplink.CameraHangup, Village: s.village, Camera: s.camera, Viewer: user, Session: s.remote})
	if err != nil {
		// The village drops a viewer whose ICE went silent by itself.
		h.log.Info("camera hangup not confirmed", "village", s.village, "status", st, "err", err)
		w.WriteHeader(http.StatusAccepted)
		return
	}
	h.log.Info("camera hangup forwarded", "village", s.village, "camera", s.camera, "status", a.Status, "err", a.Error)
	w.WriteHeader(http.StatusNoContent)
}

// Presence is what the commune last heard of a village's uplink.
type Presence struct {
	Village string    `json:"village"`
	Online  bool      `json:"online"`
	Since   time.Time `json:"since"`
}

// Presences lists the villages heard from since the commune started.
func (h *Handler) Presences() []Presence {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Presence, 0, len(h.presence))
	for v, p := range h.presence {
		out = append(out, Presence{Village: v, Online: p.online, Since: p.at})
	}
	return out
}

func (h *Handler) handlePresence(w http.ResponseWriter, r *http.Request) {
	if _, st := h.cfg.Authorize(r, "", ""); st != 0 {
		httpError(w, st, http.StatusText(st))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(h.Presences())
}

// Sessions counts the open viewing sessions.
func (h *Handler) Sessions() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}
