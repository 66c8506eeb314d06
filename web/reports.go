package web

import (
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/broadcast/media"
	"github.com/loalang/loalang/broadcast/playout"
	"github.com/loalang/loalang/broadcast/schedule"
	"github.com/loalang/loalang/device/wire"
)

// Reports and record exports: the monthly report per zone and speaker
// (docs/reports.md) and the play-out log by date range. Both read the
// durable play-out log (bucket broadcasts), never the engine's memory.

// reportPriorities are the priority levels in report order.
var reportPriorities = []string{wire.PriorityEmergency, wire.PriorityPriority, wire.PriorityNormal, wire.PriorityBackground}

// The report's types are the play-out log's (broadcast/playout), which
// computes it.
type (
	ZoneReport    = playout.ZoneReport
	SpeakerReport = playout.SpeakerReport
	MonthlyReport = playout.MonthlyReport
)

// reportRoutes registers the report and export routes with the broadcast
// routes (village head and admin; the audit export stays admin-only at GET
// /api/v1/audit).
func (s *Server) reportRoutes() {
	heads := []auth.Role{auth.RoleAdmin, auth.RoleHead}
	s.Handle("GET /api/v1/reports/monthly", s.handleMonthly, heads...)
	s.Handle("GET /api/v1/reports/playout", s.handlePlayout, heads...)
}

// buildMonthly computes the report from the play-out log of [from, until).
func (s *Server) buildMonthly(ctx context.Context, from, until time.Time, lang string) (MonthlyReport, error) {
	recs, err := s.bc.Log.Range(ctx, from, until, lang)
	if err != nil {
		return MonthlyReport{}, err
	}
	devZones := map[string][]string{}
	if s.devices != nil {
		for _, d := range s.devices.List() {
			devZones[d.ID] = d.Zones
		}
	}
	rep := playout.Monthly(recs, devZones, s.now())
	rep.Language, rep.From, rep.Until = lang, from, until
	return rep, nil
}

// handleMonthly answers ?month=YYYY-MM (default: this month) in
// ?time_zone= (default the schedules' zone), optionally for one
// ?language=, as JSON or ?format=csv.
func (s *Server) handleMonthly(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	tz := q.Get("time_zone")
	if tz == "" {
		tz = schedule.DefaultTimeZone
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		writeError(w, r, badRequest("time_zone: unknown IANA time zone %q", tz))
		return
	}
	month := q.Get("month")
	var start time.Time
	if month == "" {
		n := s.now().In(loc)
		start = time.Date(n.Year(), n.Month(), 1, 0, 0, 0, 0, loc)
	} else if start, err = time.ParseInLocation("2006-01", month, loc); err != nil {
		writeError(w, r, badRequest("month: %q is not a month like 2026-11", month))
		return
	}
	lang, err := languageParam(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	rep, err := s.buildMonthly(r.Context(), start, start.AddDate(0, 1, 0), lang)
	if err != nil {
		writeError(w, r, err)
		return
	}
	rep.Month, rep.TimeZone = start.Format("2006-01"), loc.String()
	switch q.Get("format") {
	case "", "json":
		writeJSON(w, http.StatusOK, rep)
	case "csv":
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="loalang-report-%s.csv"`, rep.Month))
		writeMonthlyCSV(w, rep)
	default:
		writeError(w, r, badRequest("format: %q is not json or csv", q.Get("format")))
	}
}

// writeMonthlyCSV writes one row per zone and one per speaker: the zone
// rows carry air time (seconds) by priority and language, the speaker rows
// delivery.
func writeMonthlyCSV(w http.ResponseWriter, rep MonthlyReport) {
	cw := csv.NewWriter(w)
	head := []string{"section", "id", "zones", "broadcasts", "air_seconds"}
	for _, p := range reportPriorities {
		head = append(head, "air_"+p)
	}
	langs := media.LanguageCodes()
	for _, l := range langs {
		head = append(head, "air_lang_"+l)
	}
	head = append(head, "frames_expected", "frames_played", "frames_late", "frames_lost", "missed", "delivery_pct")
	cw.Write(head)
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	for _, z := range rep.Zones {
		row := []string{"zone", csvCell(z.Zone), csvCell(z.Zone), strconv.Itoa(z.Broadcasts), f(z.AirSeconds)}
		for _, p := range reportPriorities {
			row = append(row, f(z.ByPriority[p]))
		}
		for _, l := range langs {
			row = append(row, f(z.ByLanguage[l]))
		}
		row = append(row, u(z.FramesExpected), u(z.FramesPlayed), "", "", u(z.FramesExpected-min(z.FramesPlayed, z.FramesExpected)), f(100*z.Delivery))
		cw.Write(row)
	}
	blank := make([]string, 1+len(reportPriorities)+len(langs))
	for _, sp := range rep.Speakers {
		row := []string{"speaker", csvCell(sp.ID), csvCell(strings.Join(sp.Zones, " ")), strconv.Itoa(sp.Broadcasts)}
		row = append(row, blank...)
		row = append(row, u(sp.FramesExpected), u(sp.FramesPlayed), u(sp.FramesLate), u(sp.FramesLost), u(sp.Missed), f(100*sp.Delivery))
		cw.Write(row)
	}
	cw.Flush()
}

// handlePlayout exports the play-out log of broadcasts created in
// [?since, ?until) (RFC 3339; default all), as JSON records or ?format=csv.
func (s *Server) handlePlayout(w http.ResponseWriter, r *http.Request) {
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
	lang, err := languageParam(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	recs, err := s.bc.Log.Range(r.Context(), since, until, lang)
	if err != nil {
		writeError(w, r, err)
		return
	}
	switch q.Get("format") {
	case "", "json":
		writeJSON(w, http.StatusOK, recs)
		return
	case "csv":
	default:
		writeError(w, r, badRequest("format: %q is not json or csv", q.Get("format")))
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="loalang-playout.csv"`)
	cw := csv.NewWriter(w)
	cw.Write([]string{"id", "created", "started", "ended", "state", "source", "media_id", "zones", "priority", "language", "actor", "origin", "schedule_id",
		"air_seconds", "speakers", "frames_expected", "frames_played", "frames_late", "frames_lost"})
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	for _, b := range recs {
		var e, p, l, lo uint64
		for _, d := range b.Devices {
			e, p, l, lo = e+d.FramesExpected, p+d.FramesPlayed, l+d.FramesLate, lo+d.FramesLost
		}
		cw.Write([]string{csvCell(b.ID), ts(b.Created), ts(b.Started), ts(b.Ended), string(b.State), b.Source, b.MediaID, csvCell(strings.Join(b.Zones, " ")),
			string(b.Priority), b.Language, csvCell(b.Actor), string(b.Origin), csvCell(b.ScheduleID), strconv.FormatFloat(playout.AirTime(b, s.now()).Seconds(), 'f', 1, 64),
			strconv.Itoa(len(b.Devices)), strconv.FormatUint(e, 10), strconv.FormatUint(p, 10), strconv.FormatUint(l, 10), strconv.FormatUint(lo, 10)})
	}
	cw.Flush()
}
