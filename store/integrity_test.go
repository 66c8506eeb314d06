package store_test

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/loalang/loalang/audit"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loalang/loalang/store"
	"github.com/loalang/loalang/store/storetest"
	bolt "go.etcd.io/bbolt"
)

// fixture writes a store with enough records for branch, leaf and
// freelist pages, compacts it so every page is live, and returns its path.
func fixture(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "loalang.db")
	db, err := store.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *store.Tx) error {
		for i := range 400 {
			if err := tx.Put(store.Devices, fmt.Sprintf("spk-%03d", i), thing{Name: strings.Repeat("loa ", 10), N: i}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	events := make([]store.Event, 3000)
	for i := range events {
		events[i] = store.Event{Time: time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC), Actor: "admin", Action: audit.Login, Target: fmt.Sprint(i)}
	}
	if err := db.AppendAudit(events...); err != nil {
		t.Fatal(err)
	}
	db.Close()
	storetest.Compact(t, path)
	return path
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		return [32]byte{}
	}
	return sha256.Sum256(raw)
}

// TestOpenRefusesDamageWithoutWriting is finding 1 at the store level:
// every kind of damage is refused by Open with an error naming what is
// wrong (never a panic or a SIGBUS), and the damaged file is byte for
// byte as it was. bbolt's second meta page makes a damaged first one
// harmless, so that file opens and passes the check.
func TestOpenRefusesDamageWithoutWriting(t *testing.T) {
	for _, kind := range storetest.DamageKinds {
		if kind == storetest.Empty || kind == storetest.Missing || kind == storetest.Value {
			continue // a new install for the store, or damage only a read finds (daemon tests)
		}
		t.Run(kind, func(t *testing.T) {
			path := fixture(t)
			did, err := storetest.Damage(path, kind, 1)
			if err != nil {
				t.Fatal(err)
			}
			before := fileSum(t, path)
			db, err := store.Open(path, time.Second)
			after := fileSum(t, path)
			if kind == storetest.Meta0 {
				if err != nil {
					t.Fatalf("%s: %v", did, err)
				}
				defer db.Close()
				if err := db.Check(); err != nil {
					t.Fatalf("%s: check after fallback: %v", did, err)
				}
				if got, err := store.List[thing](db, store.Devices, ""); err != nil || len(got) != 400 {
					t.Fatalf("%s: %d devices, %v", did, len(got), err)
				}
				return
			}
			if err == nil {
				db.Close()
				t.Fatalf("%s: opened", did)
			}
			var ce *store.CorruptError
			if !errors.As(err, &ce) || !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), path) {
				t.Fatalf("%s: %v, want a CorruptError naming the file", did, err)
			}
			if after != before {
				t.Fatalf("%s: the damaged file was written", did)
			}
			t.Logf("%s: %v", did, err)
		})
	}
}

// TestReopenWritesNothing: a start that needs no migration leaves the
// file untouched (the old code rewrote the schema key on every open).
func TestReopenWritesNothing(t *testing.T) {
	path := fixture(t)
	before := fileSum(t, path)
	for range 2 {
		db, err := store.Open(path, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.List[thing](db, store.Devices, ""); err != nil {
			t.Fatal(err)
		}
		db.Close()
	}
	if fileSum(t, path) != before {
		t.Fatal("opening and reading changed the file")
	}
}

// TestDamageWhileRunningIsAnError: a page damaged under a running store
// (bbolt maps the file shared, so the change is seen at once) makes reads
// fail with ErrCorrupt instead of a panic that kills the process; this is
// how the old daemon reached ready and then lost its scheduler.
func TestDamageWhileRunningIsAnError(t *testing.T) {
	path := fixture(t)
	db, err := store.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Zero every leaf and branch page header, in place.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := f.Stat()
	for off := int64(2 * 4096); off < info.Size(); off += 4096 {
		f.WriteAt(make([]byte, 16), off)
	}
	f.Close()
	_, err = store.List[thing](db, store.Devices, "")
	if !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("list on a damaged file: %v, want ErrCorrupt", err)
	}
	if err := db.Check(); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("check: %v", err)
	}
	t.Log(err)
}

