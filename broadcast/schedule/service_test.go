package schedule_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loalang/loalang/audit"
	"github.com/loalang/loalang/broadcast/media"
	"github.com/loalang/loalang/broadcast/schedule"
	"github.com/loalang/loalang/store"
	"github.com/loalang/loalang/store/storetest"
)

// serviceRig is the schedule service over a real bbolt file, on a fixed
// clock, with zones a and b and a 1.5 s Khmer recording "km1".
type serviceRig struct {
	db      *store.DB
	svc     *schedule.Service
	now     time.Time
	mu      sync.Mutex
	reloads int
	damaged error
}

func newServiceRig(t *testing.T) *serviceRig {
	t.Helper()
	r := &serviceRig{db: storetest.Open(t), now: time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)}
	if err := store.Put(r.db, store.Media, "km1", media.Info{ID: "km1", DurationMS: 1500, Language: "km"}); err != nil {
		t.Fatal(err)
	}
	r.svc = schedule.NewService(store.NewScheduleStore(r.db), schedule.ServiceConfig{
		KnownZone:     func(z string) bool { return z == "a" || z == "b" },
		MaxRelay:      30 * time.Minute,
		CheckLanguage: media.CheckLanguage, DefaultLanguage: media.DefaultLanguage,
		CheckVoice: func(c string) error { _, err := media.VoiceFor(c); return err },
		Now:        func() time.Time { return r.now },
		Reload:     func() { r.mu.Lock(); r.reloads++; r.mu.Unlock() },
		Damaged:    func(err error) { r.mu.Lock(); r.damaged = err; r.mu.Unlock() },
	})
	return r
}

