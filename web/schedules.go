package web

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/loalang/loalang/audit"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/broadcast/media"
	"github.com/loalang/loalang/broadcast/schedule"
	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/internal/egress"
	"github.com/loalang/loalang/store"
)

// ScheduleDeps enables the schedule routes.
type ScheduleDeps struct {
	// Store reads firing records; schedules themselves are read and written
	// through the server's DB so each change commits with its audit entry.
	Store *store.ScheduleStore
	// Reload tells the running scheduler that schedules changed; it is
	// called after the change has been committed.
	Reload func()
	// KnownZone reports whether a zone exists (configured or wired).
	KnownZone func(string) bool
	// TimeZone is the default IANA zone of new schedules (schedule.time_zone).
	TimeZone string
	// MaxRelay bounds a relay window: the engine ends live streams at
	// broadcast.max_duration, so a longer window would be cut short.
	MaxRelay time.Duration
	// MinInterval is the shortest gap allowed between two occurrences of a
	// recurring schedule (schedule.min_interval); 0 means
	// schedule.DefaultMinInterval.
	MinInterval time.Duration
	// CheckRelayURL, when set, refuses a relay source URL the daemon must
	// not connect to (loopback, link-local, private ranges not allowed by
	// the config); its error is reported on source.url.
	CheckRelayURL func(raw string) error
}

// Bounds of the schedule API.
const (
	maxNext    = 100
	maxFirings = 1000
)

type scheduleAPI struct {
	s *Server
	d ScheduleDeps
}

