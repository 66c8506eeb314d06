package store_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/loalang/loalang/audit"
	"strings"
	"testing"
	"time"

	"github.com/loalang/loalang/store"
	"github.com/loalang/loalang/store/storetest"
)

// TestAuditBounds checks that every field of an audit entry is cut to its
// bound in AppendAudit, whatever the caller passed (finding 2: a 60 kB
// username went into the audit as is).
func TestAuditBounds(t *testing.T) {
	db := storetest.Open(t)
	huge := strings.Repeat("é", 40<<10) // 80 kB of 2-byte runes
	detail := map[string]any{"s": huge, "list": []string{huge}, "n": 7, "a" + strings.Repeat("k", 100): 1}
	for i := range 40 {
		detail[fmt.Sprintf("z%02d", i)] = i
	}
	if err := db.AppendAudit(store.Event{Actor: huge, Action: audit.Action(huge), Target: huge, Detail: detail}); err != nil {
		t.Fatal(err)
	}
	ev, err := db.AuditRange(time.Time{}, time.Time{}, 0)
	if err != nil || len(ev) != 1 {
		t.Fatalf("%v %v", ev, err)
	}
	e := ev[0]
	raw, _ := json.Marshal(e)
	if len(raw) > 16<<10 {
		t.Fatalf("entry of %d bytes", len(raw))
	}
	if len(e.Actor) > store.MaxAuditActor || len(e.Action) > store.MaxAuditAction || len(e.Target) > store.MaxAuditTarget ||
		!strings.HasSuffix(e.Actor, "…") || !strings.HasPrefix(e.Actor, "éé") {
		t.Fatalf("fields not cut at a rune boundary: %q %q %q", e.Actor, e.Action, e.Target)
	}
	if len(e.Detail) != store.MaxAuditDetailKeys+1 || e.Detail["truncated_keys"] != float64(44-store.MaxAuditDetailKeys) {
		t.Fatalf("detail keys: %d, truncated_keys %v", len(e.Detail), e.Detail["truncated_keys"])
	}
	for k, v := range e.Detail {
		if s, ok := v.(string); len(k) > store.MaxAuditDetailKey || ok && len(s) > store.MaxAuditDetailValue {
			t.Fatalf("detail %q: %d bytes", k, len(s))
		}
	}
	if s, ok := e.Detail["list"].(string); !ok || !strings.HasPrefix(s, `["éé`) {
		t.Fatalf("oversized list kept as %T", e.Detail["list"])
	}
}

// TestAuditRetention writes past the size bound: entries older than the
// retention go, then the oldest beyond the legal minimum, and entries
// younger than the minimum stay even when the trail is still over its
// bound, which raises ErrAuditFull instead.
func TestAuditRetention(t *testing.T) {
	db := storetest.Open(t)
	now := time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	write := func(age time.Duration, n int, tag string) {
		var ev []store.Event
		for i := range n {
			ev = append(ev, store.Event{Time: now.Add(-age + time.Duration(i)*time.Second), Actor: "admin", Action: "broadcast.start",
				Target: tag, Detail: map[string]any{"pad": strings.Repeat("x", 200)}})
		}
		if err := db.AppendAudit(ev...); err != nil {
			t.Fatal(err)
		}
	}
	write(500*day, 200, "expired")
	write(380*day, 300, "old")
	write(10*day, 300, "recent")
	count := func() map[string]int {
		ev, err := db.AuditRange(time.Time{}, time.Time{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]int{}
		for _, e := range ev {
			m[e.Target]++
		}
		return m
	}
	policy := store.AuditPolicy{Retention: 400 * day, Keep: 366 * day, MaxBytes: 1 << 20, AlarmAt: 0.9}
	st, err := db.ApplyAuditPolicy(now, policy)
	if err != nil || st.Expired != 200 || st.Trimmed != 0 || st.Problem() != nil {
		t.Fatalf("retention: %+v %v %v", st, err, st.Problem())
	}
	if c := count(); c["expired"] != 0 || c["old"] != 300 || c["recent"] != 300 {
		t.Fatalf("after retention: %v", c)
	}
	t.Logf("600 entries: %d bytes", st.Bytes)

	// A bound between the recent entries' size and the whole: old entries
	// are trimmed, oldest first, until the trail fits.
	policy.MaxBytes = st.Bytes * 3 / 4
	st, err = db.ApplyAuditPolicy(now, policy)
	c := count()
	if err != nil || st.Trimmed == 0 || st.Bytes > policy.MaxBytes || c["recent"] != 300 || c["old"] == 0 || c["old"] == 300 {
		t.Fatalf("trim: %+v %v %v", st, err, c)
	}
	if !errors.Is(st.Problem(), store.ErrAuditNearFull) {
		t.Fatalf("at %d of %d bytes: %v, want the near-full alarm", st.Bytes, st.MaxBytes, st.Problem())
	}
	ev, _ := db.AuditRange(time.Time{}, time.Time{}, 1)
	if ev[0].Target != "old" || ev[0].Time.Before(now.Add(-380*day).Add(time.Duration(300-c["old"])*time.Second)) {
		t.Fatalf("not the oldest were trimmed: first is %+v", ev[0])
	}

	// A bound below what must be kept: everything older than the legal
	// minimum goes, nothing younger, and the alarm says the trail is full.
	policy.MaxBytes = 4096
	st, err = db.ApplyAuditPolicy(now, policy)
	if c := count(); err != nil || c["recent"] != 300 || c["old"] != 0 {
		t.Fatalf("over the bound: %v %v", c, err)
	}
	if !errors.Is(st.Problem(), store.ErrAuditFull) || !strings.Contains(st.Problem().Error(), "audit.max_bytes") {
		t.Fatalf("over the bound: %v", st.Problem())
	}
	// Writing on past the bound still records every entry.
	write(0, 10, "new")
	if c := count(); c["new"] != 10 {
		t.Fatalf("writes past the bound lost: %v", c)
	}
}
