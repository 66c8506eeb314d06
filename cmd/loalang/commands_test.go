package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/daemon"
	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/firmware-sim/speaker"
	"github.com/loalang/loalang/health"
	"github.com/loalang/loalang/internal/audiotest"
	"github.com/loalang/loalang/uplink"
	"github.com/loalang/loalang/web/api"
)

// commandPaths walks the command tree: every command, as the words that
// name it.
func commandPaths(cmd *cobra.Command, prefix []string) [][]string {
	var out [][]string
	for _, sub := range cmd.Commands() {
		p := append(slices.Clone(prefix), sub.Name())
		out = append(out, p)
		out = append(out, commandPaths(sub, p)...)
	}
	return out
}

// TestEveryCommandHasHelp runs `--help` on every command in the tree: it
// exits 0 and prints usage; every loalang command (not cobra's own help
// and completion) has a short description and examples.
func TestEveryCommandHasHelp(t *testing.T) {
	paths := commandPaths(newRoot(&cli{getenv: noEnv}), nil)
	if len(paths) < 40 {
		t.Fatalf("only %d commands: %v", len(paths), paths)
	}
	for _, p := range append([][]string{{}}, paths...) {
		var out bytes.Buffer
		err := run(context.Background(), append(slices.Clone(p), "--help"), noEnv, strings.NewReader(""), &out)
		if code := exitCode(err); code != exitOK || !strings.Contains(out.String(), "Usage:") {
			t.Errorf("loalang %v --help: exit %d (%v)\n%s", p, code, err, out.String())
			continue
		}
		builtin := len(p) > 0 && (p[0] == "completion" || p[0] == "help")
		if !builtin && !strings.Contains(out.String(), "Examples:\n  loalang") {
			t.Errorf("loalang %v --help has no examples:\n%s", p, out.String())
		}
	}
}

func noEnv(string) string { return "" }

// TestCompletionScripts: `completion bash|zsh|fish` print scripts that
// complete loalang.
func TestCompletionScripts(t *testing.T) {
	for shell, want := range map[string]string{"bash": "__start_loalang", "zsh": "#compdef loalang", "fish": "complete -c loalang"} {
		var out bytes.Buffer
		if err := run(context.Background(), []string{"completion", shell}, noEnv, strings.NewReader(""), &out); err != nil || !strings.Contains(out.String(), want) {
			t.Errorf("completion %s: %v, %.200q", shell, err, out.String())
		}
	}
}

// daemonForCLI starts a real daemon with one zone, one speaker (simulated,
// online) and no sound card, and returns its HTTP address and data dir.
func daemonForCLI(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Site, cfg.DataDir, cfg.HTTP.Addr, cfg.MQTT.Listen, cfg.WebRTC.UDPPort = "cli", dir, "127.0.0.1:0", "127.0.0.1:0", 0
	cfg.Zones = []config.Zone{{ID: "a"}, {ID: "hall-line", Wired: true}}
	cfg.Devices = []config.Device{{ID: "spk-1", Kind: "speaker", Name: "Loa 1", Zones: []string{"a"}}}
	// A relay board whose serial link is absent: the hall reports it.
	cfg.RelayBoards = []config.RelayBoard{{ID: "relay-1", Port: filepath.Join(dir, "relay.pty"), Baud: 9600, SlaveID: 1,
		ZoneCoils: map[string]int{"hall-line": 1}, Warmup: 100 * time.Millisecond, Tail: 100 * time.Millisecond, IdleOff: time.Second}}
	ctx, cancel := context.WithCancel(context.Background())
	d, err := daemon.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	var b wire.Bundle
	raw, _ := os.ReadFile(filepath.Join(dir, daemon.BundleFile))
	json.Unmarshal(raw, &b)
	spk, err := speaker.New(speaker.Config{ID: "spk-1", Site: b.Site, Broker: b.Broker, Username: "spk-1", Password: b.Devices[0].Password, Zones: []string{"a"}, KeepPlayed: -1})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { spk.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; d.Close() })
	return d.Ready().HTTP, dir
}

