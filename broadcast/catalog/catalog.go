// Package catalog is the media library's one owner: its index (the clip
// records with their library fields, kept by a Store) and its clip files
// (Ogg Opus, RFC 7845, content-addressed in a directory). Before it, the
// HTTP layer wrote the index in bbolt while the files lived on disk, two
// sources of truth that nothing compared.
//
// Decoding and encoding stay in broadcast/media (the codec adapter): the
// catalog receives an encoded media.Clip and stores it.
package catalog

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/loalang/loalang/audit"
	"github.com/loalang/loalang/broadcast/media"
	"github.com/loalang/loalang/internal/atomicfile"
)

// Library bounds.
const (
	MaxName = 120
	MaxTags = 10
	MaxTag  = 40
)

// Use is a schedule that plays a clip.
type Use struct {
	ScheduleID, Name string
}

// Tx is one transaction of the Store: the index changes and the audit
// entries made through it commit together or not at all.
type Tx interface {
	// Get returns the clip's record or an error matching ErrNotFound.
	Get(id string) (media.Info, error)
	Put(info media.Info) error
	// Delete removes the record; a missing one matches ErrNotFound.
	Delete(id string) error
	// Users lists the schedules that play the clip.
	Users(id string) ([]Use, error)
	Audit(e audit.Entry) error
}

// Store is the catalog's persistence port; store.MediaStore implements it
// in bbolt.
type Store interface {
	// UpdateMedia runs fn in one durable transaction, rolled back if fn
	// returns an error.
	UpdateMedia(ctx context.Context, fn func(tx Tx) error) error
	// GetMedia returns one record or an error matching ErrNotFound.
	GetMedia(ctx context.Context, id string) (media.Info, error)
	// ListMedia returns every record.
	ListMedia(ctx context.Context) ([]media.Info, error)
}

// Config configures a Catalog.
type Config struct {
	// Dir holds the clip files (the media library's directory).
	Dir string
	// Now is the clock of the audit entries (default time.Now).
	Now func() time.Time
	// Logger receives the catalog's events; nil discards them.
	Logger *slog.Logger
}

// Catalog owns the media library. Its rules: a clip is stored under the
// SHA-256 of its file, written atomically before its index entry, and
// removed again if the entry does not commit; the same audio uploaded
// again keeps the library fields given before unless the upload sets them;
// names, tags and languages are bounded and checked; every change commits
// with its audit entry (media.upload, media.update, media.delete); a clip a
// schedule plays cannot be deleted; and Check compares the index with the
// files. It is safe for concurrent use.
type Catalog struct {
	store Store
	dir   string
	now   func() time.Time
	log   *slog.Logger
	// mu serialises the changes that touch both a file and the index, so
	// that one upload's rollback cannot remove a file another upload of
	// the same audio has just indexed.
	mu sync.Mutex
}

