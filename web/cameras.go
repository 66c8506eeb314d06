package web

import (
	"context"
	"errors"
	"fmt"
	"github.com/loalang/loalang/audit"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/camera"
	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/store"
	"github.com/loalang/loalang/web/api"
)

// Relay is the camera relay as the API uses it.
type Relay interface {
	List() []camera.Status
	SetCameras(cams []camera.Camera)
	Offer(ctx context.Context, cameraID, offerSDP, viewer string) (camera.Session, error)
	Hangup(sessionID string) error
	Sessions(cameraID string) []string
}

// CameraDeps enables the camera and WHEP routes.
type CameraDeps struct {
	Relay Relay
	// Base is the camera list of the config file. Records in the store's
	// cameras bucket (changes made through the API) take precedence, so
	// runtime changes survive restarts.
	Base []camera.Camera
	// MaxOffer bounds a WHEP offer in bytes; 0 means 64 KiB.
	MaxOffer int64
}

// CameraRecord is a camera added, changed or removed through the API, as
// kept in bbolt. URL and SubstreamURL hold no credentials (they show
// camera.Placeholder where a secret was); the secrets are kept apart in
// Secret and SubstreamSecret, which are write-only: never returned, logged
// or audited. Records written before this split, with credentials in
// their URLs, are rewritten at start (migrateSecrets).
type CameraRecord struct {
	ID              string             `json:"id"`
	Name            string             `json:"name,omitempty"`
	URL             string             `json:"url,omitempty"`
	SubstreamURL    string             `json:"substream_url,omitempty"`
	Secret          camera.Credentials `json:"secret,omitzero"`
	SubstreamSecret camera.Credentials `json:"substream_secret,omitzero"`
	AlwaysOn        bool               `json:"always_on,omitempty"`
	Deleted         bool               `json:"deleted,omitempty"`
	Updated         time.Time          `json:"updated"`
}

// MergeCameras returns base overridden by recs: a record replaces the
// camera of the same ID, a deleted record removes it, and other records are
// added after the base cameras in ID order.
func MergeCameras(base []camera.Camera, recs []CameraRecord) []camera.Camera {
	byID := map[string]CameraRecord{}
	for _, r := range recs {
		byID[r.ID] = r
	}
	out := make([]camera.Camera, 0, len(base)+len(recs))
	seen := map[string]bool{}
	for _, c := range base {
		seen[c.ID] = true
		r, ok := byID[c.ID]
		switch {
		case !ok:
			out = append(out, c)
		case !r.Deleted:
			out = append(out, r.camera())
		}
	}
	recs = slices.Clone(recs)
	slices.SortFunc(recs, func(a, b CameraRecord) int { return strings.Compare(a.ID, b.ID) })
	for _, r := range recs {
		if !seen[r.ID] && !r.Deleted {
			out = append(out, r.camera())
		}
	}
	return out
}

func (r CameraRecord) camera() camera.Camera {
	c := camera.Camera{ID: r.ID, Name: r.Name, AlwaysOn: r.AlwaysOn}
	c.URL, c.Credentials = SplitCameraURL(r.URL, r.Secret)
	if r.SubstreamURL != "" {
		c.SubstreamURL, c.SubstreamCredentials = SplitCameraURL(r.SubstreamURL, r.SubstreamSecret)
	}
	return c
}

// SplitCameraURL returns the URL without credentials and the credentials
// apart: a URL that still carries them (a config-file camera, a record from
// before the split) is split; one already split keeps stored.
func SplitCameraURL(raw string, stored camera.Credentials) (string, camera.Credentials) {
	clean, cred, err := camera.SplitURL(raw)
	if err != nil || cred.IsZero() {
		return raw, stored
	}
	if filled, err := cred.Fill(stored); err == nil {
		return clean, filled
	}
	return clean, cred
}

// cameraAPI holds the camera routes' state: the relay, the config-file
// cameras and the WHEP sessions' owners.
type cameraAPI struct {
	s        *Server
	relay    Relay
	base     []camera.Camera
	maxOffer int64

	// mu serialises camera changes so the relay is set in commit order.
	mu sync.Mutex

	sessMu   sync.Mutex
	sessions map[string]whepSession
}

