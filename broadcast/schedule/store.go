package schedule

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"
)

// Firing outcomes.
const (
	// OutcomeClaimed is written by ClaimFiring just before Trigger.Fire. A
	// record still "claimed" later means the process died between the claim
	// and the engine's answer: the firing may or may not have played, and it
	// is never retried (at-most-once).
	OutcomeClaimed = "claimed"
	// OutcomeFired means Trigger.Fire accepted the firing.
	OutcomeFired = "fired"
	// OutcomeMissed means the occurrence was more than Config.Grace late, or
	// was superseded by a later occurrence, and was not played.
	OutcomeMissed = "missed"
	// OutcomeSkippedQuiet means a normal or background firing fell inside
	// quiet hours and was not played.
	OutcomeSkippedQuiet = "skipped_quiet"
	// OutcomeFailed means Trigger.Fire returned an error.
	OutcomeFailed = "failed"
)

// Firing is the record of one occurrence of one schedule. (ScheduleID,
// Occurrence) is its identity.
type Firing struct {
	ScheduleID string `json:"schedule_id"`
	// Occurrence is the intended time.
	Occurrence time.Time `json:"occurrence"`
	// Fired is when the scheduler acted on the occurrence (handed it to the
	// engine, or decided to skip it).
	Fired   time.Time `json:"fired"`
	Outcome string    `json:"outcome"`
	Detail  string    `json:"detail,omitempty"`
}

// Store is the durable state the scheduler needs. The daemon implements it
// over bbolt; MemStore serves tests.
type Store interface {
	// Schedules lists every schedule (enabled or not).
	Schedules(ctx context.Context) ([]Schedule, error)
	// ClaimFiring durably records f and reports false if (f.ScheduleID,
	// f.Occurrence) was already recorded. The scheduler claims before it
	// fires, which makes each occurrence fire at most once across crashes.
	ClaimFiring(ctx context.Context, f Firing) (bool, error)
	// UpdateFiring overwrites the outcome and detail of a claimed firing.
	UpdateFiring(ctx context.Context, f Firing) error
	// LastOccurrence returns the latest recorded occurrence of a schedule,
	// or the zero time.
	LastOccurrence(ctx context.Context, scheduleID string) (time.Time, error)
}

// MemStore is an in-memory Store. Keep one across Scheduler instances to
// simulate a restart over a durable store.
type MemStore struct {
	mu        sync.Mutex
	schedules map[string]Schedule
	firings   []Firing
	index     map[firingKey]int
}

type firingKey struct {
	id string
	at int64
}

// NewMemStore returns an empty MemStore.
func NewMemStore() *MemStore {
	return &MemStore{schedules: map[string]Schedule{}, index: map[firingKey]int{}}
}

// Put inserts or replaces a schedule.
func (m *MemStore) Put(s Schedule) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s.Zones = slices.Clone(s.Zones)
	m.schedules[s.ID] = s
}

// Delete removes a schedule; its firing records stay.
func (m *MemStore) Delete(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.schedules, id)
}

// Schedules implements Store, ordered by ID.
func (m *MemStore) Schedules(ctx context.Context) ([]Schedule, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Schedule, 0, len(m.schedules))
	for _, s := range m.schedules {
		s.Zones = slices.Clone(s.Zones)
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Schedule) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// ClaimFiring implements Store.
func (m *MemStore) ClaimFiring(ctx context.Context, f Firing) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := firingKey{f.ScheduleID, f.Occurrence.UnixNano()}
	if _, ok := m.index[k]; ok {
		return false, nil
	}
	m.index[k] = len(m.firings)
	m.firings = append(m.firings, f)
	return true, nil
}

// UpdateFiring implements Store.
func (m *MemStore) UpdateFiring(ctx context.Context, f Firing) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	i, ok := m.index[firingKey{f.ScheduleID, f.Occurrence.UnixNano()}]
	if !ok {
		return ErrNotClaimed
	}
	m.firings[i] = f
	return nil
}

// LastOccurrence implements Store.
func (m *MemStore) LastOccurrence(ctx context.Context, scheduleID string) (time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var last time.Time
	for _, f := range m.firings {
		if f.ScheduleID == scheduleID && f.Occurrence.After(last) {
			last = f.Occurrence
		}
	}
	return last, nil
}

// Firings returns every record in claim order.
func (m *MemStore) Firings() []Firing {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.firings)
}

// FiringLog is the firing half of Store: the records of each occurrence.
type FiringLog interface {
	ClaimFiring(ctx context.Context, f Firing) (bool, error)
	UpdateFiring(ctx context.Context, f Firing) error
	LastOccurrence(ctx context.Context, scheduleID string) (time.Time, error)
}

// Runnable is the scheduler's Store: the service's schedules (so damaged
// records are reported the same way to both) and log's firing records.
func (s *Service) Runnable(log FiringLog) Store { return runnable{s, log} }

type runnable struct {
	svc *Service
	FiringLog
}

func (r runnable) Schedules(ctx context.Context) ([]Schedule, error) { return r.svc.Schedules(ctx) }

// Actor is the audit actor of firing outcomes and of scheduled broadcasts.
const Actor = "scheduler"
