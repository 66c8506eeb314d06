package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/daemon"
)

// TestSchedulesCLI drives `loalang schedules` against a real daemon:
// create from a file, list, show, next, firings, a field-named error, and
// delete.
func TestSchedulesCLI(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Site, cfg.DataDir, cfg.HTTP.Addr, cfg.MQTT.Listen, cfg.WebRTC.UDPPort = "cli", dir, "127.0.0.1:0", "127.0.0.1:0", 0
	cfg.Zones = []config.Zone{{ID: "a"}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := daemon.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	env := map[string]string{"HOME": t.TempDir()}
	loalang := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"--server", "http://" + d.Ready().HTTP}, args...), func(k string) string { return env[k] }, strings.NewReader(""), &out)
		return out.String(), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := loalang(args...)
		if err != nil {
			t.Fatalf("loalang %v: %v\n%s", args, err, out)
		}
		return out
	}
	must("login", "--password-file", filepath.Join(dir, daemon.AdminPassFile))

	f := filepath.Join(t.TempDir(), "sang.json")
	os.WriteFile(f, []byte(`{"id":"sang","name":"Bản tin sáng","rrule":"FREQ=DAILY;BYHOUR=6;BYMINUTE=30","zones":["a"],"source":{"kind":"text","text":"Xin chào bà con"}}`), 0o644)
	if out := must("schedules", "create", "--file", f); !strings.Contains(out, "created sang; next ") || !strings.Contains(out, "T06:30:00+07:00") {
		t.Fatalf("create: %s", out)
	}
	if out := must("schedules", "list"); !strings.Contains(out, "sang") || !strings.Contains(out, "FREQ=DAILY;BYHOUR=6;BYMINUTE=30") {
		t.Fatalf("list: %s", out)
	}
	if out := must("schedules", "show", "sang"); !strings.Contains(out, `"name": "Bản tin sáng"`) {
		t.Fatalf("show: %s", out)
	}
	if out := must("schedules", "next", "sang", "-n", "3"); strings.Count(out, "T06:30:00+07:00") != 3 {
		t.Fatalf("next: %s", out)
	}
	if out := must("schedules", "firings", "sang"); !strings.HasPrefix(out, "OCCURRENCE") {
		t.Fatalf("firings: %s", out)
	}
	os.WriteFile(f, []byte(`{"name":"x","rrule":"FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30","zones":["a"],"source":{"kind":"text","text":"x"}}`), 0o644)
	if _, err := loalang("schedules", "create", "--file", f); err == nil || !strings.Contains(err.Error(), "422") || !strings.Contains(err.Error(), "rrule:") {
		t.Fatalf("never-firing rule: %v", err)
	}
	must("schedules", "delete", "sang")
	if _, err := loalang("schedules", "show", "sang"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("show deleted: %v", err)
	}
}