// TestCommandsAgainstDaemon runs every command that talks to the API
// against a real daemon, with --json (decoded into the API's types) and
// the documented exit codes: 0 ok, 2 usage, 3 not signed in or not
// allowed, 4 not found or conflict, 1 other refusals.
func TestCommandsAgainstDaemon(t *testing.T) {
	addr, dir := daemonForCLI(t)
	files := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(files, name)
		os.WriteFile(p, []byte(content), 0o600)
		return p
	}
	adminHome, headHome := t.TempDir(), t.TempDir()
	type result struct {
		out  string
		err  error
		code int
	}
	as := func(home, stdin string, args ...string) result {
		var out bytes.Buffer
		env := map[string]string{"HOME": home}
		err := run(context.Background(), append([]string{"--server", "http://" + addr}, args...), func(k string) string { return env[k] }, strings.NewReader(stdin), &out)
		return result{out.String(), err, exitCode(err)}
	}
	admin := func(args ...string) result { return as(adminHome, "", args...) }
	expect := func(r result, code int, args ...string) result {
		t.Helper()
		if r.code != code {
			t.Fatalf("loalang %v: exit %d (%v), want %d\n%s", args, r.code, r.err, code, r.out)
		}
		return r
	}
	// ok runs an admin command with --json and decodes its output into v.
	ok := func(v any, args ...string) {
		t.Helper()
		r := expect(admin(append([]string{"--json"}, args...)...), exitOK, args...)
		if v == nil {
			v = new(any)
		}
		if err := json.Unmarshal([]byte(r.out), v); err != nil {
			t.Fatalf("loalang --json %v: %v\n%s", args, err, r.out)
		}
	}
	code := func(want int, args ...string) { t.Helper(); expect(admin(args...), want, args...) }

	// Not signed in, a wrong password, bad command lines.
	code(exitAuth, "devices")
	code(exitAuth, "login", "--password-file", write("wrong", "not-the-password"))
	code(exitUsage, "frobnicate")
	code(exitUsage, "devices", "--frob")
	code(exitUsage, "users", "frob")
	code(exitUsage, "devices", "ping")
	pwFile := filepath.Join(dir, daemon.AdminPassFile)
	var login map[string]any
	ok(&login, "login", "--password-file", pwFile)
	if login["username"] != "admin" {
		t.Fatalf("login: %v", login)
	}
	var me api.User
	ok(&me, "whoami")
	if me.Username != "admin" || me.Role != "admin" {
		t.Fatalf("whoami: %+v", me)
	}

	// Devices.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var devs []api.Device
		ok(&devs, "devices")
		if slices.ContainsFunc(devs, func(d api.Device) bool { return d.ID == "spk-1" && d.Online }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("spk-1 never online: %+v", devs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Shell completion offers the server's ids once signed in.
	if r := admin("__complete", "devices", "ping", ""); !strings.Contains(r.out, "spk-1\n") {
		t.Fatalf("completion of device ids: %v %q", r.err, r.out)
	}
	var ping api.PingResponse
	ok(&ping, "devices", "ping", "spk-1")
	if ping.ID != "spk-1" || ping.RTTMS <= 0 {
		t.Fatalf("ping: %+v", ping)
	}
	code(exitNotFound, "devices", "ping", "spk-404")
	var vol api.VolumeResponse
	ok(&vol, "devices", "volume", "spk-1", "70")
	if vol.Volume != 70 {
		t.Fatalf("volume: %+v", vol)
	}
	code(exitUsage, "devices", "volume", "spk-1", "200")

	// Users.
	headPW := write("head", "truong-thon-pass-1234")
	var u api.User
	ok(&u, "users", "add", "truongthon", "--role", "head", "--password-file", headPW)
	if u.Username != "truongthon" || u.Role != "head" {
		t.Fatalf("users add: %+v", u)
	}
	code(exitNotFound, "users", "add", "truongthon", "--role", "head", "--password-file", headPW)
	code(exitUsage, "users", "add", "x", "--role", "king", "--password-file", headPW)
	code(exitUsage, "users", "add", "x", "--password-file", headPW)
	code(exitUsage, "users", "set", "truongthon")
	code(exitNotFound, "users", "set", "nobody", "--role", "head")
	// A password from standard input.
	expect(as(adminHome, "cong-an-pass-5678\n", "users", "add", "congan", "--role", "police", "--cameras", "cam-9"), exitOK)
	ok(&u, "users", "set", "congan", "--cameras", "cam-9,cam-10")
	if !slices.Equal(u.Cameras, []string{"cam-9", "cam-10"}) {
		t.Fatalf("users set: %+v", u)
	}
	var users []api.User
	ok(&users, "users", "list")
	if len(users) != 3 {
		t.Fatalf("users list: %+v", users)
	}
	// The head may not manage users (403: exit 3), and changes their own password.
	expect(as(headHome, "", "login", "--username", "truongthon", "--password-file", headPW), exitOK)
	expect(as(headHome, "", "users", "list"), exitAuth)
	expect(as(headHome, "", "passwd", "--old-password-file", headPW, "--new-password-file", write("head2", "truong-thon-pass-9999")), exitOK)
	expect(as(headHome, "", "passwd", "--old-password-file", headPW, "--new-password-file", headPW), exitError) // old one is wrong now: 400

	// Cameras.
	var cam api.Camera
	ok(&cam, "cameras", "add", "cam-9", "--name", "Đình làng", "--url", "rtsp://127.0.0.1:1/cam-9", "--username", "u", "--password-file", write("campw", "cam-secret"))
	if cam.ID != "cam-9" || !cam.HasSecret || strings.Contains(cam.URL, "cam-secret") {
		t.Fatalf("cameras add: %+v", cam)
	}
	code(exitNotFound, "cameras", "add", "cam-9", "--url", "rtsp://127.0.0.1:1/x")
	code(exitUsage, "cameras", "add", "cam-8")
	code(exitError, "cameras", "add", "cam-8", "--url", "http://not-rtsp/")
	code(exitUsage, "cameras", "set", "cam-9")
	ok(&cam, "cameras", "set", "cam-9", "--name", "Cổng đình")
	if cam.Name != "Cổng đình" || !cam.HasSecret {
		t.Fatalf("cameras set: %+v", cam)
	}
	var cams []api.Camera
	ok(&cams, "cameras", "list")
	if len(cams) != 1 || cams[0].ID != "cam-9" {
		t.Fatalf("cameras list: %+v", cams)
	}
	var watch map[string]string
	ok(&watch, "cameras", "watch", "cam-9")
	if watch["whep"] != "http://"+addr+"/api/v1/cameras/cam-9/whep" || !strings.HasPrefix(watch["page"], "http://"+addr+"/app/cameras") {
		t.Fatalf("cameras watch: %v", watch)
	}
	code(exitNotFound, "cameras", "watch", "cam-404")
	ok(nil, "cameras", "remove", "cam-9")
	code(exitNotFound, "cameras", "remove", "cam-9")

	// Media, broadcasts.
	wav := filepath.Join(files, "tone.wav")
	os.WriteFile(wav, audiotest.WAV(audiotest.Tone(1000, 0.5, 16000, 500), 16000, 1), 0o644)
	var m api.Media
	ok(&m, "media", "upload", wav)
	if m.DurationMS != 500 || len(m.ID) != 64 {
		t.Fatalf("media upload: %+v", m)
	}
	var m2 api.Media
	ok(&m2, "media", "show", m.ID)
	if m2 != m {
		t.Fatalf("media show: %+v, uploaded %+v", m2, m)
	}
	code(exitNotFound, "media", "show", strings.Repeat("0", 64))
	var media []api.Media
	ok(&media, "media")
	if len(media) != 1 || media[0].ID != m.ID {
		t.Fatalf("media list: %+v", media)
	}
	var b api.Broadcast
	ok(&b, "broadcast", "--zones", "a", wav)
	if b.State != "done" || len(b.Devices) != 1 || b.Devices[0].FramesPlayed == 0 {
		t.Fatalf("broadcast: %+v", b)
	}
	ok(&b, "broadcast", "show", b.ID)
	var bs []api.Broadcast
	ok(&bs, "broadcast", "list")
	if len(bs) == 0 {
		t.Fatal("broadcast list is empty")
	}
	code(exitNotFound, "broadcast", "show", "b-404")
	code(exitNotFound, "broadcast", "stop", b.ID) // it has ended: 409
	code(exitUsage, "broadcast", wav)             // no zones
	code(exitError, "broadcast", "--zones", "nowhere", wav)
	var stopped api.StopAllResponse
	ok(&stopped, "stop-all")

	// Schedules.
	sched := write("sang.json", `{"id":"sang","name":"Bản tin sáng","rrule":"FREQ=DAILY;BYHOUR=6;BYMINUTE=30","zones":["a"],"source":{"kind":"media","media_id":"`+m.ID+`"}}`)
	var s api.Schedule
	ok(&s, "schedules", "create", "--file", sched)
	if s.ID != "sang" || s.Next == "" {
		t.Fatalf("schedules create: %+v", s)
	}
	code(exitNotFound, "schedules", "create", "--file", sched)
	code(exitUsage, "schedules", "create")
	var ss []api.Schedule
	ok(&ss, "schedules")
	ok(&s, "schedules", "show", "sang")
	var next api.ScheduleNext
	ok(&next, "schedules", "next", "sang", "-n", "3")
	if len(next.Next) != 3 {
		t.Fatalf("next: %+v", next)
	}
	var firings []api.Firing
	ok(&firings, "schedules", "firings", "sang")
	s.Name = "Bản tin sáng (mới)"
	raw, _ := json.Marshal(s)
	ok(&s, "schedules", "update", "sang", "--file", write("sang2.json", string(raw)))
	if s.Name != "Bản tin sáng (mới)" {
		t.Fatalf("update: %+v", s)
	}
	code(exitNotFound, "schedules", "update", "sang", "--file", write("sang3.json", string(raw))) // stale version: 409
	ok(nil, "schedules", "delete", "sang")
	code(exitNotFound, "schedules", "show", "sang")

	// Hall: no sound card, and a relay board whose link is missing.
	var h api.Hall
	ok(&h, "hall")
	if h.Sink.Configured || !h.Board.Configured || h.Board.OK || !strings.Contains(h.Board.Port, "relay.pty") {
		t.Fatalf("hall: %+v", h)
	}
	if r := expect(admin("hall"), exitOK, "hall"); !strings.Contains(r.out, "sound card:  not configured") || !strings.Contains(r.out, "relay board: FAULT") {
		t.Fatalf("hall: %s", r.out)
	}

	// Uplink: not configured on this daemon.
	var us uplink.Status
	ok(&us, "uplink", "status")
	if us.Enabled || us.Connected {
		t.Fatalf("uplink status: %+v", us)
	}
	if r := expect(admin("uplink", "status"), exitOK, "uplink status"); !strings.Contains(r.out, "not configured") {
		t.Fatalf("uplink status: %s", r.out)
	}

	// Health, without signing in (a relay alarm is not a part down).
	r := as(t.TempDir(), "", "--json", "health")
	var hs api.Health
	if r.code != exitOK || json.Unmarshal([]byte(r.out), &hs) != nil || hs.Status != "ok" || len(hs.Problems) != 0 {
		t.Fatalf("health: exit %d %v\n%s", r.code, r.err, r.out)
	}
	if r := as(t.TempDir(), "", "health"); r.out != "ok\n" {
		t.Fatalf("health: %q", r.out)
	}

	// Audit: JSON, CSV to a file, bad times.
	var events []api.AuditEvent
	ok(&events, "audit", "--since", "1h")
	var actions []string
	for _, e := range events {
		actions = append(actions, e.Action)
	}
	for _, want := range []string{"user.create", "camera.create", "camera.delete", "media.upload"} {
		if !slices.Contains(actions, want) {
			t.Errorf("audit lacks %s: %v", want, actions)
		}
	}
	csvFile := filepath.Join(files, "audit.csv")
	code(exitOK, "audit", "--csv", "--output", csvFile)
	if raw, _ := os.ReadFile(csvFile); !strings.HasPrefix(string(raw), "time,actor,action,target,detail\n") || !strings.Contains(string(raw), "camera.create") {
		t.Fatalf("audit csv: %.300s", raw)
	}
	if fi, _ := os.Stat(csvFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("audit csv mode %v", fi.Mode())
	}
	if r := admin("audit", "--csv", "--limit", "1"); !strings.HasPrefix(r.out, "time,actor") || strings.Count(r.out, "\n") != 2 {
		t.Fatalf("audit csv to stdout: %v %q", r.err, r.out)
	}
	code(exitUsage, "audit", "--since", "yesterday-ish")
	code(exitUsage, "--json", "audit", "--csv")

	// Users removed; logout ends the session.
	ok(nil, "users", "remove", "congan")
	code(exitNotFound, "users", "remove", "congan")
	ok(nil, "logout")
	code(exitAuth, "devices")
}

// TestErrorsAsJSON: with --json an error is one JSON object carrying the
// exit code and the server's status and field.
func TestErrorsAsJSON(t *testing.T) {
	var out bytes.Buffer
	printError(&out, &runError{&apiError{Status: 422, Msg: "rrule: never fires", Field: "rrule"}}, true)
	var v map[string]any
	if err := json.Unmarshal(out.Bytes(), &v); err != nil || v["exit_code"] != float64(exitError) || v["status"] != float64(422) || v["field"] != "rrule" {
		t.Fatalf("%s %v", out.String(), err)
	}
	if !jsonRequested([]string{"devices", "--json"}) || jsonRequested([]string{"--", "--json"}) {
		t.Fatal("jsonRequested")
	}
	if exitCode(errors.New("x")) != exitError || exitCode(nil) != exitOK {
		t.Fatal("exitCode")
	}
}

// TestHealthDegraded: a daemon whose external broker is unreachable is
// degraded; `loalang health` names the part and exits 1.
func TestHealthDegraded(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close() // nothing listens here: the broker is down
	pw := filepath.Join(dir, "mqtt-pw")
	os.WriteFile(pw, []byte("daemon-secret\n"), 0o600)
	cfg := config.Default()
	cfg.Site, cfg.DataDir, cfg.HTTP.Addr, cfg.WebRTC.UDPPort = "cli", dir, "127.0.0.1:0", 0
	cfg.MQTT.URL, cfg.MQTT.Username, cfg.MQTT.PasswordFile = "tcp://"+closed, "loalangd", pw
	cfg.Zones = []config.Zone{{ID: "a"}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, err := daemon.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var out bytes.Buffer
	err = run(context.Background(), []string{"--server", "http://" + d.Ready().HTTP, "--json", "health"}, noEnv, strings.NewReader(""), &out)
	var hs api.Health
	if exitCode(err) != exitError || json.Unmarshal(out.Bytes(), &hs) != nil || hs.Status != "degraded" ||
		!slices.ContainsFunc(hs.Problems, func(p health.Problem) bool { return p.Component == "mqtt" }) {
		t.Fatalf("health: exit %d %v\n%s", exitCode(err), err, out.String())
	}
}
