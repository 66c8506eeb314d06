package schedule

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/loalang/loalang/audit"
	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/internal/egress"
)

// Bounds of the service's listings.
const (
	// MaxNext bounds the occurrences Next and Preview list.
	MaxNext = 100
	// MaxFirings bounds the firing records Firings returns.
	MaxFirings = 1000
)

// Tx is one read-write transaction of the timetable's store, as the
// service sees it while it validates and writes a change.
type Tx interface {
	// Get returns one schedule: an error matching ErrNotFound when there is
	// none, ErrDamaged when the record does not decode.
	Get(id string) (Schedule, error)
	// Media returns the length and the language of a stored recording, or
	// an error when there is no such recording.
	Media(id string) (length time.Duration, language string, err error)
	// Put writes a schedule under its id.
	Put(s Schedule) error
	// Delete removes a schedule; it fails with ErrNotFound when none exists.
	Delete(id string) error
}

// Records is the service's persistence (a port): the store implements it
// over bbolt. Change commits what fn wrote and the audit entry fn returns in
// one transaction, so a schedule change and its audit entry are never
// recorded apart; an error from fn rolls both back.
type Records interface {
	// List returns the schedules that decode, ordered by id, and the ids
	// of those that do not.
	List(ctx context.Context) (list []Schedule, damaged []string, err error)
	// Get is Tx.Get in a read-only transaction.
	Get(ctx context.Context, id string) (Schedule, error)
	// Exists reports whether a record (damaged or not) is stored under id.
	Exists(ctx context.Context, id string) (bool, error)
	// Change runs fn in one read-write transaction.
	Change(ctx context.Context, fn func(tx Tx) (audit.Entry, error)) error
	// Firings returns a schedule's firing records, newest first, at most
	// limit of them (0: all).
	Firings(scheduleID string, limit int) ([]Firing, error)
}

// ServiceConfig tunes the service; only the zero-value defaults noted are
// filled in.
type ServiceConfig struct {
	// KnownZone reports whether a zone exists (configured or wired); nil
	// accepts any zone.
	KnownZone func(string) bool
	// TimeZone is the IANA zone of a schedule that names none
	// (schedule.time_zone); empty means DefaultTimeZone.
	TimeZone string
	// MaxRelay bounds a relay window: the engine ends live streams at
	// broadcast.max_duration, so a longer window would be cut short. 0
	// leaves only MaxRelayDuration.
	MaxRelay time.Duration
	// MinInterval is the shortest gap between two occurrences of a
	// recurring schedule (schedule.min_interval); 0 means
	// DefaultMinInterval.
	MinInterval time.Duration
	// CheckRelayURL, when set, refuses a relay URL the daemon must not
	// connect to (loopback, link-local, private ranges not allowed by the
	// config); its error is reported on source.url.
	CheckRelayURL func(raw string) error
	// CheckLanguage refuses an unknown language tag; CheckVoice refuses a
	// language text-to-speech cannot speak. Their errors are returned as
	// they are (the media package's). Nil accepts every language.
	CheckLanguage func(code string) error
	CheckVoice    func(code string) error
	// DefaultLanguage is the language of a schedule that names none and
	// whose recording names none.
	DefaultLanguage string
	// Now is the timetable's clock (the scheduler's); nil means time.Now.
	Now func() time.Time
	// Reload tells the running scheduler that the schedules changed; it is
	// called after each committed change.
	Reload func()
	// Damaged, if set, is told after every listing which records do not
	// decode: an error naming them, or nil when none. The daemon shows it
	// in /healthz (component "schedules").
	Damaged func(err error)
}

// Service is the village timetable's one way in, for the web API, the CLI
// and the uplink alike. It owns the rules of a schedule change: the
// defaults (time zone, priority, language from the recording), the
// validation (zones, recurrence, relay window within
// broadcast.max_duration, relay URLs the egress policy allows, languages
// and voices, the recording's existence, spacing against
// schedule.min_interval), the ids of new schedules, optimistic concurrency
// on replace (version), keeping a relay URL the API showed redacted, the
// audit entries (schedule.create, schedule.update, schedule.delete),
// committed with the change, and what they record; the deletion of a
// damaged record; the next occurrences and the preview of an unsaved
// schedule; and the report of damaged records. It also serves the
// scheduler its schedules (Schedules), so the scheduler and the API read
// the timetable the same way.
type Service struct {
	cfg     ServiceConfig
	records Records
}