// whepSession is who opened a WHEP session, for DELETE's owner check.
type whepSession struct {
	user, camera string
}

// EnableCameras registers the camera list, camera administration and WHEP
// (RFC 9725 conventions applied to egress, as the IETF WHEP draft does)
// routes, and applies the stored camera list to the relay.
func (s *Server) EnableCameras(d CameraDeps) error {
	if d.MaxOffer <= 0 {
		d.MaxOffer = 64 << 10
	}
	c := &cameraAPI{s: s, relay: d.Relay, base: d.Base, maxOffer: d.MaxOffer, sessions: map[string]whepSession{}}
	if err := c.migrateSecrets(); err != nil {
		return err
	}
	c.mu.Lock()
	err := c.apply()
	c.mu.Unlock()
	if err != nil {
		return err
	}
	viewers := []auth.Role{auth.RoleAdmin, auth.RolePolice}
	s.Handle("GET /api/v1/cameras", c.handleList, viewers...)
	s.Handle("POST /api/v1/cameras", c.handleCreate, auth.RoleAdmin)
	s.Handle("PUT /api/v1/cameras/{id}", c.handleUpdate, auth.RoleAdmin)
	s.Handle("DELETE /api/v1/cameras/{id}", c.handleDelete, auth.RoleAdmin)
	s.Handle("POST /api/v1/cameras/{id}/whep", c.handleWHEP, viewers...)
	s.Handle("OPTIONS /api/v1/cameras/{id}/whep", c.handleWHEPOptions)
	s.Handle("DELETE /api/v1/whep/{session}", c.handleWHEPDelete, viewers...)
	return nil
}

