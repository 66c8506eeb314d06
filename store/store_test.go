package store_test

import (
	"errors"
	"github.com/loalang/loalang/audit"
	"testing"
	"time"

	"github.com/loalang/loalang/store"
	"github.com/loalang/loalang/store/storetest"
)

type thing struct {
	Name string `json:"name"`
	N    int    `json:"n"`
}

func TestPutGetListDelete(t *testing.T) {
	db := storetest.Open(t)
	for i, n := range []string{"b", "a", "c"} {
		if err := store.Put(db, store.Devices, n, thing{n, i}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := store.Get[thing](db, store.Devices, "a")
	if err != nil || got.N != 1 {
		t.Fatalf("get: %+v %v", got, err)
	}
	all, err := store.List[thing](db, store.Devices, "")
	if err != nil || len(all) != 3 || all[0].Name != "a" || all[2].Name != "c" {
		t.Fatalf("list: %+v %v", all, err)
	}
	if err := store.Delete(db, store.Devices, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get[thing](db, store.Devices, "a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted key: %v", err)
	}
	if err := store.Delete(db, store.Devices, "a"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("double delete: %v", err)
	}
}

func TestReopenKeepsDataAndSchema(t *testing.T) {
	db := storetest.Open(t)
	if err := store.Put(db, store.Users, "admin", thing{"admin", 7}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := store.Open(db.Path(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if v, err := again.Schema(); err != nil || v != store.SchemaVersion {
		t.Fatalf("schema %d %v, want %d", v, err, store.SchemaVersion)
	}
	if got, err := store.Get[thing](again, store.Users, "admin"); err != nil || got.N != 7 {
		t.Fatalf("after reopen: %+v %v", got, err)
	}
}

func TestSecondOpenFailsFast(t *testing.T) {
	db := storetest.Open(t)
	start := time.Now()
	_, err := store.Open(db.Path(), 100*time.Millisecond)
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("second open took %v", time.Since(start))
	}
}

func TestAuditRange(t *testing.T) {
	db := storetest.Open(t)
	base := time.Date(2026, 11, 28, 6, 0, 0, 0, time.UTC)
	for i := range 5 {
		if err := db.AppendAudit(store.Event{Time: base.Add(time.Duration(i) * time.Minute), Actor: "admin", Action: audit.Login}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := db.AuditRange(base.Add(time.Minute), base.Add(3*time.Minute), 0)
	if err != nil || len(got) != 2 || !got[0].Time.Equal(base.Add(time.Minute)) {
		t.Fatalf("range: %+v %v", got, err)
	}
}
