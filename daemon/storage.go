package daemon

import (
	"context"
	"errors"
	"fmt"
	"github.com/loalang/loalang/audit"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/store"
)

// Storage reliability: what the daemon does around its bbolt file so that
// a damaged, lost or full disk never silently loses data or secrets.

const (
	// backupEvery is how often the automatic backup runs; the store keeps
	// the newest store.BackupKeep.
	backupEvery = 24 * time.Hour
	// pendingLimit bounds the writes held for retry while the disk is
	// full. Past it a write is dropped with an error log and the count
	// shows in the store alarm: never silently.
	pendingLimit = 100_000
)

// diskCheckEvery is how often the disk monitor looks at free space; a
// variable so tests can shorten it.
var diskCheckEvery = 5 * time.Second

// earlierInstall names the files in dataDir that show loalangd ran there
// before, or "" if there are none.
func earlierInstall(dataDir string) string {
	var found []string
	for _, f := range []string{BundleFile, AdminPassFile} {
		if _, err := os.Stat(filepath.Join(dataDir, f)); err == nil {
			found = append(found, f)
		}
	}
	if list, _ := store.Backups(filepath.Join(dataDir, DBFile)); len(list) > 0 {
		found = append(found, fmt.Sprintf("%d backups in backups/", len(list)))
	}
	return strings.Join(found, ", ")
}

