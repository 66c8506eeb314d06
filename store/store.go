// Package store keeps loalangd's state in one bbolt file: devices, users,
// credentials, sessions, media metadata, broadcasts, schedules, firings,
// cameras and the audit trail. Every write is an fsync'd transaction, so a
// write that returned nil survives kill -9 and power loss.
package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Bucket names. Each holds JSON values under string keys, except Audit,
// whose keys are big-endian nanosecond timestamps plus a sequence number.
const (
	Users      = "users"
	Sessions   = "sessions"
	Devices    = "devices"
	Creds      = "credentials"
	Media      = "media"
	Broadcasts = "broadcasts"
	Schedules  = "schedules"
	Firings    = "firings"
	Cameras    = "cameras"
	Audit      = "audit"
	meta       = "meta"
)

// SchemaVersion is the version the migrations bring a file to.
var SchemaVersion = len(migrations)

// migrations[i] upgrades a file from schema version i to i+1. Append only.
var migrations = []func(tx *bolt.Tx) error{
	func(tx *bolt.Tx) error { // 0 -> 1: the initial buckets.
		for _, b := range []string{Users, Sessions, Devices, Creds, Media, Broadcasts, Schedules, Firings, Audit} {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		return nil
	},
	func(tx *bolt.Tx) error { // 1 -> 2: runtime camera changes.
		_, err := tx.CreateBucketIfNotExists([]byte(Cameras))
		return err
	},
	migrateUplink, // 2 -> 3: the uplink's outbox and nonces (uplink.go)
}

// DB is an open store.
type DB struct {
	bolt    *bolt.DB
	path    string
	onWrite func(err error)
	// auditFailures counts failed transactions that carried audit entries.
	auditFailures atomic.Uint64
}

// Open opens or creates the store at path and migrates it. A second process
// on the same file fails after lockTimeout with ErrLocked instead of hanging.
//
// An existing file is verified read-only first (Verify): a damaged one is
// refused with a *CorruptError and never written. Nothing is written on a
// start that needs no migration; before a migration the file is backed up
// to BackupDir(path).
func Open(path string, lockTimeout time.Duration) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	existed := false
	if info, err := os.Stat(path); err == nil && info.Size() > 0 {
		existed = true
		if err := Verify(path, lockTimeout); errors.Is(err, ErrEmpty) {
			existed = false // no data yet: a new file
		} else if err != nil {
			return nil, err
		}
	}
	b, err := openBolt(path, lockTimeout)
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("open store %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, noSpace(err))
	}
	db := &DB{bolt: b, path: path}
	if err := db.migrate(existed); err != nil {
		b.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return db, nil
}

// openBolt opens the file read-write, turning a panic in bbolt into an
// error.
func openBolt(path string, lockTimeout time.Duration) (b *bolt.DB, err error) {
	defer recoverCorrupt(path, &err)
	return bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
}

// migrate brings the file to SchemaVersion. It writes only when there is
// something to migrate, and backs an existing file up first.
func (db *DB) migrate(existed bool) error {
	v, err := db.schema()
	if err != nil {
		return err
	}
	if v > len(migrations) {
		return fmt.Errorf("%w: file has schema %d, this build knows %d", ErrSchema, v, len(migrations))
	}
	if v == len(migrations) {
		return nil
	}
	if existed {
		if _, err := db.Backup(fmt.Sprintf("schema%d", v), BackupKeep); err != nil {
			return fmt.Errorf("back up before migrating schema %d: %w", v, err)
		}
	}
	return db.Update(func(stx *Tx) error {
		tx := stx.tx
		m, err := tx.CreateBucketIfNotExists([]byte(meta))
		if err != nil {
			return err
		}
		for ; v < len(migrations); v++ {
			if err := migrations[v](tx); err != nil {
				return fmt.Errorf("migrate schema %d: %w", v+1, err)
			}
		}
		return m.Put([]byte("schema"), binary.BigEndian.AppendUint64(nil, uint64(v)))
	})
}

// schema reads the schema version; a new file has 0.
func (db *DB) schema() (int, error) {
	v := 0
	err := db.bolt.View(func(tx *bolt.Tx) error {
		if m := tx.Bucket([]byte(meta)); m != nil {
			if raw := m.Get([]byte("schema")); len(raw) == 8 {
				v = int(binary.BigEndian.Uint64(raw))
			}
		}
		return nil
	})
	return v, err
}

// Path returns the file path.
func (db *DB) Path() string { return db.path }

// Schema returns the schema version of the open file.
func (db *DB) Schema() (int, error) { return db.schema() }

// Close closes the file. It is safe to call more than once.
func (db *DB) Close() error {
	if db == nil || db.bolt == nil {
		return nil
	}
	err := db.bolt.Close()
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return nil
	}
	return err
}

// Check runs the integrity check of Verify on the open file: bbolt's
// consistency check, the schema key and every value's JSON.
func (db *DB) Check() error {
	return db.View(func(tx *Tx) error { return checkTx(db.path, tx.tx) })
}

// Tx is a read-write or read-only transaction over JSON buckets.
type Tx struct {
	tx *bolt.Tx
	// audited is set by AppendAudit: a transaction that then fails lost
	// audit entries, which DB.AuditWriteFailures counts.
	audited bool
}

