package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/daemon"
	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/firmware-sim/speaker"
	"github.com/loalang/loalang/internal/audiotest"
)

// TestCLIAgainstDaemon drives the CLI against a real daemon with one
// simulated speaker: login stores a 0600 token, devices prints a table,
// ping reaches the speaker, a file is uploaded and broadcast.
func TestCLIAgainstDaemon(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Site, cfg.DataDir, cfg.HTTP.Addr, cfg.MQTT.Listen, cfg.WebRTC.UDPPort = "cli", dir, "127.0.0.1:0", "127.0.0.1:0", 0
	cfg.Zones = []config.Zone{{ID: "a"}}
	cfg.Devices = []config.Device{{ID: "spk-1", Kind: "speaker", Name: "Loa 1", Zones: []string{"a"}}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := daemon.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	var b wire.Bundle
	raw, _ := os.ReadFile(filepath.Join(dir, daemon.BundleFile))
	json.Unmarshal(raw, &b)
	spk, err := speaker.New(speaker.Config{ID: "spk-1", Site: b.Site, Broker: b.Broker, Username: "spk-1", Password: b.Devices[0].Password, Zones: []string{"a"}, KeepPlayed: -1})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { spk.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	home := t.TempDir()
	env := map[string]string{"HOME": home}
	getenv := func(k string) string { return env[k] }
	cli := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		full := append([]string{"--server", "http://" + d.Ready().HTTP}, args...)
		if err := run(context.Background(), full, getenv, strings.NewReader(""), &out); err != nil {
			t.Fatalf("loalang %v: %v\n%s", args, err, out.String())
		}
		return out.String()
	}
	cli("login", "--password-file", filepath.Join(dir, daemon.AdminPassFile))
	fi, err := os.Stat(filepath.Join(home, ".config", "loalang", "cli.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", fi, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(cli("devices"), "online") {
		if time.Now().After(deadline) {
			t.Fatal("speaker never online in `loalang devices`")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if out := cli("devices", "ping", "spk-1"); !strings.Contains(out, "spk-1 answered") {
		t.Fatalf("ping: %s", out)
	}
	wav := filepath.Join(t.TempDir(), "tone.wav")
	os.WriteFile(wav, audiotest.WAV(audiotest.Tone(1000, 0.5, 16000, 500), 16000, 1), 0o644)
	if out := cli("media", "upload", wav); !strings.Contains(out, "0.5 s") {
		t.Fatalf("upload: %s", out)
	}
	out := cli("broadcast", "--zones", "a", wav)
	if !strings.Contains(out, "done") || !strings.Contains(out, "spk-1") {
		t.Fatalf("broadcast: %s", out)
	}
	id := strings.Fields(out)[1]
	if show := cli("broadcast", "show", id); !strings.Contains(show, fmt.Sprintf("%s  done", id)) {
		t.Fatalf("show: %s", show)
	}
	// An error from the server reaches the user with its reason.
	var errOut bytes.Buffer
	err = run(context.Background(), []string{"--server", "http://" + d.Ready().HTTP, "broadcast", "--zones", "nowhere", "--text", "xin chào"}, getenv, strings.NewReader(""), &errOut)
	if err == nil || !strings.Contains(err.Error(), "nowhere") {
		t.Fatalf("unknown zone: %v", err)
	}
}