// audit returns the actions recorded for target, oldest first.
func (r *serviceRig) audit(t *testing.T, target string) []audit.Action {
	t.Helper()
	events, err := r.db.AuditRange(time.Time{}, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Action
	for _, e := range events {
		if e.Target == target {
			out = append(out, e.Action)
		}
	}
	return out
}

// TestServiceCreateUpdateDelete: a change is stored with its defaults and
// its audit entry, or refused leaving neither; replace checks the
// version, keeps the creation fields and a redacted relay URL; delete
// records the entry and the schedule is gone.
func TestServiceCreateUpdateDelete(t *testing.T) {
	ctx := context.Background()
	r := newServiceRig(t)
	sc, err := r.svc.Create(ctx, "head", schedule.Schedule{ID: "morning", Name: "Tin sáng", RRule: "FREQ=DAILY;BYHOUR=6",
		Zones: []string{"a"}, Source: schedule.Source{Kind: schedule.SourceMedia, MediaID: "km1"}, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	if sc.TimeZone != schedule.DefaultTimeZone || sc.Priority != "normal" || sc.Language != "km" || sc.Version != 1 || sc.CreatedBy != "head" || !sc.CreatedAt.Equal(r.now) {
		t.Fatalf("defaults: %+v", sc)
	}
	stored, err := r.svc.Get(ctx, "morning")
	if err != nil || stored.Language != "km" {
		t.Fatalf("stored: %+v %v", stored, err)
	}
	if _, err := r.svc.Create(ctx, "head", sc); !errors.Is(err, schedule.ErrConflict) {
		t.Fatalf("create under a taken id: %v", err)
	}
	bad := schedule.Schedule{ID: "bad", Name: "x", RRule: "FREQ=DAILY", Zones: []string{"z"}, Source: schedule.Source{Kind: schedule.SourceText, Text: "xin chào"}, Enabled: true}
	var fe *schedule.FieldError
	if _, err := r.svc.Create(ctx, "head", bad); !errors.As(err, &fe) || !strings.HasPrefix(fe.Field, "zones") {
		t.Fatalf("unknown zone: %v", err)
	}
	if _, err := r.svc.Get(ctx, "bad"); !errors.Is(err, schedule.ErrNotFound) {
		t.Fatalf("refused schedule stored: %v", err)
	}
	if _, err := r.svc.Create(ctx, "head", schedule.Schedule{ID: "a/b", Name: "x"}); !errors.Is(err, schedule.ErrBadInput) {
		t.Fatalf("id with a slash: %v", err)
	}
	if got := r.audit(t, "bad"); len(got) != 0 {
		t.Fatalf("audit of a refused create: %v", got)
	}

	r.now = r.now.Add(time.Hour)
	sc.Name = "Tin buổi sáng"
	if _, err := r.svc.Update(ctx, "admin", sc, 7); !errors.Is(err, schedule.ErrConflict) {
		t.Fatalf("stale version: %v", err)
	}
	up, err := r.svc.Update(ctx, "admin", sc, 1)
	if err != nil {
		t.Fatal(err)
	}
	if up.Version != 2 || up.CreatedBy != "head" || !up.UpdatedAt.Equal(r.now) || up.Name != "Tin buổi sáng" {
		t.Fatalf("updated: %+v", up)
	}

	relay := schedule.Schedule{ID: "radio", Name: "VOV", Cron: "0 18 * * *", Zones: []string{"b"}, Enabled: true,
		Source: schedule.Source{Kind: schedule.SourceRelay, URL: "http://user:secret@radio.example/live.mp3?token=abc", Duration: 10 * time.Minute}}
	if _, err := r.svc.Create(ctx, "admin", relay); err != nil {
		t.Fatal(err)
	}
	shown := schedule.ShownURL(relay.Source)
	if strings.Contains(shown, "secret") || strings.Contains(shown, "abc") {
		t.Fatalf("shown URL %q keeps a credential", shown)
	}
	relay.Source.URL = shown
	if _, err := r.svc.Update(ctx, "admin", relay, 0); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.svc.Get(ctx, "radio"); got.Source.URL != "http://user:secret@radio.example/live.mp3?token=abc" {
		t.Fatalf("redacted URL sent back replaced the stored one: %q", got.Source.URL)
	}
	relay.Source.Duration = time.Hour
	if _, err := r.svc.Update(ctx, "admin", relay, 0); !errors.As(err, &fe) || fe.Field != "source.duration" {
		t.Fatalf("relay longer than max_duration: %v", err)
	}

	if err := r.svc.Delete(ctx, "admin", "morning"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.svc.Get(ctx, "morning"); !errors.Is(err, schedule.ErrNotFound) {
		t.Fatalf("deleted schedule: %v", err)
	}
	if err := r.svc.Delete(ctx, "admin", "morning"); !errors.Is(err, schedule.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	want := []audit.Action{audit.ScheduleCreate, audit.ScheduleUpdate, audit.ScheduleDelete}
	if got := r.audit(t, "morning"); len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("audit %v, want %v", got, want)
	}
	if r.reloads != 5 {
		t.Fatalf("%d reloads, want one per committed change (5)", r.reloads)
	}
}

// TestServiceDamagedRecord: a record that does not decode is left out of
// the list and reported (naming it), cannot be overwritten by a create,
// and can be deleted, which clears the report.
func TestServiceDamagedRecord(t *testing.T) {
	ctx := context.Background()
	r := newServiceRig(t)
	if _, err := r.svc.Create(ctx, "head", schedule.Schedule{ID: "good", Name: "good", At: r.now.Add(time.Hour), Zones: []string{"a"},
		Source: schedule.Source{Kind: schedule.SourceText, Text: "xin chào"}, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	if err := store.Put(r.db, store.Schedules, "hong", map[string]any{"id": "hong", "at": "not a time"}); err != nil {
		t.Fatal(err)
	}
	list, err := r.svc.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != "good" {
		t.Fatalf("list: %+v %v", list, err)
	}
	if r.damaged == nil || !strings.Contains(r.damaged.Error(), "hong") {
		t.Fatalf("damaged report: %v", r.damaged)
	}
	if _, err := r.svc.Get(ctx, "hong"); !errors.Is(err, schedule.ErrDamaged) {
		t.Fatalf("get damaged: %v", err)
	}
	if _, err := r.svc.Create(ctx, "head", schedule.Schedule{ID: "hong", Name: "x", At: r.now.Add(time.Hour), Zones: []string{"a"},
		Source: schedule.Source{Kind: schedule.SourceText, Text: "x"}, Enabled: true}); !errors.Is(err, schedule.ErrConflict) {
		t.Fatalf("create over a damaged record: %v", err)
	}
	if err := r.svc.Delete(ctx, "admin", "hong"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.svc.List(ctx); err != nil || r.damaged != nil {
		t.Fatalf("after delete: %v, report %v", err, r.damaged)
	}
	events, _ := r.db.AuditRange(time.Time{}, time.Time{}, 0)
	last := events[len(events)-1]
	if last.Action != audit.ScheduleDelete || last.Detail["damaged"] != true {
		t.Fatalf("audit of the damaged delete: %+v", last)
	}
}

// TestServiceNextPreviewFirings: occurrences come in the schedule's zone
// from the service's clock; a preview of an edit keeps the stored
// creation time; the firing log of an unknown schedule is not found.
func TestServiceNextPreviewFirings(t *testing.T) {
	ctx := context.Background()
	r := newServiceRig(t) // 08:00 UTC = 15:00 in Hanoi
	sc, err := r.svc.Create(ctx, "head", schedule.Schedule{ID: "six", Name: "six", RRule: "FREQ=DAILY;BYHOUR=6;BYMINUTE=30",
		Zones: []string{"a"}, Source: schedule.Source{Kind: schedule.SourceText, Text: "xin chào"}, Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	up, err := r.svc.Next(ctx, "six", 2)
	if err != nil {
		t.Fatal(err)
	}
	if up.Location.String() != "Asia/Ho_Chi_Minh" || len(up.Times) != 2 || up.Times[0].In(up.Location).Format(time.RFC3339) != "2026-03-02T06:30:00+07:00" {
		t.Fatalf("next: %v %v", up.Location, up.Times)
	}
	if _, err := r.svc.Next(ctx, "six", schedule.MaxNext+1); !errors.Is(err, schedule.ErrBadInput) {
		t.Fatalf("n over the bound: %v", err)
	}
	// An RRULE with COUNT counts from creation: editing keeps it.
	r.now = r.now.Add(48 * time.Hour)
	sc.RRule = "FREQ=DAILY;COUNT=3;BYHOUR=6;BYMINUTE=30"
	pv, err := r.svc.Preview(ctx, sc, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(pv.Times) != 1 || pv.Times[0].In(pv.Location).Format(time.RFC3339) != "2026-03-04T06:30:00+07:00" {
		t.Fatalf("preview of an edit: %v", pv.Times)
	}
	if _, err := r.svc.Preview(ctx, schedule.Schedule{RRule: "FREQ=SOMETIMES", Source: schedule.Source{Kind: schedule.SourceText}}, 5); !errors.Is(err, schedule.ErrInvalid) {
		t.Fatalf("bad rule: %v", err)
	}
	if list, err := r.svc.Firings(ctx, "six", 10); err != nil || len(list) != 0 {
		t.Fatalf("firings of a schedule that has not fired: %v %v", list, err)
	}
	if _, err := r.svc.Firings(ctx, "nope", 10); !errors.Is(err, schedule.ErrNotFound) {
		t.Fatalf("firings of an unknown schedule: %v", err)
	}
}