// Update runs fn in one durable read-write transaction. A write that
// failed because the disk is full matches ErrNoSpace; a panic inside bbolt
// (a damaged page) becomes an ErrCorrupt error instead of killing the
// process. Either way the transaction was rolled back.
func (db *DB) Update(fn func(tx *Tx) error) (err error) {
	defer db.report(&err)
	// A read through the memory map past a damaged page's end is a fault;
	// make it a panic that recoverCorrupt turns into an error.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer recoverCorrupt(db.path, &err)
	var t *Tx
	defer func() {
		if err != nil && t != nil && t.audited {
			db.auditFailures.Add(1)
		}
	}()
	return noSpace(db.bolt.Update(func(tx *bolt.Tx) error { t = &Tx{tx: tx}; return fn(t) }))
}

// AuditWriteFailures counts write transactions that carried audit entries
// and failed (rolled back), since the store was opened. Writes the daemon
// holds for retry count once per failed attempt.
func (db *DB) AuditWriteFailures() uint64 { return db.auditFailures.Load() }

// View runs fn in a read-only transaction. A panic inside bbolt becomes
// an ErrCorrupt error.
func (db *DB) View(fn func(tx *Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer recoverCorrupt(db.path, &err)
	return db.bolt.View(func(tx *bolt.Tx) error { return fn(&Tx{tx: tx}) })
}

// OnWrite sets a function told the outcome of every write transaction
// (nil for success), so the daemon can raise and clear a disk-full or
// damaged-file alarm. Set it before the store is shared.
func (db *DB) OnWrite(fn func(err error)) { db.onWrite = fn }

func (db *DB) report(err *error) {
	if db.onWrite != nil && (*err == nil || errors.Is(*err, ErrNoSpace) || errors.Is(*err, ErrCorrupt)) {
		db.onWrite(*err)
	}
}

func (tx *Tx) bucket(name string) (*bolt.Bucket, error) {
	b := tx.tx.Bucket([]byte(name))
	if b == nil {
		return nil, fmt.Errorf("bucket %s: %w", name, ErrNotFound)
	}
	return b, nil
}

// Put stores v as JSON under key.
func (tx *Tx) Put(bucket, key string, v any) error {
	b, err := tx.bucket(bucket)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("put %s/%s: %w", bucket, key, err)
	}
	return b.Put([]byte(key), raw)
}

// Get decodes the value under key into v, or returns ErrNotFound.
func (tx *Tx) Get(bucket, key string, v any) error {
	b, err := tx.bucket(bucket)
	if err != nil {
		return err
	}
	raw := b.Get([]byte(key))
	if raw == nil {
		return fmt.Errorf("get %s/%s: %w", bucket, key, ErrNotFound)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("get %s/%s: %w", bucket, key, undecodable(err))
	}
	return nil
}

// Exists reports whether key is present.
func (tx *Tx) Exists(bucket, key string) bool {
	b, err := tx.bucket(bucket)
	return err == nil && b.Get([]byte(key)) != nil
}

// Delete removes key; deleting a missing key returns ErrNotFound.
func (tx *Tx) Delete(bucket, key string) error {
	b, err := tx.bucket(bucket)
	if err != nil {
		return err
	}
	if b.Get([]byte(key)) == nil {
		return fmt.Errorf("delete %s/%s: %w", bucket, key, ErrNotFound)
	}
	return b.Delete([]byte(key))
}

// Each calls fn with every key and raw JSON value under prefix, in key
// order, until fn returns an error.
func (tx *Tx) Each(bucket, prefix string, fn func(key string, raw []byte) error) error {
	b, err := tx.bucket(bucket)
	if err != nil {
		return err
	}
	c := b.Cursor()
	for k, v := c.Seek([]byte(prefix)); k != nil && len(k) >= len(prefix) && string(k[:len(prefix)]) == prefix; k, v = c.Next() {
		if err := fn(string(k), v); err != nil {
			return err
		}
	}
	return nil
}

// Put stores one value in its own durable transaction.
func Put(db *DB, bucket, key string, v any) error {
	return db.Update(func(tx *Tx) error { return tx.Put(bucket, key, v) })
}

// Get reads one value.
func Get[T any](db *DB, bucket, key string) (T, error) {
	var v T
	err := db.View(func(tx *Tx) error { return tx.Get(bucket, key, &v) })
	return v, err
}

// Delete removes one key in its own durable transaction.
func Delete(db *DB, bucket, key string) error {
	return db.Update(func(tx *Tx) error { return tx.Delete(bucket, key) })
}

// List decodes every value under prefix, in key order.
func List[T any](db *DB, bucket, prefix string) ([]T, error) {
	var out []T
	err := db.View(func(tx *Tx) error {
		return tx.Each(bucket, prefix, func(key string, raw []byte) error {
			var v T
			if err := json.Unmarshal(raw, &v); err != nil {
				return fmt.Errorf("list %s/%s: %w", bucket, key, undecodable(err))
			}
			out = append(out, v)
			return nil
		})
	})
	return out, err
}

// ListDecodable is List that skips values which do not decode, returning
// their keys as damaged, so one damaged record does not hide the others
// (a scheduler that stopped for one record silenced every schedule).
func ListDecodable[T any](db *DB, bucket, prefix string) (out []T, damaged []string, err error) {
	err = db.View(func(tx *Tx) error {
		return tx.Each(bucket, prefix, func(key string, raw []byte) error {
			var v T
			if err := json.Unmarshal(raw, &v); err != nil {
				damaged = append(damaged, key)
				return nil
			}
			out = append(out, v)
			return nil
		})
	})
	return out, damaged, err
}

// undecodable marks a stored value that does not decode: the file passed
// the structural check, so a byte inside the value was damaged (a
// timestamp that no longer parses, say).
func undecodable(err error) error {
	return fmt.Errorf("%w: the stored value does not decode: %v", ErrCorrupt, err)
}
