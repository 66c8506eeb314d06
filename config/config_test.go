package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func noEnv(string) string { return "" }

// TestExampleIsDefaults pins configs/example.yaml to Default(): the
// documented reference cannot drift from the code. Only the example
// sections (zones and devices) differ.
func TestExampleIsDefaults(t *testing.T) {
	cfg, err := Load("../configs/example.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Devices) == 0 || len(cfg.Cameras) == 0 || len(cfg.RelayBoards) == 0 {
		t.Fatal("example lost its example sections")
	}
	cfg.Zones, cfg.Devices, cfg.Cameras, cfg.RelayBoards = nil, nil, nil, nil
	cfg.WebRTC.ICEServers, cfg.WebRTC.NAT1To1IPs = nil, nil
	cfg.Schedule.RelayAllow = nil
	if want := Default(); !reflect.DeepEqual(cfg, want) {
		t.Fatalf("example.yaml differs from Default():\n got %+v\nwant %+v", cfg, want)
	}
}

func TestDemoVillage(t *testing.T) {
	cfg, err := Load("../configs/demo.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	zones := map[string]int{}
	for _, d := range cfg.Devices {
		for _, z := range d.Zones {
			zones[z]++
		}
	}
	if len(cfg.Devices) != 12 || len(zones) != 3 || len(cfg.Cameras) != 2 || len(cfg.RelayBoards) != 1 {
		t.Fatalf("demo: %d speakers in %d zones, %d cameras, %d boards", len(cfg.Devices), len(zones), len(cfg.Cameras), len(cfg.RelayBoards))
	}
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestBadConfigNamesFileKeyAndReason(t *testing.T) {
	cases := []struct {
		name, body, key, reason string
	}{
		{"unknown key", "site: x\nmqtt:\n  listen: 127.0.0.1:1\n  bogus: 3\n", "mqtt.bogus", `unknown key "bogus"`},
		{"wrong type", "broadcast:\n  packets_per_frame: lots\n", "broadcast.packets_per_frame", "want an integer"},
		{"bad duration", "broadcast:\n  playout_delay: soon\n", "broadcast.playout_delay", "duration"},
		{"bad value", "broadcast:\n  preempt_policy: maybe\n", "broadcast.preempt_policy", "not resume or interrupt"},
		{"unknown zone", "zones: [{id: a}]\ndevices:\n  - {id: s1, kind: speaker, zones: [b]}\n", "devices[0].zones", `unknown zone "b"`},
		{"list item type", "zones:\n  - id: a\n    wired: perhaps\n", "zones[0].wired", "true or false"},
		{"audit kept under 12 months", "audit:\n  retention_days: 90\n", "audit.retention_days", "legal record kept for 12 months"},
		{"audit bound too small", "audit:\n  max_bytes: 1000\n", "audit.max_bytes", "at least 1048576"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeConfig(t, c.body)
			_, err := Load(path, noEnv)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want *Error", err)
			}
			if ce.File != path || ce.Key != c.key || !strings.Contains(ce.Reason, c.reason) {
				t.Fatalf("got file=%q key=%q reason=%q; want key %q reason containing %q", ce.File, ce.Key, ce.Reason, c.key, c.reason)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.key) {
				t.Fatalf("message %q lacks file or key", err)
			}
		})
	}
}

func TestEnvironmentLayer(t *testing.T) {
	env := map[string]string{
		"LOALANG_MQTT_URL":                   "tcp://127.0.0.1:1999",
		"LOALANG_MQTT_PASSWORD_FILE":         "/tmp/pw",
		"LOALANG_WEBRTC_LOOPBACK_CANDIDATES": "true",
		"LOALANG_BROADCAST_PLAYOUT_DELAY":    "300ms",
	}
	cfg, err := Load("../configs/example.yaml", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MQTT.URL != "tcp://127.0.0.1:1999" || !cfg.WebRTC.LoopbackCandidates || cfg.Broadcast.PlayoutDelay.Milliseconds() != 300 {
		t.Fatalf("environment not applied: %+v", cfg)
	}
	_, err = Load("", func(k string) string {
		if k == "LOALANG_WEBRTC_UDP_PORT" {
			return "many"
		}
		return ""
	})
	var ce *Error
	if !errors.As(err, &ce) || ce.File != "environment" || ce.Key != "LOALANG_WEBRTC_UDP_PORT" {
		t.Fatalf("bad env: %v", err)
	}
}
