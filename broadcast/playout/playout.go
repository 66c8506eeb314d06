// Package playout is the broadcast service's durable side: the play-out
// log (one record per broadcast: who, what, where, when, and each
// speaker's delivery) and the audit policy of broadcasts. Before it, both
// lived in the daemon (daemon/broadcast.go) and the HTTP layer read the
// log's bucket directly.
package playout

import (
	"context"
	"errors"
	"time"

	"github.com/loalang/loalang/audit"
	"github.com/loalang/loalang/broadcast"
	"github.com/loalang/loalang/broadcast/media"
)

// ErrNotFound means the log has no record of the broadcast.
var ErrNotFound = errors.New("broadcast record not found")

// Tx is one transaction of the Store: a record change and its audit entry
// commit together or not at all.
type Tx interface {
	// Get returns the record or an error (ErrNotFound when absent).
	Get(id string) (broadcast.Record, error)
	// Exists reports whether a record (even one that does not decode) is
	// stored under id.
	Exists(id string) bool
	Put(r broadcast.Record) error
	Audit(e audit.Entry) error
}

// Store is the log's persistence port; store.PlayoutStore implements it
// in bbolt, and the daemon wraps it to hold writes that fail on a full
// disk for retry.
type Store interface {
	// UpdatePlayout runs fn in one durable transaction; what names the
	// write in logs. An implementation that holds failed writes for
	// retry may return nil before fn has committed.
	UpdatePlayout(ctx context.Context, what string, fn func(tx Tx) error) error
	// GetPlayout returns one record or an error matching ErrNotFound.
	GetPlayout(ctx context.Context, id string) (broadcast.Record, error)
	// PlayoutRange returns the records of broadcasts created in [since,
	// until) (zero: unbounded), oldest first.
	PlayoutRange(ctx context.Context, since, until time.Time) ([]broadcast.Record, error)
}

// Log is the broadcast service's record keeper. Its rules: every record
// change commits with its audit entry; a change of state is audited
// (action broadcast.<state>, with zones, priority, source, origin, the
// reason and, at the end, the delivery summary), a broadcast's end only
// once: the speakers' delivery reports that arrive after it update the
// record but add no entry; and the first save of a broadcast, made before
// its start is acknowledged, never overwrites a newer state the engine
// saved already. It implements broadcast.Recorder.
type Log struct {
	store Store
	now   func() time.Time
}

// New returns the log over st; now is the audit clock (nil: time.Now).
func New(st Store, now func() time.Time) *Log {
	if now == nil {
		now = time.Now
	}
	return &Log{store: st, now: now}
}

var _ broadcast.Recorder = (*Log)(nil)

// SaveBroadcast stores b and audits its change of state.
func (l *Log) SaveBroadcast(ctx context.Context, b broadcast.Record) error {
	at := l.now()
	return l.store.UpdatePlayout(ctx, "broadcast "+b.ID+" "+string(b.State), func(tx Tx) error { return put(tx, b, at) })
}

// SaveFirst stores b only if no record of it exists yet, so that an older
// state never overwrites a newer one. The API calls it before answering a
// start: the engine saves records from its own goroutine, so a crash just
// after the answer would otherwise lose an acknowledged broadcast.
func (l *Log) SaveFirst(ctx context.Context, b broadcast.Record) error {
	at := l.now()
	return l.store.UpdatePlayout(ctx, "broadcast "+b.ID+" "+string(b.State), func(tx Tx) error {
		if tx.Exists(b.ID) {
			return nil
		}
		return put(tx, b, at)
	})
}

// put stores b and audits its state if it changed; a broadcast's end is
// audited once.
func put(tx Tx, b broadcast.Record, at time.Time) error {
	prev, err := tx.Get(b.ID)
	had := err == nil
	if err := tx.Put(b); err != nil {
		return err
	}
	if had && (prev.State == b.State || broadcast.Terminal(prev.State)) {
		return nil
	}
	detail := map[string]any{"zones": b.Zones, "priority": b.Priority, "source": b.Source, "origin": b.Origin}
	if b.Reason != "" {
		detail["reason"] = b.Reason
	}
	if broadcast.Terminal(b.State) {
		detail["delivery"] = Summary(b.Devices)
	}
	return tx.Audit(audit.Entry{Time: at, Actor: b.Actor, Action: audit.BroadcastState(string(b.State)), Target: b.ID, Detail: detail})
}

// Summary condenses per-device delivery for the audit trail.
func Summary(devs []broadcast.Delivery) map[string]uint64 {
	var s struct{ expected, played, late, lost uint64 }
	for _, d := range devs {
		s.expected += d.FramesExpected
		s.played += d.FramesPlayed
		s.late += d.FramesLate
		s.lost += d.FramesLost
	}
	return map[string]uint64{"speakers": uint64(len(devs)), "frames_expected": s.expected, "frames_played": s.played, "frames_late": s.late, "frames_lost": s.lost}
}

// Get returns one broadcast's record.
func (l *Log) Get(ctx context.Context, id string) (broadcast.Record, error) {
	return l.store.GetPlayout(ctx, id)
}

// Range returns the records of broadcasts created in [since, until) (zero:
// unbounded), oldest first, in language lang ("" every language), never
// nil. A record made before languages existed is in media.DefaultLanguage,
// and says so.
func (l *Log) Range(ctx context.Context, since, until time.Time, lang string) ([]broadcast.Record, error) {
	recs, err := l.store.PlayoutRange(ctx, since, until)
	if err != nil {
		return nil, err
	}
	out := make([]broadcast.Record, 0, len(recs))
	for _, b := range recs {
		if b.Language == "" {
			b.Language = media.DefaultLanguage
		}
		if lang == "" || b.Language == lang {
			out = append(out, b)
		}
	}
	return out, nil
}