// NewService returns the service over records.
func NewService(records Records, cfg ServiceConfig) *Service {
	if cfg.TimeZone == "" {
		cfg.TimeZone = DefaultTimeZone
	}
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = DefaultMinInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Reload == nil {
		cfg.Reload = func() {}
	}
	return &Service{cfg: cfg, records: records}
}

// Now reads the timetable's clock.
func (s *Service) Now() time.Time { return s.cfg.Now() }

// List returns every schedule that decodes, ordered by id. A damaged
// record is left out here and reported to ServiceConfig.Damaged, from
// where Delete removes it.
func (s *Service) List(ctx context.Context) ([]Schedule, error) {
	list, damaged, err := s.records.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	if s.cfg.Damaged != nil {
		s.cfg.Damaged(DamagedError(damaged))
	}
	return list, nil
}

// Schedules implements the scheduler's read of Store: List.
func (s *Service) Schedules(ctx context.Context) ([]Schedule, error) { return s.List(ctx) }

// DamagedError is the fault of the schedule records that do not decode,
// or nil when ids is empty: it names them and says how to repair them.
func DamagedError(ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	return fmt.Errorf("schedule records that do not decode are not run: %s; delete them (DELETE /api/v1/schedules/<id>) and create them again, or restore a backup (loalangd restore)", strings.Join(ids, ", "))
}

// Get returns one schedule.
func (s *Service) Get(ctx context.Context, id string) (Schedule, error) {
	return s.records.Get(ctx, id)
}

// NewID returns a random id for a schedule created without one.
func NewID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return "sch-" + hex.EncodeToString(b)
}

// normalize checks the language and fills the defaults of an input
// schedule: the time zone and the priority.
func (s *Service) normalize(sc *Schedule) error {
	// Languages are checked first, answering like a broadcast: an unknown
	// tag, or text in a language espeak-ng cannot speak.
	if s.cfg.CheckLanguage != nil {
		if err := s.cfg.CheckLanguage(sc.Language); err != nil {
			return err
		}
	}
	if sc.Source.Kind == SourceText && s.cfg.CheckVoice != nil {
		if err := s.cfg.CheckVoice(sc.Language); err != nil {
			return err
		}
	}
	if sc.TimeZone == "" {
		sc.TimeZone = s.cfg.TimeZone
	}
	if sc.Priority == "" {
		sc.Priority = wire.PriorityNormal
	}
	return nil
}

// check validates sc against the zones, the limits and the media library;
// it must run after UpdatedAt is stamped, which "never fires" is judged
// against. It fills the language from the recording.
func (s *Service) check(tx Tx, sc *Schedule) error {
	if err := sc.Validate(s.cfg.KnownZone); err != nil {
		return err
	}
	if sc.Source.Kind == SourceRelay && s.cfg.MaxRelay > 0 && sc.Source.Duration > s.cfg.MaxRelay {
		return &FieldError{Field: "source.duration", Reason: fmt.Sprintf("%v is longer than broadcast.max_duration %v", sc.Source.Duration, s.cfg.MaxRelay)}
	}
	if sc.Source.Kind == SourceRelay && s.cfg.CheckRelayURL != nil {
		if err := s.cfg.CheckRelayURL(sc.Source.URL); err != nil {
			return &FieldError{Field: "source.url", Reason: "refused", Err: err}
		}
	}
	var mediaLength time.Duration
	if sc.Source.Kind == SourceMedia {
		length, lang, err := tx.Media(sc.Source.MediaID)
		if err != nil {
			return &FieldError{Field: "source.media_id", Reason: fmt.Sprintf("no media %q", sc.Source.MediaID)}
		}
		mediaLength = length
		if sc.Language == "" {
			sc.Language = lang
		}
	}
	if sc.Language == "" {
		sc.Language = s.cfg.DefaultLanguage
	}
	return sc.CheckSpacing(s.cfg.MinInterval, sc.PlayLength(mediaLength))
}

