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
	for _, st := range []broadcast.State{broadcast.StatePlaying, broadcast.StatePlaying, broadcast.StateDone} {
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
	// An empty range is an empty list (JSON []), not nil (null).
	if recs, err := log.Range(ctx, day(5), day(6), ""); err != nil || recs == nil || len(recs) != 0 {
		t.Fatalf("empty range: %#v %v", recs, err)
	}
}

// TestMonthly: air time by priority and language per zone, a speaker's
// frames counted in the broadcast's zones it belongs to, the most-missed
// list worst first, and a playing broadcast's air time running to now.
func TestMonthly(t *testing.T) {
	t0 := time.Date(2026, 11, 3, 6, 0, 0, 0, time.UTC)
	dev := func(id string, exp, played uint64) broadcast.Delivery {
		return broadcast.Delivery{ID: id, FramesExpected: exp, FramesPlayed: played}
	}
	recs := []broadcast.Record{
		{ID: "b1", Zones: []string{"a", "b"}, Priority: "normal", Language: "vi", Started: t0, Ended: t0.Add(60 * time.Second),
			Devices: []broadcast.Delivery{dev("s1", 100, 100), dev("s2", 100, 50), dev("s3", 100, 90)}},
		{ID: "b2", Zones: []string{"a"}, Language: "km", Started: t0, // still playing
			Devices: []broadcast.Delivery{dev("s2", 10, 0)}},
	}
	rep := playout.Monthly(recs, map[string][]string{"s1": {"a"}, "s2": {"a"}, "s3": {"b"}}, t0.Add(30*time.Second))
	if rep.Broadcasts != 2 || len(rep.Zones) != 2 || len(rep.Speakers) != 3 {
		t.Fatalf("report %+v", rep)
	}
	a := rep.Zones[0]
	if a.Zone != "a" || a.AirSeconds != 90 || a.ByPriority["normal"] != 90 || a.ByLanguage["km"] != 30 || a.FramesExpected != 210 || a.FramesPlayed != 150 {
		t.Fatalf("zone a %+v", a)
	}
	if b := rep.Zones[1]; b.FramesExpected != 100 || b.FramesPlayed != 90 || b.Delivery != 0.9 {
		t.Fatalf("zone b %+v", b)
	}
	if len(rep.MostMissed) != 2 || rep.MostMissed[0].ID != "s2" || rep.MostMissed[0].Missed != 60 || rep.MostMissed[1].ID != "s3" {
		t.Fatalf("most missed %+v", rep.MostMissed)
	}
}
