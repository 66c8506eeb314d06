package store_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/loalang/loalang/store"
	"github.com/loalang/loalang/store/storetest"
)

type logRecord struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Text    string    `json:"text"`
}

// TestPlayoutBoundHolds writes the play-out log past its size bound: the
// oldest records past 12 months go first until it fits, none younger than
// 12 months ever goes (the legal minimum wins over the bound, and the
// status raises the alarm), and records past the retention go by age.
func TestPlayoutBoundHolds(t *testing.T) {
	db := storetest.Open(t)
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	year := 366 * 24 * time.Hour
	pad := strings.Repeat("x", 900)
	put := func(prefix string, n int, from time.Time) {
		err := db.Update(func(tx *store.Tx) error {
			for i := range n {
				// Ids are random in the daemon: key order is not time order.
				r := logRecord{ID: fmt.Sprintf("%s-%04d", prefix, (i*7919)%n), Created: from.Add(time.Duration(i) * time.Hour), Text: pad}
				if err := tx.Put(store.Broadcasts, r.ID, r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	put("old", 3000, now.Add(-2*year)) // 13–24 months old, 2.7 MB
	put("new", 500, now.Add(-year/2))  // 6 months old, 0.45 MB
	policy := store.AuditPolicy{Retention: 3 * year, Keep: year, MaxBytes: 1 << 20, AlarmAt: 0.9}
	st, err := db.ApplyPlayoutPolicy(now, policy)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after the bound: %d records, %d bytes (bound %d), trimmed %d, oldest %v", st.Entries, st.Bytes, policy.MaxBytes, st.Trimmed, st.Oldest)
	if st.Bytes > policy.MaxBytes || st.Trimmed == 0 {
		t.Fatalf("bound does not hold: %d bytes > %d (trimmed %d)", st.Bytes, policy.MaxBytes, st.Trimmed)
	}
	recs, err := db.PlayoutRange(time.Time{}, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var young int
	var oldest time.Time
	for i, raw := range recs {
		var r logRecord
		if err := unmarshal(raw, &r); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			oldest = r.Created
		}
		if strings.HasPrefix(r.ID, "new-") {
			young++
		}
	}
	if young != 500 {
		t.Fatalf("%d of 500 records younger than 12 months kept", young)
	}
	// Oldest first: what is left of the old records is their newest part.
	if wantFrom := now.Add(-2 * year).Add(time.Duration(3000-(st.Entries-500)) * time.Hour); !oldest.Equal(wantFrom) {
		t.Errorf("oldest kept %v, want %v (oldest dropped first)", oldest, wantFrom)
	}
	if st.Problem() == nil && float64(st.Bytes) >= 0.9*float64(policy.MaxBytes) {
		t.Error("near the bound without a warning")
	}

	// A bound the last 12 months do not fit in: every older record goes,
	// none younger, and the status says the trail is full.
	small := policy
	small.MaxBytes = 200 << 10
	st, err = db.ApplyPlayoutPolicy(now, small)
	if err != nil {
		t.Fatal(err)
	}
	if st.Entries != 500 || !errors.Is(st.Problem(), store.ErrAuditFull) {
		t.Fatalf("12 months over the bound: %d records, problem %v; want the 500 young ones and ErrAuditFull", st.Entries, st.Problem())
	}

	// Retention by age: a year later, with no size pressure, records past
	// retention_days go.
	st, err = db.ApplyPlayoutPolicy(now.Add(3*year), store.AuditPolicy{Retention: 3 * year, Keep: year})
	if err != nil || st.Entries != 0 || st.Expired != 500 {
		t.Fatalf("retention: %d left, %d expired, %v", st.Entries, st.Expired, err)
	}
}

func unmarshal(raw []byte, v any) error { return json.Unmarshal(raw, v) }

// TestAuditWriteFailuresCounted: a transaction that carried audit entries
// and failed is counted; one that failed before auditing, or succeeded,
// is not.
func TestAuditWriteFailuresCounted(t *testing.T) {
	db := storetest.Open(t)
	boom := errors.New("boom")
	db.Update(func(tx *store.Tx) error { return boom })
	db.Update(func(tx *store.Tx) error { return tx.AppendAudit(store.Event{Action: "ok"}) })
	if n := db.AuditWriteFailures(); n != 0 {
		t.Fatalf("%d failures before any", n)
	}
	db.Update(func(tx *store.Tx) error {
		if err := tx.AppendAudit(store.Event{Action: "lost"}); err != nil {
			return err
		}
		return boom
	})
	if n := db.AuditWriteFailures(); n != 1 {
		t.Fatalf("%d failures, want 1", n)
	}
	if ev, _ := db.AuditRange(time.Time{}, time.Time{}, 0); len(ev) != 1 || ev[0].Action != "ok" {
		t.Errorf("audit: %+v", ev)
	}
}
