package web

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/broadcast"
	"github.com/loalang/loalang/broadcast/media"
	"github.com/loalang/loalang/broadcast/schedule"
	"github.com/loalang/loalang/device/wire"
)

// Reports and record exports: the monthly report per zone and speaker
// (docs/reports.md) and the play-out log by date range. Both read the
// durable play-out log (bucket broadcasts), never the engine's memory.

// reportPriorities are the priority levels in report order.
var reportPriorities = []string{wire.PriorityEmergency, wire.PriorityPriority, wire.PriorityNormal, wire.PriorityBackground}

// ZoneReport is one zone's month.
type ZoneReport struct {
	Zone       string `json:"zone"`
	Broadcasts int    `json:"broadcasts"`
	// AirSeconds is the time the zone was on air (start to end of each
	// broadcast sent to it); ByPriority and ByLanguage split it.
	AirSeconds     float64            `json:"air_seconds"`
	ByPriority     map[string]float64 `json:"by_priority"`
	ByLanguage     map[string]float64 `json:"by_language"`
	FramesExpected uint64             `json:"frames_expected"`
	FramesPlayed   uint64             `json:"frames_played"`
	// Delivery is frames played / expected, from the speakers' reports
	// (1 when nothing was expected).
	Delivery float64 `json:"delivery"`
}

// SpeakerReport is one speaker's month, from its delivery reports.
type SpeakerReport struct {
	ID             string   `json:"id"`
	Zones          []string `json:"zones"`
	Broadcasts     int      `json:"broadcasts"`
	FramesExpected uint64   `json:"frames_expected"`
	FramesPlayed   uint64   `json:"frames_played"`
	FramesLate     uint64   `json:"frames_late"`
	FramesLost     uint64   `json:"frames_lost"`
	// Missed is frames expected but not played.
	Missed   uint64  `json:"missed"`
	Delivery float64 `json:"delivery"`
}

// MonthlyReport is GET /api/v1/reports/monthly.
type MonthlyReport struct {
	Month    string `json:"month"`
	TimeZone string `json:"time_zone"`
	// Language filters the report; "" is every language.
	Language   string          `json:"language,omitempty"`
	From       time.Time       `json:"from"`
	Until      time.Time       `json:"until"`
	Broadcasts int             `json:"broadcasts"`
	Zones      []ZoneReport    `json:"zones"`
	Speakers   []SpeakerReport `json:"speakers"`
	// MostMissed are the speakers that missed the most frames (up to 5,
	// only those that missed any), worst first.
	MostMissed []SpeakerReport `json:"most_missed"`
}

// reportRoutes registers the report and export routes with the broadcast
// routes (village head and admin; the audit export stays admin-only at GET
// /api/v1/audit).
func (s *Server) reportRoutes() {
	heads := []auth.Role{auth.RoleAdmin, auth.RoleHead}
	s.Handle("GET /api/v1/reports/monthly", s.handleMonthly, heads...)
	s.Handle("GET /api/v1/reports/playout", s.handlePlayout, heads...)
}

func ratio(played, expected uint64) float64 {
	if expected == 0 {
		return 1
	}
	return float64(played) / float64(expected)
}

// airTime is how long a broadcast was on air: start to end, or to now
// while it plays; zero if it never started.
func airTime(b broadcast.Record, now time.Time) time.Duration {
	if b.Started.IsZero() {
		return 0
	}
	end := b.Ended
	if end.IsZero() {
		end = now
	}
	return max(end.Sub(b.Started), 0)
}