// openStore opens the database, refusing with a message that says what is
// wrong and how to recover when the file is damaged, unreadable, or
// missing next to an earlier install. A file that fails the check is
// never written (store.Open verifies read-only first).
func openStore(dataDir string) (*store.DB, error) {
	path := filepath.Join(dataDir, DBFile)
	info, err := os.Stat(path)
	empty, emptyErr := store.IsEmpty(path, lockTimeout)
	switch {
	case errors.Is(err, os.ErrNotExist) || (emptyErr == nil && empty):
		if prior := earlierInstall(dataDir); prior != "" {
			state := "missing"
			if err == nil && info.Size() == 0 {
				state = "empty (0 bytes)"
			} else if err == nil {
				state = "empty (no data)"
			}
			return nil, fmt.Errorf("%w: %s is %s but %s holds %s. Starting as a fresh install would issue new secrets and lock out every device flashed with %s, so loalangd will not start. %s",
				ErrEarlierInstall, path, state, dataDir, prior, BundleFile, recovery(dataDir))
		}
	case err != nil:
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	db, err := store.Open(path, lockTimeout)
	switch {
	case errors.Is(err, store.ErrCorrupt):
		return nil, fmt.Errorf("%w. The file was not modified. %s", err, recovery(dataDir))
	case errors.Is(err, os.ErrPermission) || errors.Is(err, syscall.EROFS):
		return nil, fmt.Errorf("%w: loalangd needs to read and write %s; check its owner and mode and that the file system is writable", err, path)
	}
	return db, err
}

// explainStoreError adds how to recover to a start that failed on a
// damaged value the structural check cannot see (a timestamp that no
// longer parses), instead of leaving only "parsing time".
func explainStoreError(dataDir string, err error) error {
	if !errors.Is(err, store.ErrCorrupt) || strings.Contains(err.Error(), "loalangd restore") {
		return err
	}
	return fmt.Errorf("%w. The file was not modified. %s", err, recovery(dataDir))
}

// recovery says how to bring the store back: the newest backup if there
// is one, or a deliberate re-initialisation that keeps the devices'
// credentials from the bundle.
func recovery(dataDir string) string {
	dbPath := filepath.Join(dataDir, DBFile)
	list, _ := store.Backups(dbPath)
	reinit := fmt.Sprintf("To start over deliberately, keeping the devices' credentials from %s: move %s aside and run `loalangd reinit --data-dir %s` (a new admin password is written to %s).",
		BundleFile, DBFile, dataDir, AdminPassFile)
	if len(list) == 0 {
		return "There are no backups in " + store.BackupDir(dbPath) + ". " + reinit
	}
	return fmt.Sprintf("To restore the newest backup (%s, one of %d in %s): stop loalangd and run `loalangd restore --data-dir %s` (the current file is kept as %s.replaced-<time>; `loalangd restore --list` shows every backup). %s",
		filepath.Base(list[0]), len(list), store.BackupDir(dbPath), dataDir, DBFile, reinit)
}

// Reinitialize creates a new database in cfg.DataDir on purpose, after
// the old one was lost: a new admin password, and every device's
// credential taken back from the provisioning bundle, so the devices
// flashed with it keep working. It refuses if a database with data is
// there (restore or move it aside first).
func Reinitialize(cfg config.Config) (adminPasswordFile string, err error) {
	path := filepath.Join(cfg.DataDir, DBFile)
	if empty, err := store.IsEmpty(path, lockTimeout); err != nil || !empty {
		return "", fmt.Errorf("reinit: %s holds data (or cannot be read: %v); loalangd reinit only replaces a missing or empty database (restore it with `loalangd restore`, or move it aside first)", path, err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return "", fmt.Errorf("reinit: %w", err)
	}
	os.Remove(path) // an empty file, or one with no bucket
	db, err := store.Open(path, lockTimeout)
	if err != nil {
		return "", fmt.Errorf("reinit: %w", err)
	}
	defer db.Close()
	// Forget the old admin password file: the new database gets a new one.
	os.Remove(filepath.Join(cfg.DataDir, AdminPassFile))
	if _, err := bootstrapAdmin(db, cfg.DataDir); err != nil {
		return "", fmt.Errorf("reinit: create admin: %w", err)
	}
	// The broker URL in the bundle is rewritten on the daemon's start;
	// keep the one the devices have meanwhile.
	var url string
	if b, err := readBundle(cfg.DataDir); err == nil {
		url = b.Broker
	}
	if _, err := provision(db, cfg, url); err != nil {
		return "", fmt.Errorf("reinit: %w", err)
	}
	if err := db.AppendAudit(store.Event{Actor: "system", Action: audit.StoreReinit, Detail: map[string]any{"devices": len(cfg.Devices)}}); err != nil {
		return "", fmt.Errorf("reinit: %w", err)
	}
	return filepath.Join(cfg.DataDir, AdminPassFile), nil
}

// startStorage starts the storage watchers: write-failure alarms, the
// retry of held writes and the disk monitor. The daily backup starts once
// the daemon is ready (backupDaily), so the first one holds a complete
// state.
func (d *Daemon) startStorage(ctx context.Context) {
	d.retry = newRetrier(d.db, func(err error) { d.health.Set("store", err) }, d.log)
	d.watchStore()
	d.supervise(ctx, "store-retry", func(ctx context.Context) error {
		d.retry.Run(ctx, time.Second)
		return nil
	})
	d.supervise(ctx, "disk-monitor", d.monitorDisk)
}

// watchStore reports the store's write failures to the health registry: a
// full disk under "disk", a damaged page found while running under
// "store".
func (d *Daemon) watchStore() {
	d.db.OnWrite(func(err error) {
		switch {
		case errors.Is(err, store.ErrNoSpace):
			d.health.Set("disk", fmt.Errorf("writes fail: %w", store.ErrNoSpace))
		case errors.Is(err, store.ErrCorrupt):
			d.log.Error("store damaged", "err", err)
			d.health.Set("store", err)
		}
	})
}

// monitorDisk raises the "disk" alarm while the data dir's file system is
// full or nearly full (under 5% or 256 MiB free, whichever is smaller),
// and clears it when space returns.
func (d *Daemon) monitorDisk(ctx context.Context) error {
	t := time.NewTicker(diskCheckEvery)
	defer t.Stop()
	for {
		d.health.Set("disk", diskState(d.cfg.DataDir))
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// diskState is nil when the file system holding dir has room.
func diskState(dir string) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	size := int64(st.Blocks) * st.Bsize
	free := int64(st.Bavail) * st.Bsize
	low := min(size/20, 256<<20)
	switch {
	case free < 64<<10:
		return fmt.Errorf("disk full: %s free of %s on the data dir %s; writes are held for retry", mib(free), mib(size), dir)
	case free < low:
		return fmt.Errorf("disk nearly full: %s free of %s on the data dir %s", mib(free), mib(size), dir)
	}
	return nil
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// backupDaily backs the store up when the newest backup is older than
// backupEvery, checking every hour; a failed backup is the "backup" alarm.
// The caller adds it to d.wg.
func (d *Daemon) backupDaily(ctx context.Context) error {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if time.Since(store.LastBackup(d.db.Path())) >= backupEvery {
			path, err := d.db.Backup("daily", store.BackupKeep)
			d.health.Set("backup", err)
			if err != nil {
				d.log.Error("backup failed", "err", err)
			} else {
				d.log.Info("backup written", "path", path)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// retrier holds writes that failed (a full disk) and retries them, in
// order, until they succeed: audit entries and broadcast records are
// never dropped silently. While anything is pending, new writes queue
// behind it so a later state never lands before an earlier one.
type retrier struct {
	db     *store.DB
	report func(err error) // the "store" alarm: nil when nothing is pending
	log    interface{ Error(string, ...any) }

	mu      sync.Mutex
	pending []pendingWrite
	dropped int
	lastErr error // why the held writes failed
	wake    chan struct{}
}

type pendingWrite struct {
	what string
	fn   func(tx *store.Tx) error
}

func newRetrier(db *store.DB, report func(error), log interface{ Error(string, ...any) }) *retrier {
	return &retrier{db: db, report: report, log: log, wake: make(chan struct{}, 1)}
}

// Do runs fn in a durable transaction now, or queues it for retry if
// that fails or earlier writes are still pending. It reports whether the
// write is already durable.
func (r *retrier) Do(what string, fn func(tx *store.Tx) error) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	var err error
	if len(r.pending) == 0 {
		if err = r.db.Update(fn); err == nil {
			return true
		}
		r.log.Error("write failed, held for retry", "what", what, "err", err)
	}
	if len(r.pending) >= pendingLimit {
		r.dropped++
		r.log.Error("write dropped: retry queue full", "what", what, "dropped", r.dropped)
	} else {
		r.pending = append(r.pending, pendingWrite{what, fn})
	}
	r.reportLocked(err)
	return false
}

// Pending returns how many writes wait for retry.
func (r *retrier) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}

// Flush tries every pending write in one transaction.
func (r *retrier) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending) == 0 {
		return nil
	}
	err := r.db.Update(func(tx *store.Tx) error {
		for _, p := range r.pending {
			if err := p.fn(tx); err != nil {
				return fmt.Errorf("%s: %w", p.what, err)
			}
		}
		return nil
	})
	if err == nil {
		clear(r.pending)
		r.pending = r.pending[:0]
	}
	r.reportLocked(err)
	return err
}

func (r *retrier) reportLocked(err error) {
	if err != nil {
		r.lastErr = err
	} else if len(r.pending) > 0 {
		err = r.lastErr
	}
	switch {
	case len(r.pending) == 0 && r.dropped == 0:
		r.report(nil)
	case r.dropped > 0:
		r.report(fmt.Errorf("%d writes pending retry, %d dropped (queue full): %v", len(r.pending), r.dropped, err))
	case err != nil:
		r.report(fmt.Errorf("%d writes (audit entries, broadcast records) pending retry: %w", len(r.pending), err))
	default:
		r.report(fmt.Errorf("%d writes (audit entries, broadcast records) pending retry", len(r.pending)))
	}
}

// Run retries pending writes every interval until ctx ends.
func (r *retrier) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.Flush()
		}
	}
}
