package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"
)

// Event is one entry of the audit trail: logins, device state changes,
// broadcasts, schedule changes, camera views.
type Event struct {
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Target string    `json:"target,omitempty"`
	// Detail holds action-specific facts; it never contains secrets.
	Detail map[string]any `json:"detail,omitempty"`
}

var auditSeq atomic.Uint32

func auditKey(t time.Time) []byte {
	k := binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano()))
	return binary.BigEndian.AppendUint32(k, auditSeq.Add(1))
}

// AppendAudit durably records events in one transaction.
func (db *DB) AppendAudit(events ...Event) error {
	return db.Update(func(tx *Tx) error { return tx.AppendAudit(events...) })
}

// AppendAudit records events inside tx, so a change and its audit entry
// commit together.
func (tx *Tx) AppendAudit(events ...Event) error {
	b, err := tx.bucket(Audit)
	if err != nil {
		return err
	}
	for _, e := range events {
		if e.Time.IsZero() {
			e.Time = time.Now()
		}
		raw, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("append audit %s: %w", e.Action, err)
		}
		if err := b.Put(auditKey(e.Time), raw); err != nil {
			return fmt.Errorf("append audit %s: %w", e.Action, err)
		}
	}
	return nil
}

// AuditRange returns events with since <= Time < until (a zero until means
// no upper bound), oldest first, at most limit of them (0 means all).
func (db *DB) AuditRange(since, until time.Time, limit int) ([]Event, error) {
	var out []Event
	err := db.View(func(stx *Tx) error {
		tx := stx.tx
		c := tx.Bucket([]byte(Audit)).Cursor()
		start := binary.BigEndian.AppendUint64(nil, uint64(max(since.UnixNano(), 0)))
		for k, v := c.Seek(start); k != nil; k, v = c.Next() {
			if !until.IsZero() && int64(binary.BigEndian.Uint64(k)) >= until.UnixNano() {
				break
			}
			var e Event
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("audit range %x: %w", k, undecodable(err))
			}
			out = append(out, e)
			if limit > 0 && len(out) >= limit {
				break
			}
		}
		return nil
	})
	return out, err
}
