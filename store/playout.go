package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/loalang/loalang/audit"
	"github.com/loalang/loalang/broadcast"
	"github.com/loalang/loalang/broadcast/playout"
	bolt "go.etcd.io/bbolt"
)

// The play-out log (bucket Broadcasts: one record per broadcast, who, what,
// where, when, and each speaker's delivery) is a legal record like the
// audit trail, and is kept under the same rule: at least 12 months, within
// a size bound, oldest first. Records are keyed by broadcast id, not time,
// so pruning orders them by their "created" time.

// PlayoutStats is the play-out log's footprint.
type PlayoutStats = AuditStats

// playoutEntry is the part of a broadcast record retention reads.
type playoutEntry struct {
	Created time.Time `json:"created"`
}

type playoutKey struct {
	key     string
	created time.Time
	size    int64
}

// playoutKeys lists the log's records oldest first, with the stats.
func (db *DB) playoutKeys() ([]playoutKey, PlayoutStats, error) {
	var keys []playoutKey
	var st PlayoutStats
	err := db.bolt.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(Broadcasts))
		if b == nil {
			return fmt.Errorf("play-out log: bucket %s: %w", Broadcasts, ErrNotFound)
		}
		s := b.Stats()
		st.Entries = s.KeyN
		st.Bytes = int64(s.LeafInuse + s.BranchInuse + s.InlineBucketInuse)
		return b.ForEach(func(k, v []byte) error {
			var e playoutEntry
			// A record that does not decode sorts first (zero time): it is
			// the first to go once it is past the bound.
			json.Unmarshal(v, &e)
			keys = append(keys, playoutKey{key: string(k), created: e.Created, size: int64(len(k) + len(v) + entryOverhead)})
			return nil
		})
	})
	slices.SortStableFunc(keys, func(a, b playoutKey) int { return a.created.Compare(b.created) })
	if len(keys) > 0 {
		st.Oldest = keys[0].created
	}
	return keys, st, err
}

