package api_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/loalang/loalang/broadcast/media"
	"github.com/loalang/loalang/store"
	"github.com/loalang/loalang/web"
	"github.com/loalang/loalang/web/api"
)

// jsonFields maps each JSON field name of a struct type to its kind.
func jsonFields(t reflect.Type) map[string]reflect.Kind {
	out := map[string]reflect.Kind{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		k := f.Type.Kind()
		if k == reflect.Pointer {
			k = f.Type.Elem().Kind()
		}
		out[name] = k
	}
	return out
}

// TestMirrorsMatchTheirSources checks that every field a mirrored type
// declares exists in the server's type with the same JSON name and kind,
// so the CLI cannot read a field the server no longer sends. (The server
// may add fields; clients ignore what they do not know.)
func TestMirrorsMatchTheirSources(t *testing.T) {
	for _, c := range []struct {
		mirror, source any
	}{
		{api.AuditEvent{}, store.Event{}},
		{api.Media{}, media.Info{}},
		{api.Schedule{}, web.ScheduleView{}},
		{api.ScheduleSource{}, web.SourceView{}},
	} {
		m, s := reflect.TypeOf(c.mirror), reflect.TypeOf(c.source)
		mf, sf := jsonFields(m), jsonFields(s)
		for name, kind := range mf {
			sk, ok := sf[name]
			switch {
			case !ok:
				t.Errorf("%s.%s: %s has no such JSON field", m, name, s)
			case sk != kind && !(name == "duration" && sk == reflect.Int64 && kind == reflect.String):
				// SourceView's duration is written as a string by its MarshalJSON.
				t.Errorf("%s.%s is %s, %s has %s", m, name, kind, s, sk)
			}
		}
	}
}

// TestRulesCatchDrift shows the check above can fail.
func TestRulesCatchDrift(t *testing.T) {
	type bad struct {
		Time int `json:"time"`
	}
	if jsonFields(reflect.TypeOf(bad{}))["time"] == jsonFields(reflect.TypeOf(store.Event{}))["time"] {
		t.Fatal("a kind change went unseen")
	}
	if _, ok := jsonFields(reflect.TypeOf(store.Event{}))["nonexistent"]; ok {
		t.Fatal("an unknown field was found")
	}
}