// TestBackupPruneRestore: hot backups are consistent files, the newest
// BackupKeep are kept, and Restore brings one back keeping the file it
// replaces, refusing while the store is open.
func TestBackupPruneRestore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "loalang.db")
	db, err := store.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var first string
	for i := range store.BackupKeep + 2 {
		if err := store.Put(db, store.Devices, fmt.Sprintf("d%d", i), thing{N: i}); err != nil {
			t.Fatal(err)
		}
		b, err := db.Backup("test", store.BackupKeep)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = b
		}
		time.Sleep(2 * time.Millisecond) // backup names carry milliseconds
	}
	list, err := store.Backups(path)
	if err != nil || len(list) != store.BackupKeep {
		t.Fatalf("%d backups kept (%v), want %d", len(list), err, store.BackupKeep)
	}
	if _, err := os.Stat(first); !os.IsNotExist(err) {
		t.Fatalf("oldest backup not pruned: %v", err)
	}
	if err := store.Verify(list[0], time.Second); err != nil {
		t.Fatalf("newest backup: %v", err)
	}
	if _, err := store.Restore(path, list[len(list)-1], time.Second); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("restore while open: %v, want ErrLocked", err)
	}
	db.Close()
	storetest.Damage(path, storetest.Halved, 1)
	damaged := fileSum(t, path)
	kept, err := store.Restore(path, list[len(list)-1], time.Second) // the oldest kept: devices d0..d2
	if err != nil {
		t.Fatal(err)
	}
	if fileSum(t, kept) != damaged {
		t.Fatal("the replaced file was not kept as it was")
	}
	db, err = store.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got, err := store.List[thing](db, store.Devices, "")
	if err != nil || len(got) != 3 {
		t.Fatalf("restored %d devices (%v), want 3", len(got), err)
	}
	// A damaged backup is refused and changes nothing.
	bad := filepath.Join(t.TempDir(), "bad.db")
	os.WriteFile(bad, make([]byte, 3*4096), 0o600)
	if _, err := store.Restore(path, bad, time.Second); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("restore from a damaged backup: %v", err)
	}
}

// TestMigrationBacksUpFirst: a file at an older schema is backed up before
// the migration writes to it, and the backup is the unmigrated file.
func TestMigrationBacksUpFirst(t *testing.T) {
	path := filepath.Join(t.TempDir(), "loalang.db")
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// Schema 1: the initial buckets, no cameras bucket yet.
	err = b.Update(func(tx *bolt.Tx) error {
		for _, name := range []string{"meta", store.Users, store.Sessions, store.Devices, store.Creds, store.Media, store.Broadcasts, store.Schedules, store.Firings, store.Audit} {
			if _, err := tx.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		if err := tx.Bucket([]byte(store.Users)).Put([]byte("admin"), []byte(`{"username":"admin"}`)); err != nil {
			return err
		}
		return tx.Bucket([]byte("meta")).Put([]byte("schema"), binary.BigEndian.AppendUint64(nil, 1))
	})
	b.Close()
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v, _ := db.Schema(); v != store.SchemaVersion {
		t.Fatalf("schema %d after open, want %d", v, store.SchemaVersion)
	}
	list, err := store.Backups(path)
	if err != nil || len(list) != 1 || !strings.HasSuffix(list[0], "-schema1.db") {
		t.Fatalf("backups before the migration: %v %v", list, err)
	}
	// The backup passes the check and holds schema 1 with its data.
	if err := store.Verify(list[0], time.Second); err != nil {
		t.Fatal(err)
	}
	bk, err := bolt.Open(list[0], 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bk.Close()
	bk.View(func(tx *bolt.Tx) error {
		if v := binary.BigEndian.Uint64(tx.Bucket([]byte("meta")).Get([]byte("schema"))); v != 1 || tx.Bucket([]byte(store.Cameras)) != nil ||
			tx.Bucket([]byte(store.Users)).Get([]byte("admin")) == nil {
			t.Fatalf("backup: schema %d, cameras bucket %v", v, tx.Bucket([]byte(store.Cameras)) != nil)
		}
		return nil
	})
}

// TestFileWithoutDataIsEmpty: a file bbolt initialised but whose first
// transaction never committed (power lost during the very first start)
// is empty, not damaged: IsEmpty says so and Open makes it a new store.
func TestFileWithoutDataIsEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "loalang.db")
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	b.Close()
	if empty, err := store.IsEmpty(path, time.Second); !empty || err != nil {
		t.Fatalf("IsEmpty = %v, %v", empty, err)
	}
	if err := store.Verify(path, time.Second); !errors.Is(err, store.ErrEmpty) {
		t.Fatalf("Verify: %v, want ErrEmpty", err)
	}
	db, err := store.Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if v, _ := db.Schema(); v != store.SchemaVersion {
		t.Fatalf("schema %d", v)
	}
	if empty, _ := store.IsEmpty(fixture(t), time.Second); empty {
		t.Fatal("a store with data is empty")
	}
}