// deletePlayout deletes keys in batches of pruneBatch.
func (db *DB) deletePlayout(keys []playoutKey) error {
	for len(keys) > 0 {
		n := min(len(keys), pruneBatch)
		err := db.bolt.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte(Broadcasts))
			for _, k := range keys[:n] {
				if err := b.Delete([]byte(k.key)); err != nil {
					return fmt.Errorf("prune play-out log: %w", err)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

// ApplyPlayoutPolicy applies an AuditPolicy to the play-out log: records
// older than p.Retention go; then, while the log is above p.MaxBytes, its
// oldest records older than p.Keep (12 months). Records younger than
// p.Keep are never deleted, so the bound yields to the legal minimum and
// the status raises the alarm instead (AuditStatus.Problem).
func (db *DB) ApplyPlayoutPolicy(now time.Time, p AuditPolicy) (AuditStatus, error) {
	total := AuditStatus{MaxBytes: p.MaxBytes, AlarmAt: p.AlarmAt}
	// The byte estimate of one pass can fall short (page fill varies), so
	// repeat while a pass trims and the log is still above the bound.
	for range 10 {
		st, err := db.applyPlayoutOnce(now, p)
		total.Expired += st.Expired
		total.Trimmed += st.Trimmed
		total.AuditStats = st.AuditStats
		if err != nil || st.Trimmed == 0 || p.MaxBytes <= 0 || st.Bytes <= p.MaxBytes {
			return total, err
		}
	}
	return total, nil
}

func (db *DB) applyPlayoutOnce(now time.Time, p AuditPolicy) (AuditStatus, error) {
	st := AuditStatus{MaxBytes: p.MaxBytes, AlarmAt: p.AlarmAt}
	keys, stats, err := db.playoutKeys()
	if err != nil {
		return st, err
	}
	keep := now.Add(-max(p.Keep, 0))
	expire := now.Add(-max(p.Retention, p.Keep))
	var drop []playoutKey
	i := 0
	if p.Retention > 0 {
		for ; i < len(keys) && keys[i].created.Before(expire); i++ {
			drop = append(drop, keys[i])
		}
		st.Expired = len(drop)
	}
	if p.MaxBytes > 0 {
		// Estimate what the remaining records occupy from their share of
		// the bucket, then drop the oldest ones past 12 months until under.
		var total int64
		for _, k := range keys {
			total += k.size
		}
		var freed int64
		for _, k := range drop {
			freed += k.size
		}
		for ; i < len(keys) && stats.Bytes-scaled(freed, total, stats.Bytes) > p.MaxBytes && keys[i].created.Before(keep); i++ {
			drop = append(drop, keys[i])
			freed += keys[i].size
			st.Trimmed++
		}
	}
	if err := db.deletePlayout(drop); err != nil {
		return st, err
	}
	if _, st.AuditStats, err = db.playoutKeys(); err != nil {
		return st, err
	}
	return st, nil
}

// scaled converts bytes of keys and values into bytes of bucket pages.
func scaled(part, total, pages int64) int64 {
	if total <= 0 {
		return 0
	}
	return int64(float64(part) / float64(total) * float64(pages))
}

// PlayoutRange returns the raw records of broadcasts created in [since,
// until) (zero: unbounded), oldest first, at most limit (0: all).
func (db *DB) PlayoutRange(since, until time.Time, limit int) ([]json.RawMessage, error) {
	type rec struct {
		created time.Time
		raw     json.RawMessage
	}
	var recs []rec
	err := db.View(func(tx *Tx) error {
		return tx.Each(Broadcasts, "", func(key string, raw []byte) error {
			var e playoutEntry
			if err := json.Unmarshal(raw, &e); err != nil {
				return fmt.Errorf("play-out log %s: %w", key, undecodable(err))
			}
			if (!since.IsZero() && e.Created.Before(since)) || (!until.IsZero() && !e.Created.Before(until)) {
				return nil
			}
			recs = append(recs, rec{e.Created, append(json.RawMessage(nil), raw...)})
			return nil
		})
	})
	slices.SortStableFunc(recs, func(a, b rec) int { return a.created.Compare(b.created) })
	if limit > 0 && len(recs) > limit {
		recs = recs[:limit]
	}
	out := make([]json.RawMessage, len(recs))
	for i, r := range recs {
		out[i] = r.raw
	}
	return out, err
}

// PlayoutStore keeps the play-out log in bucket Broadcasts; it implements
// playout.Store.
type PlayoutStore struct{ db *DB }

// NewPlayoutStore returns the play-out log's store over db.
func NewPlayoutStore(db *DB) *PlayoutStore { return &PlayoutStore{db: db} }

var _ playout.Store = (*PlayoutStore)(nil)

// UpdatePlayout runs fn in one durable transaction.
func (s *PlayoutStore) UpdatePlayout(ctx context.Context, what string, fn func(tx playout.Tx) error) error {
	return s.db.Update(func(tx *Tx) error { return fn(PlayoutTx(tx)) })
}

// GetPlayout returns one record.
func (s *PlayoutStore) GetPlayout(ctx context.Context, id string) (broadcast.Record, error) {
	rec, err := Get[broadcast.Record](s.db, Broadcasts, id)
	return rec, notFoundAs(err, playout.ErrNotFound)
}

// PlayoutRange decodes the records of PlayoutRange.
func (s *PlayoutStore) PlayoutRange(ctx context.Context, since, until time.Time) ([]broadcast.Record, error) {
	raws, err := s.db.PlayoutRange(since, until, 0)
	if err != nil {
		return nil, err
	}
	recs := make([]broadcast.Record, 0, len(raws))
	for _, raw := range raws {
		var b broadcast.Record
		if err := json.Unmarshal(raw, &b); err != nil {
			return nil, fmt.Errorf("play-out log: %w", err)
		}
		recs = append(recs, b)
	}
	return recs, nil
}

// PlayoutTx is tx as the play-out log's transaction, for writers that run
// their own transactions (the daemon's retry of writes held on a full
// disk).
func PlayoutTx(tx *Tx) playout.Tx { return playoutTx{tx} }

type playoutTx struct{ tx *Tx }

func (t playoutTx) Get(id string) (broadcast.Record, error) {
	var rec broadcast.Record
	err := t.tx.Get(Broadcasts, id, &rec)
	return rec, notFoundAs(err, playout.ErrNotFound)
}

func (t playoutTx) Exists(id string) bool { return t.tx.Exists(Broadcasts, id) }

func (t playoutTx) Put(r broadcast.Record) error { return t.tx.Put(Broadcasts, r.ID, r) }

func (t playoutTx) Audit(e audit.Entry) error { return t.tx.AppendAudit(e) }