// New returns the catalog over st and the files in cfg.Dir, which it
// creates if needed.
func New(cfg Config, st Store) (*Catalog, error) {
	if cfg.Dir == "" {
		return nil, errors.New("media catalog: directory not set")
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("media catalog: create %s: %w", cfg.Dir, err)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Catalog{store: st, dir: cfg.Dir, now: cfg.Now, log: log.With("component", "catalog")}, nil
}

// Upload is the library fields an upload gives a clip. Make it with
// NewUpload, which checks them before the (costly) encoding starts.
type Upload struct {
	// Source is the upload's file name.
	Source string
	// Name is the display name; "" keeps the name an earlier upload of
	// the same audio was given, or the file name.
	Name string
	// Tags are the clip's tags; nil keeps an earlier upload's.
	Tags []string
	// Language is the clip's language; "" keeps an earlier upload's, or
	// media.DefaultLanguage.
	Language string
}

// NewUpload checks an upload's fields: the language (one of
// media.Languages or ""), the comma-separated tags and the name. source
// is the upload's file name; a path is reduced to its last element.
func NewUpload(source, name, tags, language string) (Upload, error) {
	u := Upload{Language: language}
	if err := media.CheckLanguage(language); err != nil {
		return u, invalid("%v", err)
	}
	if tags != "" {
		var err error
		if u.Tags, err = CleanTags(strings.Split(tags, ",")); err != nil {
			return u, err
		}
	}
	u.Source = filepath.Base(source)
	if u.Source == "." || u.Source == "/" {
		u.Source = "upload"
	}
	if name != "" {
		var err error
		if u.Name, err = CleanName(name); err != nil {
			return u, err
		}
	}
	return u, nil
}

// CleanTags trims, de-duplicates and bounds tags.
func CleanTags(in []string) ([]string, error) {
	out := []string{}
	for _, t := range in {
		t = strings.TrimSpace(t)
		if t == "" || slices.Contains(out, t) {
			continue
		}
		if utf8.RuneCountInString(t) > MaxTag || strings.ContainsAny(t, "\r\n\t") {
			return nil, invalid("tags: %q is longer than %d characters or has control characters", t, MaxTag)
		}
		out = append(out, t)
	}
	if len(out) > MaxTags {
		return nil, invalid("tags: %d tags, at most %d", len(out), MaxTags)
	}
	return out, nil
}

// CleanName trims a display name and bounds it to one line of MaxName
// characters.
func CleanName(n string) (string, error) {
	n = strings.TrimSpace(n)
	if n == "" || utf8.RuneCountInString(n) > MaxName || strings.ContainsAny(n, "\r\n\t") {
		return "", invalid("name: want 1–%d characters on one line", MaxName)
	}
	return n, nil
}

// View fills the defaults a record made before the library existed
// lacks: the name is the upload's file name, the language
// media.DefaultLanguage, the tags an empty list.
func View(info media.Info) media.Info {
	if info.Name == "" {
		info.Name = info.SourceName
	}
	if info.Language == "" {
		info.Language = media.DefaultLanguage
	}
	if info.Tags == nil {
		info.Tags = []string{}
	}
	return info
}

// path is a clip's file; ok is false for an ID that is not one.
func (c *Catalog) path(id string) (string, bool) {
	if !media.ValidID(id) {
		return "", false
	}
	return filepath.Join(c.dir, media.FileName(id)), true
}

// Add stores an encoded clip: its file first (atomically, unless the same
// audio is there already), then its index entry with the media.upload
// audit entry in one transaction. If that fails, a file Add wrote is
// removed again. It returns the clip as the library shows it.
func (c *Catalog) Add(ctx context.Context, actor string, u Upload, clip media.Clip) (media.Info, error) {
	info := clip.Info
	p, ok := c.path(info.ID)
	if !ok {
		return media.Info{}, fmt.Errorf("add clip %q: not a clip ID: %w", info.ID, ErrInvalid)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	wrote := false
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		if err := atomicfile.WriteBytes(p, 0o640, clip.File); err != nil {
			return media.Info{}, fmt.Errorf("add clip %s: %w", info.ID, err)
		}
		wrote = true
	} else if err != nil {
		return media.Info{}, fmt.Errorf("add clip %s: %w", info.ID, err)
	}
	info.Name, info.Tags, info.Language = u.Name, u.Tags, u.Language
	if info.Name == "" {
		info.Name = u.Source
	}
	err := c.store.UpdateMedia(ctx, func(tx Tx) error {
		// The same audio uploaded again has the same ID: keep the library
		// fields given to it before unless this upload sets them.
		if old, err := tx.Get(info.ID); err == nil {
			if u.Name == "" && old.Name != "" {
				info.Name = old.Name
			}
			if u.Tags == nil {
				info.Tags = old.Tags
			}
			if info.Language == "" {
				info.Language = old.Language
			}
		}
		if info.Language == "" {
			info.Language = media.DefaultLanguage
		}
		if err := tx.Put(info); err != nil {
			return err
		}
		return tx.Audit(audit.Entry{Time: c.now(), Actor: actor, Action: audit.MediaUpload, Target: info.ID,
			Detail: map[string]any{"source": u.Source, "duration_ms": info.DurationMS, "language": info.Language}})
	})
	if err != nil {
		if wrote {
			if rerr := os.Remove(p); rerr != nil {
				c.log.Warn("clip file not removed after a failed add", "clip", info.ID, "err", rerr)
			}
		}
		return media.Info{}, err
	}
	c.log.Info("clip added", "clip", info.ID, "source", u.Source, "new_file", wrote)
	return View(info), nil
}

// Get returns one clip as the library shows it.
func (c *Catalog) Get(ctx context.Context, id string) (media.Info, error) {
	info, err := c.store.GetMedia(ctx, id)
	if err != nil {
		return media.Info{}, err
	}
	return View(info), nil
}

// Filter selects clips; zero fields match every clip.
type Filter struct {
	Language string
	Tag      string
}

// List returns the clips that match f, sorted by name (case-insensitive).
func (c *Catalog) List(ctx context.Context, f Filter) ([]media.Info, error) {
	list, err := c.store.ListMedia(ctx)
	if err != nil {
		return nil, err
	}
	out := []media.Info{}
	for _, info := range list {
		info = View(info)
		if (f.Language == "" || info.Language == f.Language) && (f.Tag == "" || slices.Contains(info.Tags, f.Tag)) {
			out = append(out, info)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return strings.ToLower(out[i].Name) < strings.ToLower(out[j].Name) })
	return out, nil
}

// Patch changes a clip's library fields; nil fields are kept.
type Patch struct {
	Name     *string
	Tags     *[]string
	Language *string
}

// Update checks and applies p, with the media.update audit entry (whose
// detail holds the fields set) in the same transaction.
func (c *Catalog) Update(ctx context.Context, actor, id string, p Patch) (media.Info, error) {
	var err error
	if p.Name != nil {
		name := *p.Name
		if name, err = CleanName(name); err != nil {
			return media.Info{}, err
		}
		p.Name = &name
	}
	if p.Tags != nil {
		tags, err := CleanTags(*p.Tags)
		if err != nil {
			return media.Info{}, err
		}
		p.Tags = &tags
	}
	if p.Language != nil {
		if err := media.CheckLanguage(*p.Language); err != nil || *p.Language == "" {
			return media.Info{}, invalid("language: %q is not one of %v", *p.Language, media.LanguageCodes())
		}
	}
	var info media.Info
	err = c.store.UpdateMedia(ctx, func(tx Tx) error {
		if info, err = tx.Get(id); err != nil {
			return err
		}
		detail := map[string]any{}
		if p.Name != nil {
			detail["name"] = *p.Name
			info.Name = *p.Name
		}
		if p.Tags != nil {
			detail["tags"] = *p.Tags
			info.Tags = *p.Tags
		}
		if p.Language != nil {
			detail["language"] = *p.Language
			info.Language = *p.Language
		}
		if err := tx.Put(info); err != nil {
			return err
		}
		return tx.Audit(audit.Entry{Time: c.now(), Actor: actor, Action: audit.MediaUpdate, Target: id, Detail: detail})
	})
	if err != nil {
		return media.Info{}, err
	}
	return View(info), nil
}

// Delete removes a clip's index entry with its media.delete audit entry,
// then its file, unless a schedule plays the clip: then nothing changes
// and the error is an *InUseError naming the schedules. A file that cannot
// be removed is logged: the entry is gone, so it costs disk, not
// correctness, and Check reports it.
func (c *Catalog) Delete(ctx context.Context, actor, id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.store.UpdateMedia(ctx, func(tx Tx) error {
		info, err := tx.Get(id)
		if err != nil {
			return err
		}
		uses, err := tx.Users(id)
		if err != nil {
			return err
		}
		if len(uses) > 0 {
			e := &InUseError{}
			for _, u := range uses {
				e.Schedules = append(e.Schedules, fmt.Sprintf("“%s” (%s)", u.Name, u.ScheduleID))
			}
			return e
		}
		if err := tx.Delete(id); err != nil {
			return err
		}
		return tx.Audit(audit.Entry{Time: c.now(), Actor: actor, Action: audit.MediaDelete, Target: id,
			Detail: map[string]any{"name": View(info).Name}})
	})
	if err != nil {
		return err
	}
	if p, ok := c.path(id); ok {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn("media file not removed", "clip", id, "err", err)
		}
	}
	return nil
}