// migrateSecrets rewrites records stored before credentials were kept
// apart from the URL: their URLs are split and the secrets moved into the
// record's secret fields, in one transaction, so no credential stays in a
// stored URL after the first start of this version.
func (c *cameraAPI) migrateSecrets() error {
	recs, err := store.List[CameraRecord](c.s.db, store.Cameras, "")
	if err != nil {
		return fmt.Errorf("list cameras: %w", err)
	}
	var changed []CameraRecord
	for _, r := range recs {
		if r.Deleted {
			continue
		}
		cam := r.camera()
		if cam.URL == r.URL && cam.SubstreamURL == r.SubstreamURL {
			continue
		}
		r.URL, r.Secret, r.SubstreamURL, r.SubstreamSecret = cam.URL, cam.Credentials, cam.SubstreamURL, cam.SubstreamCredentials
		changed = append(changed, r)
	}
	if len(changed) == 0 {
		return nil
	}
	err = c.s.db.Update(func(tx *store.Tx) error {
		for _, r := range changed {
			if err := tx.Put(store.Cameras, r.ID, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("move camera credentials out of stored URLs: %w", err)
	}
	c.s.log.Info("camera credentials moved out of stored URLs", "cameras", len(changed))
	return nil
}

// current reads the merged camera list.
func (c *cameraAPI) current() ([]camera.Camera, error) {
	recs, err := store.List[CameraRecord](c.s.db, store.Cameras, "")
	if err != nil {
		return nil, fmt.Errorf("list cameras: %w", err)
	}
	return MergeCameras(c.base, recs), nil
}

// apply sets the relay to the merged list; c.mu must be held.
func (c *cameraAPI) apply() error {
	cams, err := c.current()
	if err != nil {
		return err
	}
	c.relay.SetCameras(cams)
	return nil
}

// cameraView is a camera as the API shows it. URL is the redacted main
// stream URL, for admins only.
type cameraView = api.Camera

func cameraViewOf(st camera.Status, admin bool) cameraView {
	v := cameraView{
		ID: st.ID, Name: st.Name, OnDemand: !st.AlwaysOn, Substream: st.Substream != nil,
		State: string(st.State), Reason: st.Reason, Codec: st.Codec, Width: st.Width, Height: st.Height,
		FPS: st.FPS, Bitrate: st.Bitrate, Viewers: st.Viewers,
	}
	if admin {
		v.URL = st.URL // already redacted by the relay
		v.HasSecret = st.HasSecret
	}
	return v
}

// handleList shows admins every camera and police the ones they may view.
func (c *cameraAPI) handleList(w http.ResponseWriter, r *http.Request) {
	u := UserFrom(r.Context())
	out := []cameraView{}
	for _, st := range c.relay.List() {
		if u.MayView(st.ID) {
			out = append(out, cameraViewOf(st, u.Role == auth.RoleAdmin))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// cameraRequest is the body of POST and PUT; on PUT an absent field keeps
// its value, so an admin can rename a camera without re-entering the
// credentials the API never shows. Credentials in url or substream_url
// (user information, or credential-like keys in the path or query) are
// moved out of the URL into the camera's write-only secret; a "***" sent
// back keeps the stored value. Username and password, when given, set the
// user information of both streams (one device, one account); an empty
// string clears it.
type cameraRequest = api.CameraRequest

// checkRTSP validates a camera URL without ever echoing it: it may hold
// credentials.
func checkRTSP(field, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "rtsp" && u.Scheme != "rtsps") || u.Host == "" {
		return badRequest("%s: not an rtsp:// or rtsps:// URL", field)
	}
	return nil
}

// splitRequestURL moves the credentials of a URL the admin sent into its
// secret. Placeholders are filled from the stored secret; the stored user
// information is kept when the new URL has none and points at the same
// host. Errors name the field and never echo the URL.
func splitRequestURL(field, raw, oldURL string, old camera.Credentials) (string, camera.Credentials, error) {
	if raw == "" {
		return "", camera.Credentials{}, nil
	}
	if err := checkRTSP(field, raw); err != nil {
		return "", camera.Credentials{}, err
	}
	clean, sec, err := camera.SplitURL(raw)
	if err != nil {
		return "", camera.Credentials{}, badRequest("%s: not an rtsp:// or rtsps:// URL", field)
	}
	if sec, err = sec.Fill(old); err != nil {
		return "", camera.Credentials{}, badRequest("%s: %v", field, err)
	}
	if sec.Username == "" && sec.Password == "" && sameHost(clean, oldURL) {
		sec.Username, sec.Password = old.Username, old.Password
	}
	return clean, sec, nil
}

// sameHost reports whether two URLs name the same host and port, so stored
// user information never follows a camera to another address.
func sameHost(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	return err1 == nil && err2 == nil && ua.Host != "" && strings.EqualFold(ua.Host, ub.Host)
}

// applyCameraRequest applies a POST or PUT body to rec.
func applyCameraRequest(req cameraRequest, rec *CameraRecord) error {
	if req.Name != nil {
		rec.Name = strings.TrimSpace(*req.Name)
	}
	if req.URL != nil {
		url, sec, err := splitRequestURL("url", strings.TrimSpace(*req.URL), rec.URL, rec.Secret)
		if err != nil {
			return err
		}
		rec.URL, rec.Secret = url, sec
	}
	if req.SubstreamURL != nil {
		url, sec, err := splitRequestURL("substream_url", strings.TrimSpace(*req.SubstreamURL), rec.SubstreamURL, rec.SubstreamSecret)
		if err != nil {
			return err
		}
		rec.SubstreamURL, rec.SubstreamSecret = url, sec
	}
	if req.Username != nil {
		rec.Secret.Username = *req.Username
		rec.SubstreamSecret.Username = *req.Username
	}
	if req.Password != nil {
		rec.Secret.Password = *req.Password
		rec.SubstreamSecret.Password = *req.Password
	}
	if rec.SubstreamURL == "" {
		rec.SubstreamSecret = camera.Credentials{}
	}
	if req.OnDemand != nil {
		rec.AlwaysOn = !*req.OnDemand
	}
	if rec.Name == "" {
		rec.Name = rec.ID
	}
	if len(rec.Name) > 200 {
		return badRequest("name: longer than 200 bytes")
	}
	if err := checkRTSP("url", rec.URL); err != nil {
		return err
	}
	if rec.SubstreamURL != "" {
		if err := checkRTSP("substream_url", rec.SubstreamURL); err != nil {
			return err
		}
	}
	return nil
}

func (c *cameraAPI) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req cameraRequest
	if err := c.s.decode(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	if err := wire.ValidLevel(req.ID); err != nil {
		writeError(w, r, badRequest("id: %v", err))
		return
	}
	if req.URL == nil {
		writeError(w, r, badRequest("url: required"))
		return
	}
	rec := CameraRecord{ID: req.ID}
	if err := applyCameraRequest(req, &rec); err != nil {
		writeError(w, r, err)
		return
	}
	c.change(w, r, rec, audit.CameraCreate, http.StatusCreated, func(exists bool) error {
		if exists {
			return fmt.Errorf("camera %s: %w", rec.ID, errConflict)
		}
		return nil
	})
}

func (c *cameraAPI) handleUpdate(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req cameraRequest
	if err := c.s.decode(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	if req.ID != "" && req.ID != id {
		writeError(w, r, badRequest("id: %q does not match the path", req.ID))
		return
	}
	c.mu.Lock()
	cams, err := c.current()
	c.mu.Unlock()
	if err != nil {
		writeError(w, r, err)
		return
	}
	i := slices.IndexFunc(cams, func(cam camera.Camera) bool { return cam.ID == id })
	if i < 0 {
		writeError(w, r, fmt.Errorf("camera %s: %w", id, errNotFound))
		return
	}
	cur := cams[i]
	rec := CameraRecord{ID: id, Name: cur.Name, URL: cur.URL, SubstreamURL: cur.SubstreamURL,
		Secret: cur.Credentials, SubstreamSecret: cur.SubstreamCredentials, AlwaysOn: cur.AlwaysOn}
	if err := applyCameraRequest(req, &rec); err != nil {
		writeError(w, r, err)
		return
	}
	c.change(w, r, rec, audit.CameraUpdate, http.StatusOK, func(exists bool) error {
		if !exists {
			return fmt.Errorf("camera %s: %w", id, errNotFound)
		}
		return nil
	})
}

func (c *cameraAPI) handleDelete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	// A tombstone, not a delete: it must also hide a config-file camera
	// across restarts.
	rec := CameraRecord{ID: id, Deleted: true}
	c.change(w, r, rec, audit.CameraDelete, http.StatusNoContent, func(exists bool) error {
		if !exists {
			return fmt.Errorf("camera %s: %w", id, errNotFound)
		}
		return nil
	})
}

// change checks the record against the current list, stores it with its
// audit entry in one transaction and applies the new list to the relay.
func (c *cameraAPI) change(w http.ResponseWriter, r *http.Request, rec CameraRecord, action audit.Action, code int, check func(exists bool) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cams, err := c.current()
	if err != nil {
		writeError(w, r, err)
		return
	}
	exists := slices.ContainsFunc(cams, func(cam camera.Camera) bool { return cam.ID == rec.ID })
	if err := check(exists); err != nil {
		writeError(w, r, err)
		return
	}
	rec.Updated = c.s.now()
	detail := map[string]any{}
	if !rec.Deleted {
		// Only the stored, credential-free URLs: the secret is never audited.
		detail = map[string]any{"name": rec.Name, "url": rec.Secret.Redacted(camera.RedactURL(rec.URL)), "on_demand": !rec.AlwaysOn,
			"has_secret": !rec.Secret.IsZero() || !rec.SubstreamSecret.IsZero()}
		if rec.SubstreamURL != "" {
			detail["substream_url"] = rec.SubstreamSecret.Redacted(camera.RedactURL(rec.SubstreamURL))
		}
	}
	ev := store.Event{Time: rec.Updated, Actor: UserFrom(r.Context()).Username, Action: action, Target: rec.ID, Detail: detail}
	if err := c.s.db.Update(func(tx *store.Tx) error {
		if err := tx.Put(store.Cameras, rec.ID, rec); err != nil {
			return err
		}
		return tx.AppendAudit(ev)
	}); err != nil {
		writeError(w, r, fmt.Errorf("save camera %s: %w", rec.ID, err))
		return
	}
	if err := c.apply(); err != nil {
		writeError(w, r, err)
		return
	}
	if code == http.StatusNoContent {
		w.WriteHeader(code)
		return
	}
	for _, st := range c.relay.List() {
		if st.ID == rec.ID {
			writeJSON(w, code, cameraViewOf(st, true))
			return
		}
	}
	writeJSON(w, code, cameraView{ID: rec.ID, Name: rec.Name, URL: rec.Secret.Redacted(camera.RedactURL(rec.URL)),
		HasSecret: !rec.Secret.IsZero(), OnDemand: !rec.AlwaysOn})
}

// errUnsupportedMedia is a WHEP POST whose body is not an SDP offer
// (RFC 9725 §4.2: the offer is an "application/sdp" body).
var errUnsupportedMedia = errors.New("want Content-Type: application/sdp")

// handleWHEP answers a WHEP offer: 201 Created, the SDP answer as the body
// and the session URL in Location (RFC 9725 §4.2, applied to egress).
func (c *cameraAPI) handleWHEP(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	u := UserFrom(r.Context())
	if !u.MayView(id) {
		writeError(w, r, errForbidden)
		return
	}
	if ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || ct != "application/sdp" {
		w.Header().Set("Accept-Post", "application/sdp")
		writeJSON(w, http.StatusUnsupportedMediaType, map[string]string{"error": errUnsupportedMedia.Error()})
		return
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, c.maxOffer))
	if err != nil {
		writeError(w, r, err)
		return
	}
	c.pruneSessions()
	sess, err := c.relay.Offer(r.Context(), id, string(raw), u.Username)
	if err != nil {
		writeError(w, r, err)
		return
	}
	c.sessMu.Lock()
	c.sessions[sess.ID] = whepSession{user: u.Username, camera: id}
	c.sessMu.Unlock()
	c.s.audit(r, "camera.view.start", id, map[string]any{"session": sess.ID, "codec": sess.Codec, "substream": sess.Substream})
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", "/api/v1/whep/"+sess.ID)
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, sess.AnswerSDP)
}

// handleWHEPOptions tells a client what the endpoint accepts, without
// authentication, as browsers' CORS pre-flights do (RFC 9725 §4.2).
func (c *cameraAPI) handleWHEPOptions(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Accept-Post", "application/sdp")
	w.Header().Set("Allow", "OPTIONS, POST")
	w.WriteHeader(http.StatusNoContent)
}

// handleWHEPDelete ends a session (RFC 9725 §4.3); only its owner or an
// admin may.
func (c *cameraAPI) handleWHEPDelete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("session")
	u := UserFrom(r.Context())
	c.sessMu.Lock()
	owner, ok := c.sessions[id]
	c.sessMu.Unlock()
	if !ok {
		writeError(w, r, fmt.Errorf("session %s: %w", id, errNotFound))
		return
	}
	if owner.user != u.Username && u.Role != auth.RoleAdmin {
		writeError(w, r, errForbidden)
		return
	}
	err := c.relay.Hangup(id)
	c.sessMu.Lock()
	delete(c.sessions, id)
	c.sessMu.Unlock()
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// pruneSessions forgets owners of sessions the relay ended by itself (ICE
// failure, camera removed), so the map stays bounded by the viewer limit.
func (c *cameraAPI) pruneSessions() {
	// The lock spans the snapshot: a session registered after it can only
	// be added to the map after this prune.
	c.sessMu.Lock()
	live := map[string]bool{}
	for _, id := range c.relay.Sessions("") {
		live[id] = true
	}
	for id := range c.sessions {
		if !live[id] {
			delete(c.sessions, id)
		}
	}
	c.sessMu.Unlock()
}
