package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/loalang/loalang/audit"
	"github.com/loalang/loalang/broadcast/media"
	"github.com/loalang/loalang/broadcast/schedule"
)

// SchedulerActor is the audit actor of firing outcomes.
const SchedulerActor = schedule.Actor

// ScheduleStore is the timetable's durable state in bbolt: schedules in
// the Schedules bucket (JSON under their id) and firing records in the
// Firings bucket under FiringKey. It implements schedule.Records (the
// schedule service's port: each change commits with its audit entry) and
// schedule.Store (the scheduler's). Every outcome other than "claimed" is
// audited in the transaction that records it, so the firing log and the
// audit trail never disagree.
type ScheduleStore struct {
	db *DB
}

// NewScheduleStore returns the timetable's store over db.
func NewScheduleStore(db *DB) *ScheduleStore { return &ScheduleStore{db: db} }

// scheduleErr adds the schedule package's sentinel to a store error, so
// the service can tell "none" and "damaged" apart without importing store.
func scheduleErr(err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return fmt.Errorf("%w (%w)", err, schedule.ErrNotFound)
	case errors.Is(err, ErrCorrupt):
		return fmt.Errorf("%w (%w)", err, schedule.ErrDamaged)
	}
	return err
}

// List implements schedule.Records.
func (s *ScheduleStore) List(ctx context.Context) ([]schedule.Schedule, []string, error) {
	return ListDecodable[schedule.Schedule](s.db, Schedules, "")
}

// Get implements schedule.Records.
func (s *ScheduleStore) Get(ctx context.Context, id string) (schedule.Schedule, error) {
	sc, err := Get[schedule.Schedule](s.db, Schedules, id)
	return sc, scheduleErr(err)
}

// Exists implements schedule.Records.
func (s *ScheduleStore) Exists(ctx context.Context, id string) (bool, error) {
	exists := false
	err := s.db.View(func(tx *Tx) error { exists = tx.Exists(Schedules, id); return nil })
	return exists, err
}

// Change implements schedule.Records: fn's writes and the audit entry it
// returns commit in one fsync'd bbolt transaction, or neither does.
func (s *ScheduleStore) Change(ctx context.Context, fn func(tx schedule.Tx) (audit.Entry, error)) error {
	return s.db.Update(func(tx *Tx) error {
		e, err := fn(scheduleTx{tx})
		if err != nil {
			return err
		}
		return tx.AppendAudit(e)
	})
}

// scheduleTx is schedule.Tx over a read-write transaction.
type scheduleTx struct{ tx *Tx }

func (t scheduleTx) Get(id string) (schedule.Schedule, error) {
	var sc schedule.Schedule
	err := t.tx.Get(Schedules, id, &sc)
	return sc, scheduleErr(err)
}

func (t scheduleTx) Media(id string) (time.Duration, string, error) {
	var info media.Info
	if err := t.tx.Get(Media, id, &info); err != nil {
		return 0, "", err
	}
	return time.Duration(info.DurationMS) * time.Millisecond, info.Language, nil
}

func (t scheduleTx) Put(sc schedule.Schedule) error { return t.tx.Put(Schedules, sc.ID, sc) }

func (t scheduleTx) Delete(id string) error { return scheduleErr(t.tx.Delete(Schedules, id)) }

// FiringKey is the Firings bucket key of (scheduleID, occurrence): the id, a
// NUL byte, then the occurrence in Unix nanoseconds as a big-endian uint64,
// so one schedule's records are contiguous and sort by occurrence. Schedule
// ids never contain NUL (the API restricts them to [A-Za-z0-9_-]).
func FiringKey(scheduleID string, occurrence time.Time) ([]byte, error) {
	ns := occurrence.UnixNano()
	if ns < 0 || strings.IndexByte(scheduleID, 0) >= 0 || scheduleID == "" {
		return nil, fmt.Errorf("firing key %q at %v: invalid", scheduleID, occurrence)
	}
	k := append([]byte(scheduleID), 0)
	return binary.BigEndian.AppendUint64(k, uint64(ns)), nil
}

func firingPrefix(scheduleID string) []byte { return append([]byte(scheduleID), 0) }

// Schedules implements schedule.Store: every schedule that decodes,
// ordered by id. The daemon gives the scheduler the schedule service's
// Schedules instead, which reports the damaged records.
func (s *ScheduleStore) Schedules(ctx context.Context) ([]schedule.Schedule, error) {
	list, _, err := s.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	return list, nil
}

