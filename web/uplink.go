package web

import (
	"net/http"

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
