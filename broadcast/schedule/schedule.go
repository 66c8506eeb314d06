package schedule

import (
	"fmt"
	"net/url"
	"strings"
	"time"
	// The village box may run a minimal OS image without /usr/share/zoneinfo;
	// embedding the IANA database (about 450 KB) keeps Asia/Ho_Chi_Minh and
	// every other zone resolvable offline.
	_ "time/tzdata"

	"github.com/loalang/loalang/device/wire"
)

// DefaultTimeZone is the IANA zone used when Schedule.TimeZone is empty.
const DefaultTimeZone = "Asia/Ho_Chi_Minh"

// Source kinds.
const (
	// SourceMedia plays a stored recording identified by Source.MediaID.
	SourceMedia = "media"
	// SourceText speaks Source.Text with text-to-speech.
	SourceText = "text"
	// SourceRelay relays a live programme from Source.URL for Source.Duration.
	SourceRelay = "relay"
)

// Limits enforced by Validate.
const (
	// MaxRepeat bounds Schedule.Repeat: more back-to-back plays than this is
	// almost certainly a typo that would tie up the loudspeakers.
	MaxRepeat = 20
	// MaxCount bounds an RRULE COUNT so evaluating a rule whose anchor is far
	// in the past stays cheap (the COUNT-limited set is walked from DTSTART).
	MaxCount = 100000
	// MaxRelayDuration bounds a relay window.
	MaxRelayDuration = 24 * time.Hour
)

// Source says what a firing plays.
type Source struct {
	// Kind is one of SourceMedia, SourceText or SourceRelay.
	Kind string `json:"kind"`
	// MediaID names a stored recording (SourceMedia).
	MediaID string `json:"media_id,omitempty"`
	// Text is spoken by text-to-speech (SourceText).
	Text string `json:"text,omitempty"`
	// URL is the http or https address of a relayed programme (SourceRelay).
	URL string `json:"url,omitempty"`
	// Duration is how long a relay window lasts (SourceRelay).
	Duration time.Duration `json:"duration,omitempty"`
}