// ClaimFiring implements schedule.Store: one fsync'd read-write
// transaction checks for the key and inserts it, so two claims of the same
// occurrence, in this process or across a crash, can never both succeed.
func (s *ScheduleStore) ClaimFiring(ctx context.Context, f schedule.Firing) (bool, error) {
	k, err := FiringKey(f.ScheduleID, f.Occurrence)
	if err != nil {
		return false, err
	}
	raw, err := json.Marshal(f)
	if err != nil {
		return false, fmt.Errorf("claim firing: %w", err)
	}
	claimed := false
	err = s.db.Update(func(stx *Tx) error {
		tx := stx.tx
		b := tx.Bucket([]byte(Firings))
		if b.Get(k) != nil {
			return nil
		}
		if err := b.Put(k, raw); err != nil {
			return err
		}
		claimed = true
		if f.Outcome == schedule.OutcomeClaimed {
			return nil
		}
		return (&Tx{tx: tx}).AppendAudit(firingEvent(f))
	})
	if err != nil {
		return false, fmt.Errorf("claim firing %s: %w", f.ScheduleID, err)
	}
	return claimed, nil
}

// UpdateFiring implements schedule.Store: it overwrites a claimed record
// with its outcome and audits it in the same transaction.
func (s *ScheduleStore) UpdateFiring(ctx context.Context, f schedule.Firing) error {
	k, err := FiringKey(f.ScheduleID, f.Occurrence)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("update firing: %w", err)
	}
	err = s.db.Update(func(stx *Tx) error {
		tx := stx.tx
		b := tx.Bucket([]byte(Firings))
		if b.Get(k) == nil {
			return schedule.ErrNotClaimed
		}
		if err := b.Put(k, raw); err != nil {
			return err
		}
		return (&Tx{tx: tx}).AppendAudit(firingEvent(f))
	})
	if err != nil {
		return fmt.Errorf("update firing %s: %w", f.ScheduleID, err)
	}
	return nil
}

func firingEvent(f schedule.Firing) Event {
	d := map[string]any{"occurrence": f.Occurrence.UTC().Format(time.RFC3339Nano)}
	if f.Detail != "" {
		d["detail"] = f.Detail
	}
	return Event{Time: f.Fired, Actor: SchedulerActor, Action: audit.ScheduleOutcome(f.Outcome), Target: f.ScheduleID, Detail: d}
}

// LastOccurrence implements schedule.Store: the largest recorded occurrence
// of the schedule whatever its outcome, found with one reverse seek.
func (s *ScheduleStore) LastOccurrence(ctx context.Context, scheduleID string) (time.Time, error) {
	var last time.Time
	err := s.db.View(func(stx *Tx) error {
		tx := stx.tx
		c := tx.Bucket([]byte(Firings)).Cursor()
		prefix := firingPrefix(scheduleID)
		// Every key of the schedule is below prefix+0xFF…FF (no occurrence
		// reaches 2^64-1 ns), so the record before that seek is its latest.
		end := binary.BigEndian.AppendUint64(bytes.Clone(prefix), ^uint64(0))
		k, _ := c.Seek(end)
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		if k != nil && len(k) == len(prefix)+8 && bytes.HasPrefix(k, prefix) {
			last = time.Unix(0, int64(binary.BigEndian.Uint64(k[len(prefix):])))
		}
		return nil
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("last occurrence of %s: %w", scheduleID, err)
	}
	return last, nil
}

// Firings returns the firing records of one schedule (every schedule when
// scheduleID is empty), newest occurrence first within a schedule, at most
// limit of them (0 means all).
func (s *ScheduleStore) Firings(scheduleID string, limit int) ([]schedule.Firing, error) {
	var out []schedule.Firing
	err := s.db.View(func(stx *Tx) error {
		tx := stx.tx
		c := tx.Bucket([]byte(Firings)).Cursor()
		add := func(v []byte) error {
			var f schedule.Firing
			if err := json.Unmarshal(v, &f); err != nil {
				return err
			}
			out = append(out, f)
			return nil
		}
		if scheduleID == "" {
			for k, v := c.First(); k != nil && (limit == 0 || len(out) < limit); k, v = c.Next() {
				if err := add(v); err != nil {
					return err
				}
			}
			return nil
		}
		prefix := firingPrefix(scheduleID)
		end := binary.BigEndian.AppendUint64(bytes.Clone(prefix), ^uint64(0))
		k, _ := c.Seek(end)
		var v []byte
		if k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix) && (limit == 0 || len(out) < limit); k, v = c.Prev() {
			if len(k) != len(prefix)+8 {
				continue
			}
			if err := add(v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("firings of %q: %w", scheduleID, err)
	}
	return out, nil
}