// Create validates and stores a new schedule by actor, with its audit
// entry, and returns it as stored (version 1). An empty id is generated;
// a taken one is ErrConflict.
func (s *Service) Create(ctx context.Context, actor string, sc Schedule) (Schedule, error) {
	if err := s.normalize(&sc); err != nil {
		return Schedule{}, err
	}
	if sc.ID == "" {
		sc.ID = NewID()
	} else if err := wire.ValidLevel(sc.ID); err != nil {
		return Schedule{}, &InputError{Msg: fmt.Sprintf("id: %v", err)}
	}
	now := s.cfg.Now()
	sc.Version, sc.CreatedBy, sc.CreatedAt, sc.UpdatedAt = 1, actor, now, now
	err := s.records.Change(ctx, func(tx Tx) (audit.Entry, error) {
		switch _, err := tx.Get(sc.ID); {
		case err == nil, errors.Is(err, ErrDamaged):
			return audit.Entry{}, fmt.Errorf("schedule %q: %w", sc.ID, ErrConflict)
		case !errors.Is(err, ErrNotFound):
			return audit.Entry{}, err
		}
		if err := s.check(tx, &sc); err != nil {
			return audit.Entry{}, err
		}
		if err := tx.Put(sc); err != nil {
			return audit.Entry{}, err
		}
		return audit.Entry{Time: now, Actor: actor, Action: audit.ScheduleCreate, Target: sc.ID, Detail: AuditDetail(sc)}, nil
	})
	if err != nil {
		return Schedule{}, err
	}
	s.cfg.Reload()
	return sc, nil
}

// Update replaces schedule sc.ID by actor, with its audit entry. A
// non-zero version must be the stored one (optimistic concurrency: a
// client that read version N may only replace version N), else
// ErrConflict. The creation fields are kept, the version incremented, and
// a relay URL sent back as the API showed it (redacted) keeps the stored
// one.
func (s *Service) Update(ctx context.Context, actor string, sc Schedule, version int) (Schedule, error) {
	if err := s.normalize(&sc); err != nil {
		return Schedule{}, err
	}
	now := s.cfg.Now()
	id := sc.ID
	err := s.records.Change(ctx, func(tx Tx) (audit.Entry, error) {
		old, err := tx.Get(id)
		if err != nil {
			return audit.Entry{}, err
		}
		if version != 0 && version != old.Version {
			return audit.Entry{}, fmt.Errorf("schedule %q is at version %d, not %d: %w", id, old.Version, version, ErrConflict)
		}
		sc.Version, sc.CreatedBy, sc.CreatedAt, sc.UpdatedAt = old.Version+1, old.CreatedBy, old.CreatedAt, now
		if sc.Source.Kind == SourceRelay && old.Source.Kind == SourceRelay && sc.Source.URL == ShownURL(old.Source) {
			sc.Source.URL = old.Source.URL
		}
		if err := s.check(tx, &sc); err != nil {
			return audit.Entry{}, err
		}
		if err := tx.Put(sc); err != nil {
			return audit.Entry{}, err
		}
		return audit.Entry{Time: now, Actor: actor, Action: audit.ScheduleUpdate, Target: id, Detail: AuditDetail(sc)}, nil
	})
	if err != nil {
		return Schedule{}, err
	}
	s.cfg.Reload()
	return sc, nil
}

// Delete removes a schedule by actor, with its audit entry. A damaged
// record can be deleted, so it can be created again.
func (s *Service) Delete(ctx context.Context, actor, id string) error {
	now := s.cfg.Now()
	err := s.records.Change(ctx, func(tx Tx) (audit.Entry, error) {
		detail := map[string]any{}
		switch old, err := tx.Get(id); {
		case errors.Is(err, ErrDamaged):
			detail["damaged"] = true
		case err != nil:
			return audit.Entry{}, err
		default:
			detail["name"], detail["version"] = old.Name, old.Version
		}
		if err := tx.Delete(id); err != nil {
			return audit.Entry{}, err
		}
		return audit.Entry{Time: now, Actor: actor, Action: audit.ScheduleDelete, Target: id, Detail: detail}, nil
	})
	if err != nil {
		return err
	}
	s.cfg.Reload()
	return nil
}

