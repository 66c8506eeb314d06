package catalog_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/loalang/loalang/audit"
	"github.com/loalang/loalang/broadcast/catalog"
	"github.com/loalang/loalang/broadcast/media"
	"github.com/loalang/loalang/broadcast/schedule"
	"github.com/loalang/loalang/internal/audiotest"
	"github.com/loalang/loalang/store"
)

// fixture is a catalog over a real bbolt file and a real media library
// sharing one directory.
type fixture struct {
	db  *store.DB
	lib *media.Library
	cat *catalog.Catalog
	dir string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(filepath.Join(dir, "state.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	mdir := filepath.Join(dir, "media")
	lib, err := media.NewLibrary(media.Config{Dir: mdir})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := catalog.New(catalog.Config{Dir: mdir}, store.NewMediaStore(db))
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{db: db, lib: lib, cat: cat, dir: mdir}
}

// encode encodes a 1 s tone at freq with the real codec.
func (f *fixture) encode(t *testing.T, freq float64) media.Clip {
	t.Helper()
	clip, err := f.lib.Encode(context.Background(), "tone.wav", bytes.NewReader(audiotest.WAV(audiotest.Tone(freq, 0.5, 16000, 1000), 16000, 1)))
	if err != nil {
		t.Fatal(err)
	}
	return clip
}

func (f *fixture) audit(t *testing.T) []audit.Entry {
	t.Helper()
	es, err := f.db.AuditRange(time.Time{}, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func upload(t *testing.T, source, name, tags, lang string) catalog.Upload {
	t.Helper()
	u, err := catalog.NewUpload(source, name, tags, lang)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestCatalogLifecycle: add writes the file and the entry with its audit
// entry; the same audio again keeps the earlier fields; update and delete
// audit; delete removes the file.
func TestCatalogLifecycle(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	clip := f.encode(t, 440)
	info, err := f.cat.Add(ctx, "admin", upload(t, "/x/tone.wav", "Thông báo", "y-te, y-te,tiem", "km"), clip)
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "Thông báo" || info.Language != "km" || !slices.Equal(info.Tags, []string{"y-te", "tiem"}) {
		t.Fatalf("added %+v", info)
	}
	p, err := f.cat.File(ctx, info.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); !bytes.Equal(got, clip.File) {
		t.Fatal("stored file differs from the encoded clip")
	}
	// The same audio again, with no fields: the earlier ones stay.
	again, err := f.cat.Add(ctx, "head", upload(t, "other.wav", "", "", ""), clip)
	if err != nil {
		t.Fatal(err)
	}
	if again.Name != "Thông báo" || again.Language != "km" || len(again.Tags) != 2 {
		t.Fatalf("re-upload lost the fields: %+v", again)
	}
	name := "  Renamed  "
	up, err := f.cat.Update(ctx, "admin", info.ID, catalog.Patch{Name: &name})
	if err != nil || up.Name != "Renamed" || up.Language != "km" {
		t.Fatalf("update: %+v %v", up, err)
	}
	bad := "xx"
	if _, err := f.cat.Update(ctx, "admin", info.ID, catalog.Patch{Language: &bad}); !errors.Is(err, catalog.ErrInvalid) {
		t.Fatalf("bad language: %v", err)
	}
	if _, err := f.cat.Update(ctx, "admin", "nope", catalog.Patch{Name: &name}); !errors.Is(err, catalog.ErrNotFound) || !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update missing: %v", err)
	}
	list, err := f.cat.List(ctx, catalog.Filter{Tag: "tiem"})
	if err != nil || len(list) != 1 {
		t.Fatalf("list by tag: %v %v", list, err)
	}
	if list, _ := f.cat.List(ctx, catalog.Filter{Language: "vi"}); len(list) != 0 {
		t.Fatalf("list by language: %v", list)
	}
	if err := f.cat.Delete(ctx, "admin", info.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file still there after delete: %v", err)
	}
	if _, err := f.cat.Get(ctx, info.ID); !errors.Is(err, catalog.ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	var actions []audit.Action
	for _, e := range f.audit(t) {
		actions = append(actions, e.Action)
	}
	want := []audit.Action{audit.MediaUpload, audit.MediaUpload, audit.MediaUpdate, audit.MediaDelete}
	if !slices.Equal(actions, want) {
		t.Fatalf("audit %v, want %v", actions, want)
	}
}

// TestCatalogDeleteInUse: a clip a schedule plays is not deleted, and the
// error names the schedule.
func TestCatalogDeleteInUse(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	info, err := f.cat.Add(ctx, "admin", upload(t, "tone.wav", "", "", ""), f.encode(t, 500))
	if err != nil {
		t.Fatal(err)
	}
	sc := schedule.Schedule{ID: "s1", Name: "Sáng", Source: schedule.Source{Kind: schedule.SourceMedia, MediaID: info.ID}}
	if err := store.Put(f.db, store.Schedules, sc.ID, sc); err != nil {
		t.Fatal(err)
	}
	err = f.cat.Delete(ctx, "admin", info.ID)
	var inUse *catalog.InUseError
	if !errors.As(err, &inUse) || !errors.Is(err, catalog.ErrInUse) || !slices.Equal(inUse.Schedules, []string{"“Sáng” (s1)"}) {
		t.Fatalf("delete in use: %v", err)
	}
	if _, err := f.cat.File(ctx, info.ID); err != nil {
		t.Fatalf("refused delete touched the clip: %v", err)
	}
}

// TestCatalogAddRollsBackFile: when the index entry cannot be written
// (the store is closed), the file Add wrote is removed again.
func TestCatalogAddRollsBackFile(t *testing.T) {
	f := newFixture(t)
	clip := f.encode(t, 600)
	f.db.Close()
	if _, err := f.cat.Add(context.Background(), "admin", upload(t, "tone.wav", "", "", ""), clip); err == nil {
		t.Fatal("add succeeded on a closed store")
	}
	if _, err := os.Stat(filepath.Join(f.dir, media.FileName(clip.Info.ID))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file left behind: %v", err)
	}
}

// TestCatalogCheck reports index entries without a file and files
// without an entry.
func TestCatalogCheck(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	a, err := f.cat.Add(ctx, "admin", upload(t, "a.wav", "", "", ""), f.encode(t, 300))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := f.cat.Check(ctx)
	if err != nil || rep.Err() != nil || len(rep.Orphans) != 0 {
		t.Fatalf("clean check: %+v %v", rep, err)
	}
	// An uplink-style import: a file with no entry.
	orphan, err := f.lib.Import(ctx, "b.wav", bytes.NewReader(audiotest.WAV(audiotest.Tone(800, 0.5, 16000, 1000), 16000, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(f.dir, media.FileName(a.ID))); err != nil {
		t.Fatal(err)
	}
	rep, err = f.cat.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Missing, []string{a.ID}) || !slices.Equal(rep.Orphans, []string{orphan.ID}) || !errors.Is(rep.Err(), catalog.ErrNoFile) {
		t.Fatalf("check: %+v", rep)
	}
	if _, err := f.cat.File(ctx, a.ID); !errors.Is(err, catalog.ErrNoFile) {
		t.Fatalf("file of a missing clip: %v", err)
	}
}

// TestNewUploadRefuses names the field of each refusal.
func TestNewUploadRefuses(t *testing.T) {
	for _, c := range []struct{ name, tags, lang string }{
		{"", "", "xx"},
		{"", "a,b,c,d,e,f,g,h,i,j,k", ""},
		{"two\nlines", "", ""},
	} {
		if _, err := catalog.NewUpload("f.wav", c.name, c.tags, c.lang); !errors.Is(err, catalog.ErrInvalid) {
			t.Errorf("%+v: %v", c, err)
		}
	}
}
