package whep

import (
	_ "embed"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
)

//go:embed grid.html
var gridHTML []byte

// VillageCameras is one village's cameras on the police grid.
type VillageCameras struct {
	Village     string `json:"village"`
	VillageName string `json:"village_name,omitempty"`
	// Online is what the commune last heard of the village's uplink; nil
	// when it has heard nothing since it started.
	Online  *bool        `json:"online,omitempty"`
	Cameras []GridCamera `json:"cameras"`
}

// GridCamera is one camera tile.
type GridCamera struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

// handleCameras lists the user's cameras grouped by village, villages and
// cameras sorted by id, with each village's last known presence.
func (h *Handler) handleCameras(w http.ResponseWriter, r *http.Request) {
	user, st := h.cfg.Authorize(r, "", "")
	if st != 0 {
		httpError(w, st, http.StatusText(st))
		return
	}
	var out []VillageCameras
	if h.cfg.Cameras != nil {
		out = h.cfg.Cameras(r, user)
	}
	h.mu.Lock()
	for i := range out {
		if p, ok := h.presence[out[i].Village]; ok {
			on := p.online
			out[i].Online = &on
		}
		slices.SortFunc(out[i].Cameras, func(a, b GridCamera) int { return strings.Compare(a.ID, b.ID) })
	}
	h.mu.Unlock()
	slices.SortFunc(out, func(a, b VillageCameras) int { return strings.Compare(a.Village, b.Village) })
	if out == nil {
		out = []VillageCameras{}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(out)
}

// handleGrid serves the police camera grid page; its data calls check the
// role.
func (h *Handler) handleGrid(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; media-src 'self' blob:")
	_, _ = w.Write(gridHTML)
}
