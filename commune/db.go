package commune

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DBFile is the commune's bbolt file under data_dir.
const DBFile = "commune.db"

// Buckets of the commune's store. Every value is JSON.
var (
	bUsers      = []byte("users")      // username → auth.User
	bSessions   = []byte("sessions")   // auth.TokenKey(token) → auth.Session
	bSeen       = []byte("seen")       // site/event id → arrival time (de-duplication)
	bVillages   = []byte("villages")   // site → Village
	bDrafts     = []byte("drafts")     // draft id → Draft
	bMedia      = []byte("media")      // sha256 → recording bytes
	bAudit      = []byte("audit")      // time-ordered key → AuditEntry
	bDeliveries = []byte("deliveries") // draft id/site → Delivery
	allBuckets  = [][]byte{bUsers, bSessions, bSeen, bVillages, bDrafts, bMedia, bAudit, bDeliveries}
)

// errNotFound is returned by get for a missing key.
var errNotFound = errors.New("not found")

// db is the commune's bbolt file: every write is one fsync'd transaction,
// so what the API acknowledged survives a crash.
type db struct{ bolt *bolt.DB }

func openDB(path string) (*db, error) {
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open commune store %s: %w", path, err)
	}
	err = b.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("open commune store %s: %w", path, err)
	}
	return &db{bolt: b}, nil
}

func (d *db) close() error { return d.bolt.Close() }

func put(tx *bolt.Tx, bucket []byte, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s/%s: %w", bucket, key, err)
	}
	return tx.Bucket(bucket).Put([]byte(key), raw)
}

func get(tx *bolt.Tx, bucket []byte, key string, v any) error {
	raw := tx.Bucket(bucket).Get([]byte(key))
	if raw == nil {
		return errNotFound
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode %s/%s: %w", bucket, key, err)
	}
	return nil
}

// list decodes every value of bucket whose key starts with prefix, in key
// order.
func list[T any](tx *bolt.Tx, bucket []byte, prefix string) ([]T, error) {
	var out []T
	c := tx.Bucket(bucket).Cursor()
	for k, v := c.Seek([]byte(prefix)); k != nil && len(k) >= len(prefix) && string(k[:len(prefix)]) == prefix; k, v = c.Next() {
		var t T
		if err := json.Unmarshal(v, &t); err != nil {
			return nil, fmt.Errorf("decode %s/%s: %w", bucket, k, err)
		}
		out = append(out, t)
	}
	return out, nil
}

// AuditEntry is one line of the commune's own audit trail.
type AuditEntry struct {
	Time   time.Time      `json:"time"`
	Actor  string         `json:"actor"`
	Action string         `json:"action"`
	Target string         `json:"target,omitempty"`
	Detail map[string]any `json:"detail,omitempty"`
}

// audit appends an entry inside tx, keyed by time so the bucket reads in
// order.
func audit(tx *bolt.Tx, e AuditEntry) error {
	b := tx.Bucket(bAudit)
	seq, _ := b.NextSequence()
	return put(tx, bAudit, fmt.Sprintf("%020d-%08d", e.Time.UnixNano(), seq), e)
}