// Schedule is one entry of the village timetable. Exactly one of At, RRule
// and Cron says when it fires.
type Schedule struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// At fires once at this instant (RFC 3339 on the wire).
	At time.Time `json:"at,omitzero"`
	// RRule is an RFC 5545 §3.3.10 recurrence rule, e.g.
	// "FREQ=DAILY;BYHOUR=6;BYMINUTE=0", optionally preceded by a
	// "DTSTART[;TZID=...]:..." line (RFC 5545 §3.8.2.4). Without DTSTART the
	// rule starts at From, else at CreatedAt (COUNT and INTERVAL count from
	// there); an omitted BYHOUR/BYMINUTE/BYSECOND then means 0, and an
	// omitted BYDAY (WEEKLY) or BYMONTHDAY (MONTHLY) the anchor's weekday or
	// day in TimeZone.
	RRule string `json:"rrule,omitempty"`
	// Cron is a 5-field ("30 17 * * 1-5") or 6-field (leading seconds) cron
	// expression, or a descriptor such as "@daily". "@every" and TZ= prefixes
	// are rejected: the zone comes from TimeZone.
	Cron string `json:"cron,omitempty"`
	// TimeZone is the IANA zone the rule is expanded in; empty means
	// DefaultTimeZone.
	TimeZone string `json:"time_zone,omitempty"`
	// From and Until bound the occurrences (inclusive); zero means unbounded.
	From  time.Time `json:"from,omitzero"`
	Until time.Time `json:"until,omitzero"`
	// Zones are the loudspeaker zones that play the firing.
	Zones  []string `json:"zones"`
	Source Source   `json:"source"`
	// Priority is one of the wire.Priority* levels (Circular 39/2020/TT-BTTTT).
	Priority string `json:"priority"`
	// Volume in percent, 0–100.
	Volume int `json:"volume"`
	// Repeat plays the source this many times back to back; 0 means 1.
	Repeat int `json:"repeat,omitempty"`
	// Chime plays the pre-announcement chime first.
	Chime bool `json:"chime,omitempty"`
	// Language is the BCP 47 tag of what is said (media.Languages); ""
	// means Vietnamese. The API checks it; reports group air time by it.
	Language  string    `json:"language,omitempty"`
	Enabled   bool      `json:"enabled"`
	Version   int       `json:"version"`
	CreatedBy string    `json:"created_by,omitempty"`
	CreatedAt time.Time `json:"created_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// Location loads the schedule's time zone (DefaultTimeZone when empty).
func (s *Schedule) Location() (*time.Location, error) {
	name := s.TimeZone
	if name == "" {
		name = DefaultTimeZone
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fieldErr("time_zone", fmt.Sprintf("unknown IANA time zone %q", name), err)
	}
	return loc, nil
}

// Validate checks a schedule before it is stored. Every error is a
// *FieldError naming the offending field. knownZone reports whether a zone
// exists; nil skips the zone check. "Never fires" is judged against
// UpdatedAt, or the current time when UpdatedAt is zero, so the API should
// stamp UpdatedAt before validating.
func (s *Schedule) Validate(knownZone func(string) bool) error {
	if strings.TrimSpace(s.ID) == "" {
		return fieldErr("id", "required", nil)
	}
	if strings.TrimSpace(s.Name) == "" {
		return fieldErr("name", "required", nil)
	}
	if _, err := s.Location(); err != nil {
		return err
	}
	n := 0
	if !s.At.IsZero() {
		n++
	}
	if s.RRule != "" {
		n++
	}
	if s.Cron != "" {
		n++
	}
	if n != 1 {
		return fieldErr("at|rrule|cron", fmt.Sprintf("exactly one of at, rrule and cron is required, got %d", n), nil)
	}
	if !s.From.IsZero() && !s.Until.IsZero() && s.Until.Before(s.From) {
		return fieldErr("until", "before from", nil)
	}
	if len(s.Zones) == 0 {
		return fieldErr("zones", "at least one zone is required", nil)
	}
	for i, z := range s.Zones {
		if z == "" || (knownZone != nil && !knownZone(z)) {
			return fieldErr(fmt.Sprintf("zones[%d]", i), fmt.Sprintf("unknown zone %q", z), nil)
		}
	}
	if err := s.Source.validate(); err != nil {
		return err
	}
	if wire.PriorityRank(s.Priority) == 0 {
		return fieldErr("priority", fmt.Sprintf("unknown priority %q", s.Priority), nil)
	}
	if s.Volume < 0 || s.Volume > 100 {
		return fieldErr("volume", fmt.Sprintf("%d outside 0–100", s.Volume), nil)
	}
	if s.Repeat < 0 || s.Repeat > MaxRepeat {
		return fieldErr("repeat", fmt.Sprintf("%d outside 0–%d", s.Repeat, MaxRepeat), nil)
	}
	p, err := s.compile()
	if err != nil {
		return err
	}
	ref := s.UpdatedAt
	if ref.IsZero() {
		ref = time.Now()
	}
	if _, ok := p.iter(ref)(); ok {
		return nil
	}
	// Nothing fires: blame the rule itself if it has no occurrence even
	// without the validity window, otherwise the window.
	bare := *p
	bare.from, bare.until = time.Time{}, time.Time{}
	if _, ok := bare.iter(ref)(); ok {
		if !s.Until.IsZero() {
			return fieldErr("until", "validity window ends before the next occurrence", ErrNeverFires)
		}
		return fieldErr("from", "validity window excludes every occurrence", ErrNeverFires)
	}
	switch {
	case !s.At.IsZero():
		return fieldErr("at", "in the past", ErrNeverFires)
	case s.RRule != "":
		return fieldErr("rrule", "no occurrence after "+ref.UTC().Format(time.RFC3339), ErrNeverFires)
	default:
		return fieldErr("cron", "no occurrence after "+ref.UTC().Format(time.RFC3339), ErrNeverFires)
	}
}

func (src *Source) validate() error {
	switch src.Kind {
	case SourceMedia:
		if strings.TrimSpace(src.MediaID) == "" {
			return fieldErr("source.media_id", "required for a media source", nil)
		}
	case SourceText:
		if strings.TrimSpace(src.Text) == "" {
			return fieldErr("source.text", "required for a text source", nil)
		}
	case SourceRelay:
		u, err := url.Parse(src.URL)
		if err != nil {
			return fieldErr("source.url", "not a URL", err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return fieldErr("source.url", fmt.Sprintf("scheme %q is not http or https", u.Scheme), nil)
		}
		if u.Host == "" {
			return fieldErr("source.url", "missing host", nil)
		}
		if src.Duration <= 0 || src.Duration > MaxRelayDuration {
			return fieldErr("source.duration", fmt.Sprintf("%v outside (0, %v]", src.Duration, MaxRelayDuration), nil)
		}
	default:
		return fieldErr("source.kind", fmt.Sprintf("unknown kind %q", src.Kind), nil)
	}
	return nil
}

// Next returns up to n firing times strictly after after, in UTC. The rule
// is expanded in the schedule's time zone on local wall-clock time, so a
// daily 06:00 stays at 06:00 local across DST changes (RFC 5545 §3.3.10).
func (s *Schedule) Next(after time.Time, n int) ([]time.Time, error) {
	p, err := s.compile()
	if err != nil {
		return nil, err
	}
	var out []time.Time
	next := p.iter(after)
	for len(out) < n {
		t, ok := next()
		if !ok {
			break
		}
		out = append(out, t)
	}
	return out, nil
}

// Preview returns the next n firing times after now of a schedule being
// edited, from the same expansion the scheduler fires by (Next), checking
// only the fields that decide when it fires (time zone, exactly one of at,
// rrule and cron, the validity window), so a form can show the firings
// before the rest is filled in. An unstamped CreatedAt (a new schedule) is
// taken as now, which an RRULE without DTSTART or From counts from.
func (s Schedule) Preview(now time.Time, n int) ([]time.Time, error) {
	if _, err := s.Location(); err != nil {
		return nil, err
	}
	k := 0
	for _, set := range []bool{!s.At.IsZero(), s.RRule != "", s.Cron != ""} {
		if set {
			k++
		}
	}
	if k != 1 {
		return nil, fieldErr("at|rrule|cron", fmt.Sprintf("exactly one of at, rrule and cron is required, got %d", k), nil)
	}
	if !s.From.IsZero() && !s.Until.IsZero() && s.Until.Before(s.From) {
		return nil, fieldErr("until", "before from", nil)
	}
	if s.CreatedAt.IsZero() {
		s.CreatedAt = now
	}
	return s.Next(now, n)
}