// EnableSchedules registers the schedule routes (village head and admin):
// list, create, read, replace, delete, the next occurrences and the firing
// log. Writes answer only after the bbolt commit, which carries the audit
// entry (schedule.create, schedule.update, schedule.delete).
func (s *Server) EnableSchedules(d ScheduleDeps) {
	if d.Reload == nil {
		d.Reload = func() {}
	}
	if d.TimeZone == "" {
		d.TimeZone = schedule.DefaultTimeZone
	}
	if d.MinInterval <= 0 {
		d.MinInterval = schedule.DefaultMinInterval
	}
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

func toView(sc schedule.Schedule, now time.Time) ScheduleView {
	en := sc.Enabled
	v := ScheduleView{
		ID: sc.ID, Name: sc.Name, At: formatTime(sc.At), RRule: sc.RRule, Cron: sc.Cron, TimeZone: sc.TimeZone,
		From: formatTime(sc.From), Until: formatTime(sc.Until), Zones: sc.Zones,
		Source:   SourceView{Kind: sc.Source.Kind, MediaID: sc.Source.MediaID, Text: sc.Source.Text, URL: shownURL(sc.Source), Duration: JSONDuration(sc.Source.Duration)},
		Priority: sc.Priority, Volume: sc.Volume, Repeat: sc.Repeat, Chime: sc.Chime, Language: sc.Language, Enabled: &en, Version: sc.Version,
		CreatedBy: sc.CreatedBy, CreatedAt: formatTime(sc.CreatedAt), UpdatedAt: formatTime(sc.UpdatedAt),
	}
	if v.Zones == nil {
		v.Zones = []string{}
	}
	if sc.Enabled {
		if next, err := sc.Next(now, 1); err == nil && len(next) == 1 {
			if loc, err := sc.Location(); err == nil {
				v.Next = next[0].In(loc).Format(time.RFC3339)
			}
		}
	}
	return v
}

// shownURL is a relay URL as the API shows it: without user information
// and with every query value "***", since stations put access tokens there.
// Sent back unchanged in a PUT, it keeps the stored URL (keepRelayURL).
func shownURL(src schedule.Source) string {
	if src.URL == "" {
		return ""
	}
	return egress.Redact(src.URL)
}

// keepRelayURL restores the stored relay URL when a PUT sends back the
// redacted one the API showed.
func keepRelayURL(sc *schedule.Schedule, old schedule.Schedule) {
	if sc.Source.Kind == schedule.SourceRelay && old.Source.Kind == schedule.SourceRelay && sc.Source.URL == shownURL(old.Source) {
		sc.Source.URL = old.Source.URL
	}
}

// fromView builds the domain schedule; the caller stamps id, version and
// the creation fields.
func (a *scheduleAPI) fromView(v ScheduleView) (schedule.Schedule, error) {
	// Languages are checked first, answering 400 like a broadcast: an
	// unknown tag, or text in a language espeak-ng cannot speak.
	if err := media.CheckLanguage(v.Language); err != nil {
		return schedule.Schedule{}, badRequest("%v", err)
	}
	if v.Source.Kind == schedule.SourceText {
		if _, err := media.VoiceFor(v.Language); err != nil {
			return schedule.Schedule{}, badRequest("%v", err)
		}
	}
	sc := schedule.Schedule{
		ID: v.ID, Name: v.Name, RRule: v.RRule, Cron: v.Cron, TimeZone: v.TimeZone, Zones: v.Zones,
		Source:   schedule.Source{Kind: v.Source.Kind, MediaID: v.Source.MediaID, Text: v.Source.Text, URL: v.Source.URL, Duration: time.Duration(v.Source.Duration)},
		Priority: v.Priority, Volume: v.Volume, Repeat: v.Repeat, Chime: v.Chime, Language: v.Language, Enabled: v.Enabled == nil || *v.Enabled,
	}
	if sc.TimeZone == "" {
		sc.TimeZone = a.d.TimeZone
	}
	if sc.Priority == "" {
		sc.Priority = wire.PriorityNormal
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

// check validates sc against the zones and the media library; it must run
// after UpdatedAt is stamped, which "never fires" is judged against.
func (a *scheduleAPI) check(tx *store.Tx, sc *schedule.Schedule) error {
	if err := sc.Validate(a.d.KnownZone); err != nil {
		return err
	}
	if sc.Source.Kind == schedule.SourceRelay && a.d.MaxRelay > 0 && sc.Source.Duration > a.d.MaxRelay {
		return &schedule.FieldError{Field: "source.duration", Reason: fmt.Sprintf("%v is longer than broadcast.max_duration %v", sc.Source.Duration, a.d.MaxRelay)}
	}
	if sc.Source.Kind == schedule.SourceRelay && a.d.CheckRelayURL != nil {
		if err := a.d.CheckRelayURL(sc.Source.URL); err != nil {
			return &schedule.FieldError{Field: "source.url", Reason: "refused", Err: err}
		}
	}
	var mediaLength time.Duration
	if sc.Source.Kind == schedule.SourceMedia {
		var info media.Info
		if err := tx.Get(store.Media, sc.Source.MediaID, &info); err != nil {
			return &schedule.FieldError{Field: "source.media_id", Reason: fmt.Sprintf("no media %q", sc.Source.MediaID)}
		}
		mediaLength = time.Duration(info.DurationMS) * time.Millisecond
		if sc.Language == "" {
			sc.Language = mediaLanguage(info)
		}
	}
	if sc.Language == "" {
		sc.Language = media.DefaultLanguage
	}
	return sc.CheckSpacing(a.d.MinInterval, sc.PlayLength(mediaLength))
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

func newScheduleID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "sch-" + hex.EncodeToString(b)
}

func (a *scheduleAPI) list(w http.ResponseWriter, r *http.Request) {
	// A damaged record is left out here and named in /healthz, from
	// where DELETE removes it.
	list, _, err := store.ListDecodable[schedule.Schedule](a.s.db, store.Schedules, "")
	if err != nil {
		writeError(w, r, err)
		return
	}
	now := a.s.now()
	out := make([]ScheduleView, 0, len(list))
	for _, sc := range list {
		out = append(out, toView(sc, now))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *scheduleAPI) get(w http.ResponseWriter, r *http.Request) {
	sc, err := store.Get[schedule.Schedule](a.s.db, store.Schedules, r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toView(sc, a.s.now()))
}

func (a *scheduleAPI) create(w http.ResponseWriter, r *http.Request) {
	v, err := a.decode(w, r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	sc, err := a.fromView(v)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if sc.ID == "" {
		sc.ID = newScheduleID()
	} else if err := wire.ValidLevel(sc.ID); err != nil {
		writeError(w, r, badRequest("id: %v", err))
		return
	}
	now := a.s.now()
	user := UserFrom(r.Context()).Username
	sc.Version, sc.CreatedBy, sc.CreatedAt, sc.UpdatedAt = 1, user, now, now
	err = a.s.db.Update(func(tx *store.Tx) error {
		if tx.Exists(store.Schedules, sc.ID) {
			return fmt.Errorf("schedule %q: %w", sc.ID, errConflict)
		}
		if err := a.check(tx, &sc); err != nil {
			return err
		}
		if err := tx.Put(store.Schedules, sc.ID, sc); err != nil {
			return err
		}
		return tx.AppendAudit(store.Event{Time: now, Actor: user, Action: audit.ScheduleCreate, Target: sc.ID, Detail: auditDetail(sc)})
	})
	if err != nil {
		writeScheduleErr(w, r, err)
		return
	}
	a.d.Reload()
	writeJSON(w, http.StatusCreated, toView(sc, now))
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
	sc, err := a.fromView(v)
	if err != nil {
		writeError(w, r, err)
		return
	}
	now := a.s.now()
	user := UserFrom(r.Context()).Username
	err = a.s.db.Update(func(tx *store.Tx) error {
		var old schedule.Schedule
		if err := tx.Get(store.Schedules, id, &old); err != nil {
			return err
		}
		// Optimistic concurrency: a client that read version N may only
		// replace version N (0 skips the check).
		if v.Version != 0 && v.Version != old.Version {
			return fmt.Errorf("schedule %q is at version %d, not %d: %w", id, old.Version, v.Version, errConflict)
		}
		sc.Version, sc.CreatedBy, sc.CreatedAt, sc.UpdatedAt = old.Version+1, old.CreatedBy, old.CreatedAt, now
		keepRelayURL(&sc, old)
		if err := a.check(tx, &sc); err != nil {
			return err
		}
		if err := tx.Put(store.Schedules, id, sc); err != nil {
			return err
		}
		return tx.AppendAudit(store.Event{Time: now, Actor: user, Action: audit.ScheduleUpdate, Target: id, Detail: auditDetail(sc)})
	})
	if err != nil {
		writeScheduleErr(w, r, err)
		return
	}
	a.d.Reload()
	writeJSON(w, http.StatusOK, toView(sc, now))
}

func (a *scheduleAPI) remove(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	now := a.s.now()
	user := UserFrom(r.Context()).Username
	err := a.s.db.Update(func(tx *store.Tx) error {
		var old schedule.Schedule
		detail := map[string]any{}
		switch err := tx.Get(store.Schedules, id, &old); {
		case errors.Is(err, store.ErrCorrupt):
			detail["damaged"] = true // removable, so it can be re-created
		case err != nil:
			return err
		default:
			detail["name"], detail["version"] = old.Name, old.Version
		}
		if err := tx.Delete(store.Schedules, id); err != nil {
			return err
		}
		return tx.AppendAudit(store.Event{Time: now, Actor: user, Action: audit.ScheduleDelete, Target: id, Detail: detail})
	})
	if err != nil {
		writeError(w, r, err)
		return
	}
	a.d.Reload()
	w.WriteHeader(http.StatusNoContent)
}

// nextCount reads ?n=, the firings to list: 5 unless given, at most maxNext.
func nextCount(r *http.Request) (int, error) {
	q := r.URL.Query().Get("n")
	if q == "" {
		return 5, nil
	}
	n, err := strconv.Atoi(q)
	if err != nil || n < 1 || n > maxNext {
		return 0, badRequest("n: %q is not a count in 1–%d", q, maxNext)
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
	sc, err := store.Get[schedule.Schedule](a.s.db, store.Schedules, r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	loc, err := sc.Location()
	if err != nil {
		writeScheduleErr(w, r, err)
		return
	}
	times, err := sc.Next(a.s.now(), n)
	if err != nil {
		writeScheduleErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": sc.ID, "enabled": sc.Enabled, "time_zone": loc.String(), "next": inZone(times, loc)})
}

// preview answers the next five firings (or ?n=) of a schedule as the form
// has it, before it is saved, from the scheduler's own expansion
// (schedule.Schedule.Preview). Editing a stored schedule keeps its
// creation time, which an RRULE without DTSTART counts from.
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
	sc, err := a.fromView(v)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if v.ID != "" {
		if old, err := store.Get[schedule.Schedule](a.s.db, store.Schedules, v.ID); err == nil {
			sc.CreatedAt = old.CreatedAt
		}
	}
	loc, err := sc.Location()
	if err != nil {
		writeScheduleErr(w, r, err)
		return
	}
	times, err := sc.Preview(a.s.now(), n)
	if err != nil {
		writeScheduleErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"time_zone": loc.String(), "next": inZone(times, loc)})
}

func (a *scheduleAPI) firings(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if q := r.URL.Query().Get("limit"); q != "" {
		v, err := strconv.Atoi(q)
		if err != nil || v < 1 || v > maxFirings {
			writeError(w, r, badRequest("limit: %q is not a count in 1–%d", q, maxFirings))
			return
		}
		limit = v
	}
	id := r.PathValue("id")
	list, err := a.d.Store.Firings(id, limit)
	if err != nil {
		writeError(w, r, err)
		return
	}
	exists := false
	a.s.db.View(func(tx *store.Tx) error { exists = tx.Exists(store.Schedules, id); return nil })
	if len(list) == 0 && !exists {
		writeError(w, r, fmt.Errorf("schedule %q: %w", id, errNotFound))
		return
	}
	writeJSON(w, http.StatusOK, nonNil(list))
}

// auditDetail is what a schedule change records: enough to see what was
// scheduled, never a credential in a relay URL.
func auditDetail(sc schedule.Schedule) map[string]any {
	d := map[string]any{"name": sc.Name, "version": sc.Version, "zones": sc.Zones, "priority": sc.Priority,
		"source": sc.Source.Kind, "enabled": sc.Enabled, "language": sc.Language}
	switch {
	case !sc.At.IsZero():
		d["at"] = sc.At.UTC().Format(time.RFC3339)
	case sc.RRule != "":
		d["rrule"] = sc.RRule
	default:
		d["cron"] = sc.Cron
	}
	if sc.Source.Kind == schedule.SourceRelay {
		d["url"] = egress.Redact(sc.Source.URL)
	}
	return d
}