// Upcoming is a list of occurrences in the schedule's zone.
type Upcoming struct {
	Schedule Schedule
	Location *time.Location
	Times    []time.Time
}

// checkCount refuses a count outside 1–MaxNext.
func checkCount(n int) error {
	if n < 1 || n > MaxNext {
		return &InputError{Msg: fmt.Sprintf("n: %d is not a count in 1–%d", n, MaxNext)}
	}
	return nil
}

// Next returns the next n occurrences of a stored schedule after now.
func (s *Service) Next(ctx context.Context, id string, n int) (Upcoming, error) {
	if err := checkCount(n); err != nil {
		return Upcoming{}, err
	}
	sc, err := s.records.Get(ctx, id)
	if err != nil {
		return Upcoming{}, err
	}
	loc, err := sc.Location()
	if err != nil {
		return Upcoming{}, err
	}
	times, err := sc.Next(s.cfg.Now(), n)
	if err != nil {
		return Upcoming{}, err
	}
	return Upcoming{Schedule: sc, Location: loc, Times: times}, nil
}

// NextOne is the next occurrence of an enabled schedule after now, or the
// zero time when it is disabled or fires no more.
func (s *Service) NextOne(sc Schedule, now time.Time) time.Time {
	if !sc.Enabled {
		return time.Time{}
	}
	next, err := sc.Next(now, 1)
	if err != nil || len(next) != 1 {
		return time.Time{}
	}
	return next[0]
}

// Preview returns the next n firings of a schedule as a form has it,
// before it is saved, from the scheduler's own expansion
// (Schedule.Preview). Editing a stored schedule (sc.ID set) keeps its
// creation time, which an RRULE without DTSTART counts from.
func (s *Service) Preview(ctx context.Context, sc Schedule, n int) (Upcoming, error) {
	if err := checkCount(n); err != nil {
		return Upcoming{}, err
	}
	if err := s.normalize(&sc); err != nil {
		return Upcoming{}, err
	}
	if sc.ID != "" {
		if old, err := s.records.Get(ctx, sc.ID); err == nil {
			sc.CreatedAt = old.CreatedAt
		}
	}
	loc, err := sc.Location()
	if err != nil {
		return Upcoming{}, err
	}
	times, err := sc.Preview(s.cfg.Now(), n)
	if err != nil {
		return Upcoming{}, err
	}
	return Upcoming{Schedule: sc, Location: loc, Times: times}, nil
}

// Firings returns the firing log of a schedule, newest first, at most limit
// (1–MaxFirings) records. A schedule deleted since keeps its log; one that
// neither exists nor has a log is ErrNotFound.
func (s *Service) Firings(ctx context.Context, id string, limit int) ([]Firing, error) {
	if limit < 1 || limit > MaxFirings {
		return nil, &InputError{Msg: fmt.Sprintf("limit: %d is not a count in 1–%d", limit, MaxFirings)}
	}
	list, err := s.records.Firings(id, limit)
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		exists, err := s.records.Exists(ctx, id)
		if err != nil {
			return nil, err
		}
		if !exists {
			return nil, fmt.Errorf("schedule %q: %w", id, ErrNotFound)
		}
	}
	return list, nil
}

// ShownURL is a relay URL as the API shows it: without user information
// and with every query value "***", since stations put access tokens
// there. Sent back unchanged in an Update, it keeps the stored URL.
func ShownURL(src Source) string {
	if src.URL == "" {
		return ""
	}
	return egress.Redact(src.URL)
}

// AuditDetail is what a schedule change records: enough to see what was
// scheduled, never a credential in a relay URL.
func AuditDetail(sc Schedule) map[string]any {
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
	if sc.Source.Kind == SourceRelay {
		d["url"] = egress.Redact(sc.Source.URL)
	}
	return d
}
