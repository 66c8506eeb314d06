package store

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/loalang/loalang/internal/atomicfile"
)

// BackupKeep is how many backups BackupDir keeps; the oldest beyond it are
// removed after each new one.
const BackupKeep = 7

const backupPrefix, backupSuffix = "loalang-", ".db"

// BackupDir returns the directory where backups of the store at path are
// kept: <data_dir>/backups.
func BackupDir(path string) string { return filepath.Join(filepath.Dir(path), "backups") }

// Backup writes a consistent copy of the open store to BackupDir with a
// hot backup (bbolt's Tx.WriteTo inside a read transaction, so writers
// go on), named by time and reason, and keeps only the newest keep
// backups. It returns the new file's path. A failed backup leaves no
// partial file behind.
func (db *DB) Backup(reason string, keep int) (path string, err error) {
	dir := BackupDir(db.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("backup: %w", err)
	}
	name := backupPrefix + time.Now().UTC().Format("20060102T150405.000Z") + "-" + reason + backupSuffix
	path = filepath.Join(dir, name)
	err = db.View(func(tx *Tx) error { return writeCopy(tx.tx, path) })
	if err != nil {
		return "", fmt.Errorf("backup %s: %w", path, noSpace(err))
	}
	return path, pruneBackups(dir, keep)
}

// writeCopy writes tx's snapshot to path atomically: a backup is either
// whole or absent.
func writeCopy(tx *bolt.Tx, path string) error {
	return atomicfile.Write(path, 0o600, func(w io.Writer) error {
		_, err := tx.WriteTo(w)
		return err
	})
}

// Backups lists the backups of the store at path, newest first.
func Backups(path string) ([]string, error) { return listBackups(BackupDir(path)) }

func listBackups(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("list backups: %w", err)
	}
	var out []string
	for _, e := range entries {
		if n := e.Name(); e.Type().IsRegular() && strings.HasPrefix(n, backupPrefix) && strings.HasSuffix(n, backupSuffix) {
			out = append(out, filepath.Join(dir, n))
		}
	}
	// The names start with a UTC timestamp, so name order is time order.
	slices.SortFunc(out, func(a, b string) int { return strings.Compare(filepath.Base(b), filepath.Base(a)) })
	return out, nil
}

// LastBackup returns when the newest backup of the store at path was made,
// or the zero time if there is none.
func LastBackup(path string) time.Time {
	list, _ := Backups(path)
	if len(list) == 0 {
		return time.Time{}
	}
	info, err := os.Stat(list[0])
	if err != nil {
		return time.Time{}
	}
	return info.ModTime()
}

func pruneBackups(dir string, keep int) error {
	list, err := listBackups(dir)
	if err != nil {
		return err
	}
	for _, old := range list[min(keep, len(list)):] {
		if err := os.Remove(old); err != nil {
			return fmt.Errorf("prune backup: %w", err)
		}
	}
	return nil
}

// Restore replaces the store at path with the backup from, which must pass
// Verify. The file it replaces is never deleted: it is renamed to
// <path>.replaced-<time>, whose name Restore returns ("" when there was no
// file). It refuses with ErrLocked while a daemon has the store open.
func Restore(path, from string, lockTimeout time.Duration) (kept string, err error) {
	if err := Verify(from, lockTimeout); err != nil {
		return "", fmt.Errorf("restore from %s: %w", from, err)
	}
	if f, err := os.Open(path); err == nil {
		defer f.Close()
		// bbolt locks with flock(2); an exclusive lock we can take means no
		// process has the store open.
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			return "", fmt.Errorf("restore %s: %w", path, ErrLocked)
		}
		kept = path + ".replaced-" + time.Now().UTC().Format("20060102T150405Z")
		if err := os.Rename(path, kept); err != nil {
			return "", fmt.Errorf("restore %s: keep the current file: %w", path, err)
		}
	} else if !os.IsNotExist(err) {
		return "", fmt.Errorf("restore %s: %w", path, err)
	}
	if err := copyFile(from, path); err != nil {
		return kept, fmt.Errorf("restore %s from %s: %w", path, from, noSpace(err))
	}
	return kept, nil
}

// copyFile copies src to dst atomically.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return atomicfile.Write(dst, 0o600, func(w io.Writer) error {
		_, err := io.Copy(w, in)
		return err
	})
}
