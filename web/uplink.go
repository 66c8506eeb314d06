package web

import (
	"errors"
	"net/http"
	"strings"

	"github.com/loalang/loalang/audit"
	"github.com/loalang/loalang/auth"
)

// EnableUplink serves GET /api/v1/uplink: the uplink's status (connected,
// outbox depth, oldest pending age, last error, commands seen) as status
// returns it. The admin and the village head may read it; it holds no
// secret (the broker URL is shown without user information).
func (s *Server) EnableUplink(status func() any) {
	s.Handle("GET /api/v1/uplink", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, status())
	}, auth.RoleAdmin, auth.RoleHead)
}

// UplinkDraft is a bulletin a village head submits to the commune
// (POST /api/v1/uplink/drafts): it goes up as a "draft" event and never
// plays by itself; the commune's editor and approver decide.
type UplinkDraft struct {
	Title   string   `json:"title"`
	Text    string   `json:"text"`
	Urgency string   `json:"urgency"`
	Zones   []string `json:"zones,omitempty"`
}

// ErrUplinkOff is what a draft's submit returns when uplink.url is empty.
var ErrUplinkOff = errors.New("the uplink to the commune is not configured (uplink.url)")

// EnableUplinkDrafts serves POST /api/v1/uplink/drafts for the village
// head and the admin: submit checks the draft, queues it in the uplink's
// outbox and returns its id; the answer is 202 (queued, not yet at the
// commune).
func (s *Server) EnableUplinkDrafts(submit func(author string, d UplinkDraft) (string, error)) {
	s.Handle("POST /api/v1/uplink/drafts", func(w http.ResponseWriter, r *http.Request) {
		var d UplinkDraft
		if err := s.decode(w, r, &d); err != nil {
			writeError(w, r, err)
			return
		}
		switch {
		case strings.TrimSpace(d.Text) == "" || len(d.Text) > 4000:
			writeError(w, r, badRequest("text must be 1–4000 bytes"))
			return
		case len(d.Title) > 200:
			writeError(w, r, badRequest("title must be at most 200 bytes"))
			return
		case d.Urgency == "":
			d.Urgency = "routine"
		case d.Urgency != "routine" && d.Urgency != "emergency":
			writeError(w, r, badRequest("urgency must be routine or emergency"))
			return
		}
		u := UserFrom(r.Context())
		id, err := submit(u.Username, d)
		if errors.Is(err, ErrUplinkOff) {
			writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
			return
		}
		if err != nil {
			writeError(w, r, err)
			return
		}
		s.audit(r, audit.UplinkDraft, id, map[string]any{"title": d.Title, "urgency": d.Urgency})
		writeJSON(w, http.StatusAccepted, map[string]string{"id": id})
	}, auth.RoleAdmin, auth.RoleHead)
}
