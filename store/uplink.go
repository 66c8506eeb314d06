package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Buckets of the uplink (docs/uplink.md). Outbox holds the upward events
// waiting for the upstream broker's PUBACK, under 8-byte big-endian
// sequence numbers; OutboxMeta holds the next sequence number, so a
// number is never reused even after the outbox drained; Nonces holds the
// nonces of accepted upstream commands until their expiry.
const (
	Outbox     = "uplink_outbox"
	OutboxMeta = "uplink_meta"
	Nonces     = "uplink_nonces"
)

// migrateUplink creates the uplink's buckets (schema 2 -> 3).
func migrateUplink(tx *bolt.Tx) error {
	for _, b := range []string{Outbox, OutboxMeta, Nonces} {
		if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
			return err
		}
	}
	return nil
}

// OutboxEntry is one upward event as stored. Data is the event's JSON
// payload, published as is.
type OutboxEntry struct {
	Seq   uint64          `json:"seq"`
	Class string          `json:"class"`
	Time  time.Time       `json:"time"`
	Data  json.RawMessage `json:"data"`
}

// OutboxStats describes the outbox.
type OutboxStats struct {
	Depth  int
	Bytes  int64
	Oldest time.Time // zero when empty
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// NextOutboxSeq reserves the next sequence number inside tx. Numbers start
// at 1 and are never reused.
func (tx *Tx) NextOutboxSeq() (uint64, error) {
	m, err := tx.bucket(OutboxMeta)
	if err != nil {
		return 0, err
	}
	var next uint64 = 1
	if raw := m.Get([]byte("next_seq")); raw != nil {
		if err := json.Unmarshal(raw, &next); err != nil {
			return 0, fmt.Errorf("outbox next_seq: %w", undecodable(err))
		}
	}
	raw, _ := json.Marshal(next + 1)
	if err := m.Put([]byte("next_seq"), raw); err != nil {
		return 0, fmt.Errorf("outbox next_seq: %w", err)
	}
	return next, nil
}

// PutOutbox stores e under its sequence number inside tx.
func (tx *Tx) PutOutbox(e OutboxEntry) error {
	b, err := tx.bucket(Outbox)
	if err != nil {
		return err
	}
	b.FillPercent = 0.9 // keys grow: appends
	raw, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("put outbox %d: %w", e.Seq, err)
	}
	return b.Put(seqKey(e.Seq), raw)
}

// EachOutbox calls fn with the entries in sequence order, oldest first,
// until fn returns false or an error.
func (tx *Tx) EachOutbox(fn func(e OutboxEntry, size int) (bool, error)) error {
	b, err := tx.bucket(Outbox)
	if err != nil {
		return err
	}
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		var e OutboxEntry
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("outbox %x: %w", k, undecodable(err))
		}
		more, err := fn(e, len(v))
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// DeleteOutbox removes the entries with the given sequence numbers inside
// tx and returns how many were there; a missing one is not an error (it
// was already removed).
func (tx *Tx) DeleteOutbox(seqs ...uint64) (int, error) {
	b, err := tx.bucket(Outbox)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range seqs {
		k := seqKey(s)
		if b.Get(k) == nil {
			continue
		}
		if err := b.Delete(k); err != nil {
			return n, fmt.Errorf("delete outbox %d: %w", s, err)
		}
		n++
	}
	return n, nil
}

// ClaimNonce records key until expires inside tx. It returns false if the
// key was already recorded: a replay.
func (tx *Tx) ClaimNonce(key string, expires time.Time) (bool, error) {
	b, err := tx.bucket(Nonces)
	if err != nil {
		return false, err
	}
	if b.Get([]byte(key)) != nil {
		return false, nil
	}
	raw, _ := json.Marshal(struct {
		Expires time.Time `json:"expires"`
	}{expires})
	if err := b.Put([]byte(key), raw); err != nil {
		return false, fmt.Errorf("claim nonce: %w", err)
	}
	return true, nil
}

