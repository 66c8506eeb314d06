package uplink

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/loalang/loalang/audit"
	"time"

	"github.com/loalang/loalang/store"
)

// auditLookback is how far behind the newest forwarded entry the audit
// tail looks again: an entry's key is its event time, which its writer
// may set a little in the past (a device change stamped when detected, a
// camera view stamped at its end).
const auditLookback = 2 * time.Minute

// AuditTail forwards every audit entry, whoever wrote it, into the outbox.
// Each forwarded event's id is derived from the entry's key, so the
// entries looked at again after a restart are de-duplicated by the
// receiver like any resent event. device.* entries (online, offline) go
// as telemetry, the rest as audit (docs/uplink.md).
type AuditTail struct {
	db     *store.DB
	outbox *Outbox
	now    func() time.Time
	done   map[string]time.Time // keys forwarded within the lookback
}

// NewAuditTail returns a tail over db's audit trail.
func NewAuditTail(db *store.DB, outbox *Outbox) *AuditTail {
	return &AuditTail{db: db, outbox: outbox, now: time.Now, done: map[string]time.Time{}}
}

// auditCursor is the persisted position: the time of the newest entry
// forwarded. On the first start it is now: the history before the uplink
// was configured stays local.
const auditCursor = "audit_cursor"

var errStop = errors.New("stop")

// Run forwards new entries every interval until ctx ends.
func (a *AuditTail) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := a.Step(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Step forwards the entries not yet forwarded, in one transaction with
// the cursor, and returns how many.
func (a *AuditTail) Step() (int, error) {
	// A read first: most seconds nothing is new, and a write costs an fsync.
	fresh := false
	err := a.db.View(func(tx *store.Tx) error {
		var cursor time.Time
		if tx.Get(store.OutboxMeta, auditCursor, &cursor) != nil {
			fresh = true
			return nil
		}
		return tx.AuditSince(cursor.Add(-auditLookback), func(key []byte, _ store.Event) error {
			if _, ok := a.done[hex.EncodeToString(key)]; !ok {
				fresh = true
				return errStop
			}
			return nil
		})
	})
	if err != nil && err != errStop {
		return 0, fmt.Errorf("audit tail: %w", err)
	}
	if !fresh {
		return 0, nil
	}
	n := 0
	err = a.db.Update(func(tx *store.Tx) error {
		n = 0
		var cursor time.Time
		if err := tx.Get(store.OutboxMeta, auditCursor, &cursor); err != nil {
			cursor = a.now()
			if err := tx.Put(store.OutboxMeta, auditCursor, cursor); err != nil {
				return err
			}
		}
		newest := cursor
		var added []string
		err := tx.AuditSince(cursor.Add(-auditLookback), func(key []byte, e store.Event) error {
			k := hex.EncodeToString(key)
			if _, ok := a.done[k]; ok {
				return nil
			}
			class := ClassAudit
			kind := "audit"
			if e.Action == audit.DeviceOnline || e.Action == audit.DeviceOffline {
				class, kind = ClassTelemetry, "device"
			}
			if _, err := a.outbox.appendTx(tx, kind, class, e, a.outbox.epoch+"-a"+k); err != nil {
				return err
			}
			added = append(added, k)
			if e.Time.After(newest) {
				newest = e.Time
			}
			n++
			return nil
		})
		if err != nil {
			return fmt.Errorf("audit tail: %w", err)
		}
		if err := tx.Put(store.OutboxMeta, auditCursor, newest); err != nil {
			return err
		}
		tx.OnCommit(func() {
			for _, k := range added {
				a.done[k] = newest
			}
			for k, at := range a.done {
				if at.Before(newest.Add(-2 * auditLookback)) {
					delete(a.done, k)
				}
			}
		})
		return nil
	})
	return n, err
}
