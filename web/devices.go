package web

import (
	"encoding/csv"
	"encoding/json"
	"github.com/loalang/loalang/audit"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/web/api"
)

var jsonUnmarshal = json.Unmarshal

type deviceView = api.Device

func (s *Server) handleDevices(w http.ResponseWriter, r *http.Request) {
	states := s.devices.List()
	out := make([]deviceView, 0, len(states))
	for _, d := range states {
		v := deviceView{ID: d.ID, Kind: d.Kind, Name: d.Name, Zones: d.Zones, Online: d.Online, Firmware: d.Firmware,
			Volume: d.Volume, UptimeS: d.UptimeS, SignalDBm: d.SignalDBm, Lat: d.Lat, Lon: d.Lon}
		if !d.LastSeen.IsZero() {
			ls := d.LastSeen
			v.LastSeen = &ls
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handlePing(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := r.PathValue("id")
	_, err := s.commands.Send(r.Context(), id, wire.Command{Op: wire.OpPing})
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "rtt_ms": float64(time.Since(start).Microseconds()) / 1000})
}

func (s *Server) handleVolume(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Volume int `json:"volume"`
	}
	if err := s.decode(w, r, &req); err != nil {
		writeError(w, r, err)
		return
	}
	if req.Volume < 0 || req.Volume > 100 {
		writeError(w, r, badRequest("volume: %d outside 0–100", req.Volume))
		return
	}
	id := r.PathValue("id")
	rep, err := s.commands.Send(r.Context(), id, wire.Command{Op: wire.OpSetVolume, Volume: &req.Volume})
	if err != nil {
		writeError(w, r, err)
		return
	}
	s.audit(r, audit.DeviceVolume, id, map[string]any{"volume": req.Volume})
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "volume": rep.Volume})
}

func parseTime(field, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return t, badRequest("%s: %q is not an RFC 3339 time", field, v)
	}
	return t, nil
}

// handleAudit serves the audit trail as JSON, or CSV with format=csv.
func (s *Server) handleAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	since, err := parseTime("since", q.Get("since"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	until, err := parseTime("until", q.Get("until"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	limit := 10000
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 {
			writeError(w, r, badRequest("limit: %q is not a positive integer", v))
			return
		}
	}
	events, err := s.trail.AuditRange(since, until, limit)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if q.Get("format") == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="loalang-audit.csv"`)
		cw := csv.NewWriter(w)
		cw.Write([]string{"time", "actor", "action", "target", "detail"})
		for _, e := range events {
			detail, _ := json.Marshal(e.Detail)
			if e.Detail == nil {
				detail = nil
			}
			cw.Write([]string{e.Time.UTC().Format(time.RFC3339Nano), csvCell(e.Actor), csvCell(string(e.Action)), csvCell(e.Target), csvCell(string(detail))})
		}
		cw.Flush()
		return
	}
	if events == nil {
		writeJSON(w, http.StatusOK, []any{})
		return
	}
	writeJSON(w, http.StatusOK, events)
}

// csvCell defuses a cell a spreadsheet would run as a formula: one that
// starts with =, +, -, @, a tab or a carriage return gets a leading single
// quote (OWASP "CSV Injection"). Audit fields can carry text chosen by
// anyone who reaches the login form.
func csvCell(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}
