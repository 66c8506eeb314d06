package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"github.com/loalang/loalang/audit"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Event is one entry of the audit trail (audit.Entry).
type Event = audit.Entry

// Bounds of one audit entry. AppendAudit cuts every field to them, whatever
// the caller passed, so no request can make one entry large: the audit
// trail is written on behalf of anonymous callers too (failed logins).
const (
	MaxAuditActor       = 64
	MaxAuditAction      = 64
	MaxAuditTarget      = 256
	MaxAuditDetailKeys  = 16
	MaxAuditDetailKey   = 64
	MaxAuditDetailValue = 512 // bytes of one value (its JSON, for non-strings)
)

// truncatedMark ends a value that was cut.
const truncatedMark = "…"

// clip returns s as valid UTF-8 of at most n bytes; a cut value ends in
// truncatedMark.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	cut := n - len(truncatedMark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + truncatedMark
}

// bound applies the size bounds to e.
func bound(e Event) Event {
	e.Actor = clip(e.Actor, MaxAuditActor)
	e.Action = audit.Action(clip(string(e.Action), MaxAuditAction))
	e.Target = clip(e.Target, MaxAuditTarget)
	if len(e.Detail) == 0 {
		return e
	}
	keys := make([]string, 0, len(e.Detail))
	for k := range e.Detail {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make(map[string]any, min(len(keys), MaxAuditDetailKeys+1))
	for i, k := range keys {
		if i == MaxAuditDetailKeys {
			out["truncated_keys"] = len(keys) - MaxAuditDetailKeys
			break
		}
		v := e.Detail[k]
		switch x := v.(type) {
		case string:
			v = clip(x, MaxAuditDetailValue)
		case nil, bool, int, int64, uint32, float64:
		default:
			if raw, err := json.Marshal(x); err != nil {
				v = clip(fmt.Sprint(x), MaxAuditDetailValue)
			} else if len(raw) > MaxAuditDetailValue {
				v = clip(string(raw), MaxAuditDetailValue)
			}
		}
		out[clip(k, MaxAuditDetailKey)] = v
	}
	e.Detail = out
	return e
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
// commit together. Every field is cut to the Max* bounds first.
func (tx *Tx) AppendAudit(events ...Event) error {
	b, err := tx.bucket(Audit)
	if err != nil {
		return err
	}
	// Keys grow with time, so entries are appended: fill pages before
	// splitting them instead of leaving them half empty (bbolt's default
	// of 0.5 suits random inserts).
	b.FillPercent = 0.9
	tx.audited = true
	for _, e := range events {
		if e.Time.IsZero() {
			e.Time = time.Now()
		}
		e = bound(e)
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
