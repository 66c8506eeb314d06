package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sync"

	"github.com/loalang/loalang/audit"
	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/camera"
	"github.com/loalang/loalang/web/api"
)

// Relay is the camera relay as the API uses it.
type Relay interface {
	List() []camera.Status
	Offer(ctx context.Context, cameraID, offerSDP, viewer string) (camera.Session, error)
	Hangup(sessionID string) error
	Sessions(cameraID string) []string
}

// CameraDeps enables the camera and WHEP routes.
type CameraDeps struct {
	Relay Relay
	// Registry owns the camera list: the config file's cameras, changes
	// made through the API, and the relay's list.
	Registry *camera.Registry
	// MaxOffer bounds a WHEP offer in bytes; 0 means 64 KiB.
	MaxOffer int64
}

// cameraAPI holds the camera routes' state: the relay, the registry and
// the WHEP sessions' owners.
type cameraAPI struct {
	s        *Server
	relay    Relay
	registry *camera.Registry
	maxOffer int64

	sessMu   sync.Mutex
	sessions map[string]whepSession
}

// whepSession is who opened a WHEP session, for DELETE's owner check.
type whepSession struct {
	user, camera string
}

// EnableCameras registers the camera list, camera administration and WHEP
// (RFC 9725 conventions applied to egress, as the IETF WHEP draft does)
// routes. The registry has set the relay's cameras already.
func (s *Server) EnableCameras(d CameraDeps) error {
	if d.MaxOffer <= 0 {
		d.MaxOffer = 64 << 10
	}
	c := &cameraAPI{s: s, relay: d.Relay, registry: d.Registry, maxOffer: d.MaxOffer, sessions: map[string]whepSession{}}
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

// cameraRequest is the body of POST and PUT (camera.Change: credentials
// are write-only, absent fields on PUT keep their value).
type cameraRequest = api.CameraRequest

// change is the registry's view of a request.
func change(req cameraRequest) camera.Change {
	return camera.Change{Name: req.Name, URL: req.URL, SubstreamURL: req.SubstreamURL,
		Username: req.Username, Password: req.Password, OnDemand: req.OnDemand}
}

func (c *cameraAPI) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req cameraRequest
	if err := c.s.decode(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	rec, err := c.registry.Create(r.Context(), UserFrom(r.Context()).Username, req.ID, change(req))
	c.respond(w, r, rec, err, http.StatusCreated)
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
	rec, err := c.registry.Update(r.Context(), UserFrom(r.Context()).Username, id, change(req))
	c.respond(w, r, rec, err, http.StatusOK)
}

func (c *cameraAPI) handleDelete(w http.ResponseWriter, r *http.Request) {
	if err := c.registry.Delete(r.Context(), UserFrom(r.Context()).Username, r.PathValue("id")); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// respond answers a change with the camera as the relay now shows it.
func (c *cameraAPI) respond(w http.ResponseWriter, r *http.Request, rec camera.Record, err error, code int) {
	if err != nil {
		writeError(w, r, err)
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
	c.s.audit(r, audit.CameraViewStart, id, map[string]any{"session": sess.ID, "codec": sess.Codec, "substream": sess.Substream})
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
