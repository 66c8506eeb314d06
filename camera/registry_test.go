package camera

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loalang/loalang/audit"
	"github.com/loalang/loalang/store"
	"github.com/loalang/loalang/store/storetest"
)

// TestMergeCameras checks that API records win over the config file: a
// record replaces, a tombstone hides, and new ones follow in ID order.
func TestMerge(t *testing.T) {
	base := []Camera{{ID: "b", Name: "file b", URL: "rtsp://b"}, {ID: "a", Name: "file a", URL: "rtsp://a"}, {ID: "c", URL: "rtsp://c"}}
	recs := []Record{
		{ID: "z", Name: "new z", URL: "rtsp://z"},
		{ID: "a", Name: "api a", URL: "rtsp://a2", AlwaysOn: true},
		{ID: "c", Deleted: true},
		{ID: "y", Name: "new y", URL: "rtsp://y"},
		{ID: "x", Deleted: true},
	}
	got := Merge(base, recs)
	var ids []string
	for _, c := range got {
		ids = append(ids, c.ID)
	}
	if !slices.Equal(ids, []string{"b", "a", "y", "z"}) {
		t.Fatalf("merged ids %v", ids)
	}
	if got[1].Name != "api a" || got[1].URL != "rtsp://a2" || !got[1].AlwaysOn || got[0].Name != "file b" {
		t.Fatalf("merged %+v", got)
	}
}

