package uplink

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loalang/loalang/store"
)

// Event classes, in the order the full-outbox policy drops them
// (docs/uplink.md, "Outbox"): telemetry first (device status and alarm
// changes, whose latest state is sent again anyway), then reports
// (broadcast delivery, command outcomes); audit entries never.
const (
	ClassTelemetry = "telemetry"
	ClassReport    = "report"
	ClassAudit     = "audit"
)

// DefaultOutboxMax is the outbox bound when the config says 0.
const DefaultOutboxMax = 100000

// Event is the payload published on Topics.Events, one per outbox entry.
// Receivers de-duplicate by ID (docs/protocol.md, "Uplink events").
type Event struct {
	ID       string          `json:"id"`
	Seq      uint64          `json:"seq"`
	Province string          `json:"province"`
	Commune  string          `json:"commune"`
	Site     string          `json:"site"`
	Kind     string          `json:"kind"`
	Class    string          `json:"class"`
	Time     time.Time       `json:"time"`
	Data     json.RawMessage `json:"data"`
}

// Outbox is the durable queue of upward events in bbolt.
type Outbox struct {
	db     *store.DB
	topics Topics
	max    int
	now    func() time.Time
	epoch  string

	mu       sync.Mutex
	depth    int
	oldest   time.Time // of the oldest pending entry
	noDrop   bool      // no telemetry or report entry is pending
	notify   chan struct{}
	dropped  atomic.Uint64
	appended atomic.Uint64
	sent     atomic.Uint64
}