// PruneNonces deletes nonces whose expiry is before now and returns how
// many it deleted: an expired command is refused for its expiry anyway,
// so its nonce need not be kept.
func (tx *Tx) PruneNonces(now time.Time) (int, error) {
	b, err := tx.bucket(Nonces)
	if err != nil {
		return 0, err
	}
	var old [][]byte
	err = b.ForEach(func(k, v []byte) error {
		var n struct {
			Expires time.Time `json:"expires"`
		}
		if json.Unmarshal(v, &n) != nil || n.Expires.Before(now) {
			old = append(old, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, k := range old {
		if err := b.Delete(k); err != nil {
			return 0, fmt.Errorf("prune nonce: %w", err)
		}
	}
	return len(old), nil
}

// CountNonces returns how many nonces are kept.
func (tx *Tx) CountNonces() (int, error) {
	b, err := tx.bucket(Nonces)
	if err != nil {
		return 0, err
	}
	return b.Stats().KeyN, nil
}

// OnCommit runs fn after tx commits, never if it rolls back.
func (tx *Tx) OnCommit(fn func()) { tx.tx.OnCommit(fn) }

// OutboxEpoch returns the outbox's epoch, a random string created with the
// first call and kept, so event ids stay unique across the life of the
// file.
func (tx *Tx) OutboxEpoch(newEpoch func() string) (string, error) {
	m, err := tx.bucket(OutboxMeta)
	if err != nil {
		return "", err
	}
	if raw := m.Get([]byte("epoch")); raw != nil {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("outbox epoch: %w", undecodable(err))
		}
		return s, nil
	}
	if !tx.tx.Writable() {
		return "", nil
	}
	s := newEpoch()
	raw, _ := json.Marshal(s)
	return s, m.Put([]byte("epoch"), raw)
}

// AuditSince calls fn with every audit entry whose time is at or after
// since, in key order, with its key (unique in the file), until fn
// returns an error. The uplink tails the audit trail with it.
func (tx *Tx) AuditSince(since time.Time, fn func(key []byte, e Event) error) error {
	b, err := tx.bucket(Audit)
	if err != nil {
		return err
	}
	c := b.Cursor()
	start := binary.BigEndian.AppendUint64(nil, uint64(max(since.UnixNano(), 0)))
	for k, v := c.Seek(start); k != nil; k, v = c.Next() {
		var e Event
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("audit %x: %w", k, undecodable(err))
		}
		if err := fn(k, e); err != nil {
			return err
		}
	}
	return nil
}

// Playing holds, under a broadcast's id, the upstream command it plays,
// until the command's "played" report is in the outbox: the link survives
// a restart. The bucket is created on first use (files at schema 3 have
// none), so reading a file without it finds nothing.
const Playing = "uplink_playing"

// PutPlaying records v (JSON) under broadcastID inside tx.
func (tx *Tx) PutPlaying(broadcastID string, v any) error {
	b, err := tx.tx.CreateBucketIfNotExists([]byte(Playing))
	if err != nil {
		return fmt.Errorf("put playing %s: %w", broadcastID, err)
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("put playing %s: %w", broadcastID, err)
	}
	return b.Put([]byte(broadcastID), raw)
}

// TakePlaying decodes into v and deletes what PutPlaying recorded under
// broadcastID inside tx; false when nothing is recorded (already taken).
func (tx *Tx) TakePlaying(broadcastID string, v any) (bool, error) {
	b := tx.tx.Bucket([]byte(Playing))
	if b == nil {
		return false, nil
	}
	raw := b.Get([]byte(broadcastID))
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return false, fmt.Errorf("playing %s: %w", broadcastID, undecodable(err))
	}
	if err := b.Delete([]byte(broadcastID)); err != nil {
		return false, fmt.Errorf("take playing %s: %w", broadcastID, err)
	}
	return true, nil
}

// PlayingIDs returns the broadcast ids recorded by PutPlaying.
func (tx *Tx) PlayingIDs() ([]string, error) {
	b := tx.tx.Bucket([]byte(Playing))
	if b == nil {
		return nil, nil
	}
	var out []string
	err := b.ForEach(func(k, _ []byte) error {
		out = append(out, string(k))
		return nil
	})
	return out, err
}

// Drafts holds, under their outbox sequence numbers, the drafts village
// heads submitted to the commune, for the village's own page: the newest
// PutDraft's keep of them. The bucket is created on first use (files at
// schema 3 have none), so reading a file without it finds nothing.
const Drafts = "uplink_drafts"

// DraftEntry is a submitted draft as kept. Data is the draft's JSON (the
// uplink's); Sent is when the broker acknowledged its event, zero until
// then.
type DraftEntry struct {
	Seq  uint64          `json:"seq"`
	Sent time.Time       `json:"sent,omitzero"`
	Data json.RawMessage `json:"data"`
}

// PutDraft stores e under its sequence number inside tx and deletes the
// oldest entries beyond keep.
func (tx *Tx) PutDraft(e DraftEntry, keep int) error {
	b, err := tx.tx.CreateBucketIfNotExists([]byte(Drafts))
	if err != nil {
		return fmt.Errorf("put draft %d: %w", e.Seq, err)
	}
	b.FillPercent = 0.9 // keys grow: appends
	raw, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("put draft %d: %w", e.Seq, err)
	}
	if err := b.Put(seqKey(e.Seq), raw); err != nil {
		return fmt.Errorf("put draft %d: %w", e.Seq, err)
	}
	// Count with a cursor: Bucket.Stats does not see this transaction's
	// writes.
	c := b.Cursor()
	n := 0
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	for k, _ := c.First(); k != nil && n > keep; k, _ = c.First() {
		if err := c.Delete(); err != nil {
			return fmt.Errorf("trim drafts: %w", err)
		}
		n--
	}
	return nil
}

// MarkDraftsSent sets Sent to at on the kept drafts among seqs not yet
// marked, inside tx; the other sequence numbers are not drafts and are
// skipped.
func (tx *Tx) MarkDraftsSent(at time.Time, seqs ...uint64) error {
	b := tx.tx.Bucket([]byte(Drafts))
	if b == nil {
		return nil
	}
	for _, s := range seqs {
		raw := b.Get(seqKey(s))
		if raw == nil {
			continue
		}
		var e DraftEntry
		if err := json.Unmarshal(raw, &e); err != nil {
			return fmt.Errorf("draft %d: %w", s, undecodable(err))
		}
		if !e.Sent.IsZero() {
			continue
		}
		e.Sent = at
		raw, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("mark draft %d sent: %w", s, err)
		}
		if err := b.Put(seqKey(s), raw); err != nil {
			return fmt.Errorf("mark draft %d sent: %w", s, err)
		}
	}
	return nil
}

// EachDraft calls fn with the kept drafts, newest first, until fn
// returns false or an error.
func (tx *Tx) EachDraft(fn func(e DraftEntry) (bool, error)) error {
	b := tx.tx.Bucket([]byte(Drafts))
	if b == nil {
		return nil
	}
	c := b.Cursor()
	for k, v := c.Last(); k != nil; k, v = c.Prev() {
		var e DraftEntry
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("draft %x: %w", k, undecodable(err))
		}
		if more, err := fn(e); err != nil || !more {
			return err
		}
	}
	return nil
}

// InOutbox reports whether the entry with sequence number seq is still
// waiting in the outbox inside tx.
func (tx *Tx) InOutbox(seq uint64) (bool, error) {
	b, err := tx.bucket(Outbox)
	if err != nil {
		return false, err
	}
	return b.Get(seqKey(seq)) != nil, nil
}