func TestCheckRTSPNeverEchoesTheURL(t *testing.T) {
	for _, raw := range []string{"http://admin:bi-mat@cam/x", "rtsp://", "admin:bi-mat", "rtsp://admin:bi-mat@/x"} {
		err := checkRTSP("url", raw)
		if err == nil {
			t.Errorf("%q accepted", raw)
			continue
		}
		if s := err.Error(); strings.Contains(s, "bi-mat") || strings.Contains(s, "admin") {
			t.Errorf("error %q echoes the URL", s)
		}
	}
	for _, ok := range []string{"rtsp://admin:bi-mat@10.0.0.5:554/ch1", "rtsps://cam.local/live"} {
		if err := checkRTSP("url", ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

// TestCameraRequestSecrets: credentials sent in the URL or in the
// write-only username/password fields land in the record's secret, never in
// its URL; a URL sent back as shown keeps them, one moved to another host
// drops the stored user information, and a placeholder with nothing stored
// is refused without echoing anything.
func TestCameraRequestSecrets(t *testing.T) {
	str := func(s string) *string { return &s }
	rec := Record{ID: "c"}
	req := Change{URL: str("rtsp://admin:S3cr3t@10.0.0.5/live?channel=1&pw=S3cr3t")}
	if err := req.Apply(&rec); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(rec.URL, "S3cr3t") || rec.Secret.Password != "S3cr3t" || rec.URL != "rtsp://10.0.0.5/live?channel=1&pw=***" {
		t.Fatalf("after create: url %s", rec.URL)
	}
	// Sent back as shown, with a new path: everything kept.
	req = Change{URL: str("rtsp://***@10.0.0.5/live2?channel=1&pw=***")}
	if err := req.Apply(&rec); err != nil {
		t.Fatal(err)
	}
	if dial, _ := rec.Secret.Join(rec.URL); dial != "rtsp://admin:S3cr3t@10.0.0.5/live2?channel=1&pw=S3cr3t" {
		t.Fatalf("round trip dials %s", dial)
	}
	// Without user information, same host: kept. Another host: dropped.
	req = Change{URL: str("rtsp://10.0.0.5/live3")}
	if err := req.Apply(&rec); err != nil || rec.Secret.Username != "admin" {
		t.Fatalf("same host: %v, user kept %v", err, rec.Secret.Username == "admin")
	}
	req = Change{URL: str("rtsp://10.0.0.6/live3")}
	if err := req.Apply(&rec); err != nil || !rec.Secret.IsZero() {
		t.Fatalf("another host: %v, secret kept %v", err, !rec.Secret.IsZero())
	}
	// The write-only fields.
	req = Change{Username: str("viewer"), Password: str("Mat-Khau-9")}
	if err := req.Apply(&rec); err != nil || rec.Secret.Password != "Mat-Khau-9" || strings.Contains(rec.URL, "Mat-Khau") {
		t.Fatalf("fields: %v %+v", err, rec.URL)
	}
	// A placeholder with nothing stored.
	rec = Record{ID: "d"}
	req = Change{URL: str("rtsp://10.0.0.5/x?token=***")}
	err := req.Apply(&rec)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "url: token=***") {
		t.Fatalf("placeholder without a stored value: %v", err)
	}
}

// target records the lists the registry sets.
type target struct{ lists [][]Camera }

func (t *target) SetCameras(cams []Camera) { t.lists = append(t.lists, cams) }

func ids(cams []Camera) []string {
	var out []string
	for _, c := range cams {
		out = append(out, c.ID)
	}
	return out
}

// TestRegistryOverStore runs the registry over a real bbolt file: the
// relay gets the merged list at start and after each change, each change
// is stored with its audit entry (no secret in it), a restart sees the
// changes, a legacy record's credentials move out of its URL, and refused
// changes write nothing.
func TestRegistryOverStore(t *testing.T) {
	ctx := context.Background()
	db := storetest.Open(t)
	st := store.NewCameraStore[Record](db)
	legacy := Record{ID: "old", Name: "Cũ", URL: "rtsp://admin:Bi-Mat-1@10.0.0.9/live", Updated: time.Now()}
	if err := st.PutRecords(ctx, map[string]Record{legacy.ID: legacy}); err != nil {
		t.Fatal(err)
	}
	base := []Camera{{ID: "gate", Name: "Cổng", URL: "rtsp://10.0.0.2/ch1"}}
	tg := &target{}
	reg, err := NewRegistry(ctx, st, tg, base, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(tg.lists) != 1 || !slices.Equal(ids(tg.lists[0]), []string{"gate", "old"}) {
		t.Fatalf("relay lists at start %v", tg.lists)
	}
	if recs, _ := st.Records(ctx); strings.Contains(recs[0].URL, "Bi-Mat") || recs[0].Secret.Password != "Bi-Mat-1" {
		t.Fatalf("legacy record not migrated: %+v", recs[0].URL)
	}
	str := func(s string) *string { return &s }
	if _, err := reg.Create(ctx, "root", "gate", Change{URL: str("rtsp://10.0.0.3/x")}); !errors.Is(err, ErrExists) {
		t.Fatalf("create over a config camera: %v", err)
	}
	if _, err := reg.Create(ctx, "root", "bad/id", Change{URL: str("rtsp://10.0.0.3/x")}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad id: %v", err)
	}
	if _, err := reg.Create(ctx, "root", "pond", Change{URL: str("rtsp://cam:Mat-Khau-2@10.0.0.4/live")}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Update(ctx, "root", "gate", Change{Name: str("Cổng làng")}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Update(ctx, "root", "nope", Change{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update unknown: %v", err)
	}
	if err := reg.Delete(ctx, "root", "old"); err != nil {
		t.Fatal(err)
	}
	if err := reg.Delete(ctx, "root", "old"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	last := tg.lists[len(tg.lists)-1]
	if !slices.Equal(ids(last), []string{"gate", "pond"}) || last[0].Name != "Cổng làng" || last[1].Credentials.Password != "Mat-Khau-2" {
		t.Fatalf("relay list after changes %+v", last)
	}
	events, err := db.AuditRange(time.Time{}, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range events {
		got = append(got, string(e.Action)+" "+e.Target+" "+e.Actor)
		for _, v := range e.Detail {
			if s, _ := v.(string); strings.Contains(s, "Mat-Khau") {
				t.Fatalf("secret audited: %+v", e)
			}
		}
	}
	want := []string{string(audit.CameraCreate) + " pond root", string(audit.CameraUpdate) + " gate root", string(audit.CameraDelete) + " old root"}
	if !slices.Equal(got, want) {
		t.Fatalf("audit %q, want %q", got, want)
	}
	// A restart sees the same list.
	tg2 := &target{}
	if _, err := NewRegistry(ctx, st, tg2, base, nil); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(tg2.lists[0]), []string{"gate", "pond"}) || tg2.lists[0][0].Name != "Cổng làng" {
		t.Fatalf("after restart %+v", tg2.lists[0])
	}
}
