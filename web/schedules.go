package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/broadcast/schedule"
)

// ScheduleDeps enables the schedule routes.
type ScheduleDeps struct {
	// Service owns the timetable's rules and persistence; every change it
	// makes commits with its audit entry.
	Service *schedule.Service
}

type scheduleAPI struct {
	s *Server
	d ScheduleDeps
}

// EnableSchedules registers the schedule routes (village head and admin):
// list, create, read, replace, delete, the next occurrences and the firing
// log. Writes answer only after the bbolt commit, which carries the audit
// entry (schedule.create, schedule.update, schedule.delete).
func (s *Server) EnableSchedules(d ScheduleDeps) {
	a := &scheduleAPI{s: s, d: d}
	heads := []auth.Role{auth.RoleAdmin, auth.RoleHead}
	s.Handle("GET /api/v1/schedules", a.list, heads...)
	s.Handle("POST /api/v1/schedules", a.create, heads...)
	s.Handle("GET /api/v1/schedules/{id}", a.get, heads...)
	s.Handle("PUT /api/v1/schedules/{id}", a.update, heads...)
	s.Handle("DELETE /api/v1/schedules/{id}", a.remove, heads...)
	s.Handle("GET /api/v1/schedules/{id}/next", a.next, heads...)
	s.Handle("POST /api/v1/schedules/preview", a.preview, heads...)
	s.Handle("GET /api/v1/schedules/{id}/firings", a.firings, heads...)
}

// ScheduleView is a schedule as the API reads and writes it. It differs
// from schedule.Schedule where people type: times are RFC 3339 strings
// (parsed here so a bad one is reported by field), the relay duration is a
// Go duration string such as "30m" (or a number of seconds), enabled
// defaults to true and priority to normal. created_*, updated_at and next
// are read-only: accepted on input so a GET can be edited and PUT back, and
// ignored.
type ScheduleView struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	At        string     `json:"at,omitempty"`
	RRule     string     `json:"rrule,omitempty"`
	Cron      string     `json:"cron,omitempty"`
	TimeZone  string     `json:"time_zone,omitempty"`
	From      string     `json:"from,omitempty"`
	Until     string     `json:"until,omitempty"`
	Zones     []string   `json:"zones"`
	Source    SourceView `json:"source"`
	Priority  string     `json:"priority,omitempty"`
	Volume    int        `json:"volume"`
	Repeat    int        `json:"repeat,omitempty"`
	Chime     bool       `json:"chime,omitempty"`
	Language  string     `json:"language,omitempty"`
	Enabled   *bool      `json:"enabled,omitempty"`
	Version   int        `json:"version,omitempty"`
	CreatedBy string     `json:"created_by,omitempty"`
	CreatedAt string     `json:"created_at,omitempty"`
	UpdatedAt string     `json:"updated_at,omitempty"`
	Next      string     `json:"next,omitempty"`
}

// SourceView is schedule.Source with a readable duration.
type SourceView struct {
	Kind     string       `json:"kind"`
	MediaID  string       `json:"media_id,omitempty"`
	Text     string       `json:"text,omitempty"`
	URL      string       `json:"url,omitempty"`
	Duration JSONDuration `json:"duration,omitempty"`
}

// JSONDuration is a duration written as a Go duration string ("30m",
// "1h30m"); a bare JSON number is read as seconds.
type JSONDuration time.Duration

// MarshalJSON implements json.Marshaler.
func (d JSONDuration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON implements json.Unmarshaler.
func (d *JSONDuration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("source.duration: %q is not a duration like 30m", s)
		}
		*d = JSONDuration(v)
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return errors.New("source.duration: want a duration string like \"30m\" or seconds")
	}
	*d = JSONDuration(secs * float64(time.Second))
	return nil
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.RFC3339Nano)
}

func parseField(field, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, badRequest("%s: %q is not an RFC 3339 time such as 2026-03-01T06:00:00+07:00", field, v)
	}
	return t, nil
}

func (a *scheduleAPI) toView(sc schedule.Schedule, now time.Time) ScheduleView {
	en := sc.Enabled
	v := ScheduleView{
		ID: sc.ID, Name: sc.Name, At: formatTime(sc.At), RRule: sc.RRule, Cron: sc.Cron, TimeZone: sc.TimeZone,
		From: formatTime(sc.From), Until: formatTime(sc.Until), Zones: sc.Zones,
		Source:   SourceView{Kind: sc.Source.Kind, MediaID: sc.Source.MediaID, Text: sc.Source.Text, URL: schedule.ShownURL(sc.Source), Duration: JSONDuration(sc.Source.Duration)},
		Priority: sc.Priority, Volume: sc.Volume, Repeat: sc.Repeat, Chime: sc.Chime, Language: sc.Language, Enabled: &en, Version: sc.Version,
		CreatedBy: sc.CreatedBy, CreatedAt: formatTime(sc.CreatedAt), UpdatedAt: formatTime(sc.UpdatedAt),
	}
	if v.Zones == nil {
		v.Zones = []string{}
	}
	if next := a.d.Service.NextOne(sc, now); !next.IsZero() {
		if loc, err := sc.Location(); err == nil {
			v.Next = next.In(loc).Format(time.RFC3339)
		}
	}
	return v
}

