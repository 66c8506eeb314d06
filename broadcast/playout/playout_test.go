package playout_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/loalang/loalang/audit"
	"github.com/loalang/loalang/broadcast"
	"github.com/loalang/loalang/broadcast/playout"
	"github.com/loalang/loalang/store"
)

func open(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "state.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func actions(t *testing.T, db *store.DB) []audit.Entry {
	t.Helper()
	es, err := db.AuditRange(time.Time{}, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// TestLogAuditPolicy: each change of state is audited with the record in
// one transaction; a repeated state is not; the end is audited once, with
// the delivery summary, and later delivery reports only update the record.
func TestLogAuditPolicy(t *testing.T) {
	ctx := context.Background()
	db := open(t)
	at := time.Date(2026, 11, 3, 6, 0, 0, 0, time.UTC)
	log := playout.New(store.NewPlayoutStore(db), func() time.Time { return at })
	b := broadcast.Record{ID: "b1", State: broadcast.StateQueued, Zones: []string{"a"}, Priority: "normal", Source: "media", Origin: broadcast.OriginAPI, Actor: "admin", Created: at}
	if err := log.SaveFirst(ctx, b); err != nil {
		t.Fatal(err)
	}
	for _, st := range []string{broadcast.StatePlaying, broadcast.StatePlaying, broadcast.StateDone} {
		b.State = st
		if st == broadcast.StateDone {
			b.Devices = []broadcast.Delivery{{ID: "spk-1", FramesExpected: 10, FramesPlayed: 9, FramesLost: 1}}
		}
		if err := log.SaveBroadcast(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	// A late delivery report after the end: the record changes, the audit does not.
	b.Devices[0].FramesPlayed = 10
	if err := log.SaveBroadcast(ctx, b); err != nil {
		t.Fatal(err)
	}
	// An older state saved first after the engine's: ignored.
	old := b
	old.State = broadcast.StateQueued
	if err := log.SaveFirst(ctx, old); err != nil {
		t.Fatal(err)
	}
	got, err := log.Get(ctx, "b1")
	if err != nil || got.State != broadcast.StateDone || got.Devices[0].FramesPlayed != 10 {
		t.Fatalf("record %+v %v", got, err)
	}
	es := actions(t, db)
	var acts []audit.Action
	for _, e := range es {
		acts = append(acts, e.Action)
		if e.Target != "b1" || e.Actor != "admin" || !e.Time.Equal(at) {
			t.Errorf("entry %+v", e)
		}
	}
	want := []audit.Action{audit.BroadcastState(broadcast.StateQueued), audit.BroadcastState(broadcast.StatePlaying), audit.BroadcastState(broadcast.StateDone)}
	if !slices.Equal(acts, want) {
		t.Fatalf("audit %v, want %v", acts, want)
	}
	if d, ok := es[2].Detail["delivery"].(map[string]any); !ok || d["frames_played"] != float64(9) || d["speakers"] != float64(1) {
		t.Fatalf("end detail %+v", es[2].Detail)
	}
	if _, err := log.Get(ctx, "nope"); !errors.Is(err, playout.ErrNotFound) || !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing record: %v", err)
	}
}

// TestLogRange filters by creation time and language; records without a
// language are in the default one.
func TestLogRange(t *testing.T) {
	ctx := context.Background()
	db := open(t)
	log := playout.New(store.NewPlayoutStore(db), nil)
	day := func(d int) time.Time { return time.Date(2026, 11, d, 0, 0, 0, 0, time.UTC) }
	for i, r := range []broadcast.Record{
		{ID: "old", State: broadcast.StateDone, Created: day(1)},
		{ID: "km", State: broadcast.StateDone, Created: day(3), Language: "km"},
		{ID: "vi", State: broadcast.StateDone, Created: day(2)},
	} {
		if err := log.SaveBroadcast(ctx, r); err != nil {
			t.Fatal(i, err)
		}
	}
	recs, err := log.Range(ctx, day(2), day(4), "")
	if err != nil || len(recs) != 2 || recs[0].ID != "vi" || recs[0].Language != "vi" || recs[1].ID != "km" {
		t.Fatalf("range: %+v %v", recs, err)
	}
	if recs, _ := log.Range(ctx, time.Time{}, time.Time{}, "km"); len(recs) != 1 || recs[0].ID != "km" {
		t.Fatalf("range km: %+v", recs)
	}
}