// OpenOutbox opens the outbox in db, counting what is pending from an
// earlier run. max <= 0 means DefaultOutboxMax; now nil means time.Now.
func OpenOutbox(db *store.DB, t Topics, max int, now func() time.Time) (*Outbox, error) {
	if max <= 0 {
		max = DefaultOutboxMax
	}
	if now == nil {
		now = time.Now
	}
	o := &Outbox{db: db, topics: t, max: max, now: now, notify: make(chan struct{}, 1)}
	err := db.Update(func(tx *store.Tx) error {
		var err error
		if o.epoch, err = tx.OutboxEpoch(func() string {
			var b [4]byte
			rand.Read(b[:])
			return hex.EncodeToString(b[:])
		}); err != nil {
			return err
		}
		return tx.EachOutbox(func(e store.OutboxEntry, _ int) (bool, error) {
			if o.depth == 0 {
				o.oldest = e.Time
			}
			o.depth++
			return true, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("open outbox: %w", err)
	}
	return o, nil
}

// Append durably adds one event in its own transaction.
func (o *Outbox) Append(kind, class string, data any) error {
	return o.db.Update(func(tx *store.Tx) error { return o.AppendTx(tx, kind, class, data) })
}

// AppendTx adds one event inside tx, so a change and its upward event
// commit together. When the outbox is full it first drops per the policy.
func (o *Outbox) AppendTx(tx *store.Tx, kind, class string, data any) error {
	_, err := o.appendTx(tx, kind, class, data, "")
	return err
}

// appendTx is AppendTx with an optional id; an empty id is derived from
// the epoch and the sequence number. It returns the entry's sequence
// number.
func (o *Outbox) appendTx(tx *store.Tx, kind, class string, data any, id string) (uint64, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return 0, fmt.Errorf("outbox %s: %w", kind, err)
	}
	seq, err := tx.NextOutboxSeq()
	if err != nil {
		return 0, err
	}
	at := o.now().UTC()
	if id == "" {
		id = o.epoch + "-" + strconv.FormatUint(seq, 10)
	}
	ev := Event{ID: id, Seq: seq, Province: o.topics.Province, Commune: o.topics.Commune,
		Site: o.topics.Site, Kind: kind, Class: class, Time: at, Data: raw}
	payload, err := json.Marshal(ev)
	if err != nil {
		return 0, fmt.Errorf("outbox %s: %w", kind, err)
	}
	o.mu.Lock()
	full := o.depth >= o.max && !o.noDrop
	o.mu.Unlock()
	dropped := 0
	if full {
		if dropped, err = dropOne(tx); err != nil {
			return 0, err
		}
	}
	if err := tx.PutOutbox(store.OutboxEntry{Seq: seq, Class: class, Time: at, Data: payload}); err != nil {
		return 0, err
	}
	tx.OnCommit(func() {
		o.mu.Lock()
		if o.depth == 0 {
			o.oldest = at
		}
		o.depth += 1 - dropped
		if full && dropped == 0 {
			o.noDrop = true // only audit pending: grow past the bound
		}
		if class != ClassAudit {
			o.noDrop = false
		}
		o.mu.Unlock()
		o.dropped.Add(uint64(dropped))
		o.appended.Add(1)
		select {
		case o.notify <- struct{}{}:
		default:
		}
	})
	return seq, nil
}

// dropOne deletes the oldest telemetry entry, else the oldest report,
// and returns how many it deleted (0 when only audit entries are pending).
func dropOne(tx *store.Tx) (int, error) {
	var firstReport uint64
	var victim uint64
	err := tx.EachOutbox(func(e store.OutboxEntry, _ int) (bool, error) {
		switch e.Class {
		case ClassTelemetry:
			victim = e.Seq
			return false, nil
		case ClassReport:
			if firstReport == 0 {
				firstReport = e.Seq
			}
		}
		return true, nil
	})
	if err != nil {
		return 0, err
	}
	if victim == 0 {
		victim = firstReport
	}
	if victim == 0 {
		return 0, nil
	}
	return tx.DeleteOutbox(victim)
}

// Peek returns up to n pending entries, oldest first.
func (o *Outbox) Peek(n int) ([]store.OutboxEntry, error) {
	var out []store.OutboxEntry
	err := o.db.View(func(tx *store.Tx) error {
		return tx.EachOutbox(func(e store.OutboxEntry, _ int) (bool, error) {
			out = append(out, e)
			return len(out) < n, nil
		})
	})
	return out, err
}

// Ack removes entries the broker acknowledged (after their PUBACK, MQTT
// 3.1.1 §4.3.2) in one durable transaction.
func (o *Outbox) Ack(seqs []uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	var oldest time.Time
	var deleted int
	err := o.db.Update(func(tx *store.Tx) error {
		var err error
		if deleted, err = tx.DeleteOutbox(seqs...); err != nil {
			return err
		}
		if err := tx.MarkDraftsSent(o.now().UTC(), seqs...); err != nil {
			return err
		}
		// The new oldest entry's time, for the status.
		return tx.EachOutbox(func(e store.OutboxEntry, _ int) (bool, error) {
			oldest = e.Time
			return false, nil
		})
	})
	if err != nil {
		return fmt.Errorf("outbox ack: %w", err)
	}
	o.mu.Lock()
	o.depth = max(o.depth-deleted, 0)
	if !oldest.IsZero() || o.depth == 0 {
		o.oldest = oldest
	}
	o.mu.Unlock()
	o.sent.Add(uint64(deleted))
	return nil
}

// Notify is signalled after every append.
func (o *Outbox) Notify() <-chan struct{} { return o.notify }

// OutboxStats is the outbox's state for the status API and metrics.
type OutboxStats struct {
	Depth    int       `json:"depth"`
	Oldest   time.Time `json:"oldest,omitzero"`
	Dropped  uint64    `json:"dropped"`
	Appended uint64    `json:"appended"`
	Sent     uint64    `json:"sent"`
}

// Stats returns the outbox's counters.
func (o *Outbox) Stats() OutboxStats {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := OutboxStats{Depth: o.depth, Dropped: o.dropped.Load(), Appended: o.appended.Load(), Sent: o.sent.Load()}
	if o.depth > 0 {
		s.Oldest = o.oldest
	}
	return s
}