// fromView builds the domain schedule from the API's form of it; the
// service fills the defaults and validates it.
func fromView(v ScheduleView) (schedule.Schedule, error) {
	sc := schedule.Schedule{
		ID: v.ID, Name: v.Name, RRule: v.RRule, Cron: v.Cron, TimeZone: v.TimeZone, Zones: v.Zones,
		Source:   schedule.Source{Kind: v.Source.Kind, MediaID: v.Source.MediaID, Text: v.Source.Text, URL: v.Source.URL, Duration: time.Duration(v.Source.Duration)},
		Priority: v.Priority, Volume: v.Volume, Repeat: v.Repeat, Chime: v.Chime, Language: v.Language, Enabled: v.Enabled == nil || *v.Enabled,
	}
	var err error
	for _, f := range []struct {
		name string
		in   string
		out  *time.Time
	}{{"at", v.At, &sc.At}, {"from", v.From, &sc.From}, {"until", v.Until, &sc.Until}} {
		if *f.out, err = parseField(f.name, f.in); err != nil {
			return sc, err
		}
	}
	return sc, nil
}

// writeScheduleErr adds the offending field to validation errors.
func writeScheduleErr(w http.ResponseWriter, r *http.Request, err error) {
	var fe *schedule.FieldError
	if errors.As(err, &fe) {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": err.Error(), "field": fe.Field})
		return
	}
	writeError(w, r, err)
}

func (a *scheduleAPI) decode(w http.ResponseWriter, r *http.Request) (ScheduleView, error) {
	var v ScheduleView
	if err := a.s.decode(w, r, &v); err != nil {
		// Errors from JSONDuration already name the field; keep them short.
		if msg := err.Error(); strings.Contains(msg, "source.duration: ") {
			return v, badRequest("%s", msg[strings.Index(msg, "source.duration: "):])
		}
		return v, err
	}
	return v, nil
}

func (a *scheduleAPI) list(w http.ResponseWriter, r *http.Request) {
	list, err := a.d.Service.List(r.Context())
	if err != nil {
		writeError(w, r, err)
		return
	}
	now := a.d.Service.Now()
	out := make([]ScheduleView, 0, len(list))
	for _, sc := range list {
		out = append(out, a.toView(sc, now))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *scheduleAPI) get(w http.ResponseWriter, r *http.Request) {
	sc, err := a.d.Service.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a.toView(sc, a.d.Service.Now()))
}

func (a *scheduleAPI) create(w http.ResponseWriter, r *http.Request) {
	v, err := a.decode(w, r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	sc, err := fromView(v)
	if err != nil {
		writeError(w, r, err)
		return
	}
	sc, err = a.d.Service.Create(r.Context(), UserFrom(r.Context()).Username, sc)
	if err != nil {
		writeScheduleErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, a.toView(sc, a.d.Service.Now()))
}

func (a *scheduleAPI) update(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	v, err := a.decode(w, r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if v.ID != "" && v.ID != id {
		writeError(w, r, badRequest("id: %q does not match the URL's %q", v.ID, id))
		return
	}
	v.ID = id
	sc, err := fromView(v)
	if err != nil {
		writeError(w, r, err)
		return
	}
	sc, err = a.d.Service.Update(r.Context(), UserFrom(r.Context()).Username, sc, v.Version)
	if err != nil {
		writeScheduleErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a.toView(sc, a.d.Service.Now()))
}

func (a *scheduleAPI) remove(w http.ResponseWriter, r *http.Request) {
	if err := a.d.Service.Delete(r.Context(), UserFrom(r.Context()).Username, r.PathValue("id")); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// nextCount reads ?n=, the firings to list: 5 unless given, at most
// schedule.MaxNext.
func nextCount(r *http.Request) (int, error) {
	q := r.URL.Query().Get("n")
	if q == "" {
		return 5, nil
	}
	n, err := strconv.Atoi(q)
	if err != nil || n < 1 || n > schedule.MaxNext {
		return 0, badRequest("n: %q is not a count in 1–%d", q, schedule.MaxNext)
	}
	return n, nil
}

// inZone formats firing times in the schedule's zone (RFC 3339).
func inZone(times []time.Time, loc *time.Location) []string {
	out := make([]string, 0, len(times))
	for _, t := range times {
		out = append(out, t.In(loc).Format(time.RFC3339))
	}
	return out
}

func (a *scheduleAPI) next(w http.ResponseWriter, r *http.Request) {
	n, err := nextCount(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	up, err := a.d.Service.Next(r.Context(), r.PathValue("id"), n)
	if err != nil {
		writeScheduleErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": up.Schedule.ID, "enabled": up.Schedule.Enabled, "time_zone": up.Location.String(), "next": inZone(up.Times, up.Location)})
}

// preview answers the next five firings (or ?n=) of a schedule as the form
// has it, before it is saved (schedule.Service.Preview).
func (a *scheduleAPI) preview(w http.ResponseWriter, r *http.Request) {
	n, err := nextCount(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	v, err := a.decode(w, r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	sc, err := fromView(v)
	if err != nil {
		writeError(w, r, err)
		return
	}
	up, err := a.d.Service.Preview(r.Context(), sc, n)
	if err != nil {
		writeScheduleErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"time_zone": up.Location.String(), "next": inZone(up.Times, up.Location)})
}

func (a *scheduleAPI) firings(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if q := r.URL.Query().Get("limit"); q != "" {
		v, err := strconv.Atoi(q)
		if err != nil || v < 1 || v > schedule.MaxFirings {
			writeError(w, r, badRequest("limit: %q is not a count in 1–%d", q, schedule.MaxFirings))
			return
		}
		limit = v
	}
	list, err := a.d.Service.Firings(r.Context(), r.PathValue("id"), limit)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, nonNil(list))
}
