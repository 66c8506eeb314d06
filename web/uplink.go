package web

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/loalang/loalang/audit"
	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/web/api"
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

// UplinkDrafts is the village heads' drafts for the commune as the API
// uses them (the uplink keeps them). Both return ErrUplinkOff when
// uplink.url is empty.
type UplinkDrafts interface {
	// Submit queues d from author for the commune and keeps it; it
	// returns the draft's id.
	Submit(ctx context.Context, author string, d api.UplinkDraft) (string, error)
	// List returns the kept drafts, newest first.
	List(ctx context.Context) ([]api.SubmittedDraft, error)
}

// ErrUplinkOff is what UplinkDrafts returns when uplink.url is empty.
var ErrUplinkOff = errors.New("the uplink to the commune is not configured (uplink.url)")

// EnableUplinkDrafts serves the village head's drafts for the head and
// the admin: POST /api/v1/uplink/drafts checks a draft and submits it
// (202: queued, not yet at the commune, with its id), and GET lists the
// submitted ones with their status. Both answer 409 when the uplink is
// not configured.
func (s *Server) EnableUplinkDrafts(drafts UplinkDrafts) {
	s.Handle("POST /api/v1/uplink/drafts", func(w http.ResponseWriter, r *http.Request) {
		var d api.UplinkDraft
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
		id, err := drafts.Submit(r.Context(), u.Username, d)
		if err != nil {
			writeError(w, r, err)
			return
		}
		s.audit(r, audit.UplinkDraft, id, map[string]any{"title": d.Title, "urgency": d.Urgency})
		writeJSON(w, http.StatusAccepted, map[string]string{"id": id})
	}, auth.RoleAdmin, auth.RoleHead)
	s.Handle("GET /api/v1/uplink/drafts", func(w http.ResponseWriter, r *http.Request) {
		list, err := drafts.List(r.Context())
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, list)
	}, auth.RoleAdmin, auth.RoleHead)
}
