package store

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzAuditBounds checks that any actor, target and detail value comes out
// of bound valid UTF-8, within its bound, and still encodable.
func FuzzAuditBounds(f *testing.F) {
	f.Add("admin", "cam-01", "ok")
	f.Add(strings.Repeat("é", 100), strings.Repeat("\xff", 300), strings.Repeat("x", 600))
	f.Fuzz(func(t *testing.T, actor, target, value string) {
		e := bound(Event{Actor: actor, Action: "fuzz", Target: target, Detail: map[string]any{"v": value, value: []string{value, value}}})
		v, _ := e.Detail["v"].(string)
		if len(e.Actor) > MaxAuditActor || len(e.Target) > MaxAuditTarget || len(v) > MaxAuditDetailValue ||
			!utf8.ValidString(e.Actor) || !utf8.ValidString(e.Target) || !utf8.ValidString(v) {
			t.Fatalf("out of bounds: %q %q %q", e.Actor, e.Target, v)
		}
		raw, err := json.Marshal(e)
		if err != nil || len(raw) > 8<<10 {
			t.Fatalf("encoded %d bytes, %v", len(raw), err)
		}
	})
}