// buildMonthly computes the report from the play-out log of [from, until).
func (s *Server) buildMonthly(from, until time.Time, lang string) (MonthlyReport, error) {
	raws, err := s.db.PlayoutRange(from, until, 0)
	if err != nil {
		return MonthlyReport{}, err
	}
	devZones := map[string][]string{}
	if s.devices != nil {
		for _, d := range s.devices.List() {
			devZones[d.ID] = d.Zones
		}
	}
	zones := map[string]*ZoneReport{}
	speakers := map[string]*SpeakerReport{}
	rep := MonthlyReport{Language: lang, From: from, Until: until}
	now := s.now()
	for _, raw := range raws {
		var b broadcast.Record
		if err := json.Unmarshal(raw, &b); err != nil {
			return rep, fmt.Errorf("monthly report: %w", err)
		}
		bl := b.Language
		if bl == "" {
			bl = media.DefaultLanguage
		}
		if lang != "" && bl != lang {
			continue
		}
		rep.Broadcasts++
		air := airTime(b, now).Seconds()
		prio := string(b.Priority)
		if prio == "" {
			prio = wire.PriorityNormal
		}
		for _, z := range b.Zones {
			zr := zones[z]
			if zr == nil {
				zr = &ZoneReport{Zone: z, ByPriority: map[string]float64{}, ByLanguage: map[string]float64{}}
				zones[z] = zr
			}
			zr.Broadcasts++
			zr.AirSeconds += air
			zr.ByPriority[prio] += air
			zr.ByLanguage[bl] += air
		}
		for _, d := range b.Devices {
			sr := speakers[d.ID]
			if sr == nil {
				sr = &SpeakerReport{ID: d.ID, Zones: devZones[d.ID]}
				if sr.Zones == nil {
					sr.Zones = []string{}
				}
				speakers[d.ID] = sr
			}
			sr.Broadcasts++
			sr.FramesExpected += d.FramesExpected
			sr.FramesPlayed += d.FramesPlayed
			sr.FramesLate += d.FramesLate
			sr.FramesLost += d.FramesLost
			// A speaker's frames count in the broadcast's zones it belongs to.
			for _, z := range b.Zones {
				if slices.Contains(devZones[d.ID], z) {
					zones[z].FramesExpected += d.FramesExpected
					zones[z].FramesPlayed += d.FramesPlayed
				}
			}
		}
	}
	rep.Zones = []ZoneReport{}
	for _, zr := range zones {
		zr.Delivery = ratio(zr.FramesPlayed, zr.FramesExpected)
		rep.Zones = append(rep.Zones, *zr)
	}
	sort.Slice(rep.Zones, func(i, j int) bool { return rep.Zones[i].Zone < rep.Zones[j].Zone })
	rep.Speakers = []SpeakerReport{}
	for _, sr := range speakers {
		if sr.FramesExpected > sr.FramesPlayed {
			sr.Missed = sr.FramesExpected - sr.FramesPlayed
		}
		sr.Delivery = ratio(sr.FramesPlayed, sr.FramesExpected)
		rep.Speakers = append(rep.Speakers, *sr)
	}
	sort.Slice(rep.Speakers, func(i, j int) bool { return rep.Speakers[i].ID < rep.Speakers[j].ID })
	rep.MostMissed = []SpeakerReport{}
	for _, sr := range rep.Speakers {
		if sr.Missed > 0 {
			rep.MostMissed = append(rep.MostMissed, sr)
		}
	}
	sort.SliceStable(rep.MostMissed, func(i, j int) bool { return rep.MostMissed[i].Missed > rep.MostMissed[j].Missed })
	rep.MostMissed = rep.MostMissed[:min(5, len(rep.MostMissed))]
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
	rep, err := s.buildMonthly(start, start.AddDate(0, 1, 0), lang)
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
	raws, err := s.db.PlayoutRange(since, until, 0)
	if err != nil {
		writeError(w, r, err)
		return
	}
	recs := make([]broadcast.Record, 0, len(raws))
	for _, raw := range raws {
		var b broadcast.Record
		if err := json.Unmarshal(raw, &b); err != nil {
			writeError(w, r, fmt.Errorf("play-out log: %w", err))
			return
		}
		if b.Language == "" {
			b.Language = media.DefaultLanguage
		}
		if lang == "" || b.Language == lang {
			recs = append(recs, b)
		}
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
			string(b.Priority), b.Language, csvCell(b.Actor), string(b.Origin), csvCell(b.ScheduleID), strconv.FormatFloat(airTime(b, s.now()).Seconds(), 'f', 1, 64),
			strconv.Itoa(len(b.Devices)), strconv.FormatUint(e, 10), strconv.FormatUint(p, 10), strconv.FormatUint(l, 10), strconv.FormatUint(lo, 10)})
	}
	cw.Flush()
}