// File returns the path of a clip's Ogg Opus file: an error matching
// ErrNotFound when the index has no such clip, ErrNoFile when its file is
// missing.
func (c *Catalog) File(ctx context.Context, id string) (string, error) {
	if _, err := c.store.GetMedia(ctx, id); err != nil {
		return "", err
	}
	p, ok := c.path(id)
	if !ok {
		return "", fmt.Errorf("clip %q: %w", id, ErrNoFile)
	}
	if _, err := os.Stat(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("clip %s: %w", id, ErrNoFile)
		}
		return "", fmt.Errorf("stat clip %s: %w", id, err)
	}
	return p, nil
}

// Report is what Check found.
type Report struct {
	// Missing are index entries whose file is gone: broadcasting them fails.
	Missing []string
	// Orphans are clip files no index entry names. Clips played from the
	// uplink are stored without an entry, so an orphan is not a fault.
	Orphans []string
}

// Err is non-nil when the index names clips whose files are missing.
func (r Report) Err() error {
	if len(r.Missing) == 0 {
		return nil
	}
	return fmt.Errorf("%d library clips have no file (%s): %w", len(r.Missing), strings.Join(r.Missing, ", "), ErrNoFile)
}

// Check compares the index with the files in the directory.
func (c *Catalog) Check(ctx context.Context) (Report, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var rep Report
	list, err := c.store.ListMedia(ctx)
	if err != nil {
		return rep, fmt.Errorf("check media catalog: %w", err)
	}
	indexed := map[string]bool{}
	for _, info := range list {
		indexed[info.ID] = true
		p, ok := c.path(info.ID)
		if !ok {
			rep.Missing = append(rep.Missing, info.ID)
			continue
		}
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			rep.Missing = append(rep.Missing, info.ID)
		} else if err != nil {
			return rep, fmt.Errorf("check media catalog: %w", err)
		}
	}
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return rep, fmt.Errorf("check media catalog: %w", err)
	}
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), media.FileName(""))
		if !ok || !e.Type().IsRegular() || !media.ValidID(id) {
			continue
		}
		if !indexed[id] {
			rep.Orphans = append(rep.Orphans, id)
		}
	}
	sort.Strings(rep.Missing)
	sort.Strings(rep.Orphans)
	return rep, nil
}
