package web

import (
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/loalang/loalang/audit"
	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/broadcast"
	"github.com/loalang/loalang/whip"
)

// maxWHIPOffer bounds an SDP offer in bytes.
const maxWHIPOffer = 64 << 10

// EnableLive registers WHIP (RFC 9725) for live speech, served by the
// ingest service of package whip: POST /api/v1/live/whip?zones=a,b&priority=normal
// with an SDP offer creates a session (§4.2: 201, answer, Location), DELETE
// on the Location ends it (§4.3). Admins and heads only.
func (s *Server) EnableLive(live *whip.Service) {
	l := liveHandlers{s: s, live: live}
	heads := []auth.Role{auth.RoleAdmin, auth.RoleHead}
	s.Handle("POST /api/v1/live/whip", l.post, heads...)
	s.Handle("DELETE /api/v1/live/whip/{id}", l.delete, heads...)
	s.Handle("PATCH /api/v1/live/whip/{id}", func(w http.ResponseWriter, r *http.Request) {
		// No trickle ICE or ICE restart (RFC 9725 §4.3.1): candidates are
		// all in the offer and the answer.
		w.Header().Set("Allow", "DELETE")
		w.WriteHeader(http.StatusMethodNotAllowed)
	}, heads...)
}

// liveHandlers are the WHIP endpoints: parse, call the service, answer.
type liveHandlers struct {
	s    *Server
	live *whip.Service
}

func (l liveHandlers) post(w http.ResponseWriter, r *http.Request) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "application/sdp" {
		writeJSON(w, http.StatusUnsupportedMediaType, map[string]string{"error": "Content-Type: want application/sdp (RFC 9725 §4.2)"})
		return
	}
	q := r.URL.Query()
	var zones []string
	for z := range strings.SplitSeq(q.Get("zones"), ",") {
		if z = strings.TrimSpace(z); z != "" {
			zones = append(zones, z)
		}
	}
	if len(zones) == 0 {
		writeError(w, r, badRequest("zones: give ?zones=a,b"))
		return
	}
	priority := q.Get("priority")
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWHIPOffer))
	if err != nil {
		writeError(w, r, err)
		return
	}
	u := UserFrom(r.Context())
	st, err := l.live.Start(r.Context(), string(raw), u.Username, broadcast.Request{
		Zones: zones, Priority: broadcast.Priority(priority), Actor: u.Username, Origin: broadcast.OriginLive,
	})
	if err != nil {
		writeError(w, r, err)
		return
	}
	l.s.audit(r, audit.LiveStart, st.ID, map[string]any{"zones": zones, "priority": priority, "archive": st.Archive})
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", "/api/v1/live/whip/"+st.ID)
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, st.Answer)
}

func (l liveHandlers) delete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	u := UserFrom(r.Context())
	if err := l.live.Hangup(id, u.Username, u.Role == auth.RoleAdmin); err != nil {
		writeError(w, r, err)
		return
	}
	l.s.audit(r, audit.LiveHangup, id, nil)
	w.WriteHeader(http.StatusOK)
}
