package daemon_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/daemon"
	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/firmware-sim/camsim"
	"github.com/loalang/loalang/firmware-sim/speaker"
	"github.com/loalang/loalang/internal/audiotest"
)

// TestWebApp is issue 7's acceptance, run in headless Chromium against one
// daemon (6 speakers in zones a–c, two cameras, users of each role):
//  1. head signs in through the form, uploads a tone, broadcasts it to zone
//     a and watches the progress reach done; zone a's speakers played it;
//  2. head holds to talk with Chromium's fake microphone playing a 1 kHz
//     WAV: zone b's speakers record the tone, and the latency from WHIP
//     arrival to MQTT delivery is logged;
//  3. police sees decoding video for the permitted camera only and is
//     refused the broadcast page and API;
//  4. logged out, every page redirects to sign-in and every API call is 401;
//  5. CSRF: a cross-site form post and a fetch without the token are
//     refused.
//
// Like TestCameraChromium, it re-executes itself in a network namespace
// with only lo up when it can.
func TestWebApp(t *testing.T) {
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		t.Skip("chromium not installed (apt install chromium)")
	}
	if os.Getenv(netnsEnv) == "" && exec.Command("unshare", "-n", "true").Run() == nil {
		reexecInNetns(t, "TestWebApp")
		return
	}
	if os.Getenv(netnsEnv) != "1" {
		t.Log("not isolated: Chromium runs in the host namespace, limited to loopback by flags")
	}
	webApp(t, chromium)
}

// outputDir is where screenshots go: $LOALANG_TEST_OUTPUT or
// <repo>/test-output (gitignored).
func outputDir(t *testing.T) string {
	dir := os.Getenv("LOALANG_TEST_OUTPUT")
	if dir == "" {
		dir, _ = filepath.Abs(filepath.Join("..", "test-output"))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser is one headless Chromium tab with helpers.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	out  string
}

func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// open navigates and waits for the app to have rendered the page.
func (b *browser) open(path string) {
	b.t.Helper()
	b.do("open "+path, chromedp.Navigate(b.base+path))
	b.waitReady()
}

func (b *browser) waitReady() {
	b.t.Helper()
	eventually(b.t, 10*time.Second, "page ready", func() bool {
		return eval[bool](b, `document.readyState === "complete" && (document.body.dataset.ready === "1" || !document.getElementById("main"))`)
	})
}

func (b *browser) location() string {
	b.t.Helper()
	loc, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		b.t.Fatal(err)
	}
	return loc
}

func (b *browser) screenshot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100)) // 100: PNG (lower is JPEG)
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(b.out, "webapp-"+name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", path)
}

// signIn fills the sign-in form like a user.
func (b *browser) signIn(user, password string) {
	b.t.Helper()
	b.do("sign-in page", chromedp.Navigate(b.base+"/app/login"))
	b.do("sign in",
		chromedp.SetValue(chromedp.CSS("#username"), user),
		chromedp.SetValue(chromedp.CSS("#password"), password),
		chromedp.Click(chromedp.CSS("#login-submit")))
	eventually(b.t, 10*time.Second, "signed in as "+user, func() bool {
		return strings.Contains(b.location(), "/app/") && !strings.Contains(b.location(), "/login") &&
			eval[string](b, `document.body.dataset.user || ""`) == user
	})
	b.waitReady()
}

func (b *browser) signOut() {
	b.t.Helper()
	b.do("sign out", chromedp.Click(chromedp.CSS("form.logout button")))
	eventually(b.t, 10*time.Second, "signed out", func() bool { return strings.Contains(b.location(), "/app/login") })
}

// zoneProbe is an MQTT subscriber on a zone's audio topic, with a
// provisioned device's credentials and its own client id: it timestamps
// every frame on arrival.
type zoneProbe struct {
	mu     sync.Mutex
	frames []probeFrame
	c      mqtt.Client
}

type probeFrame struct {
	f    wire.Frame
	recv time.Time
}

func startProbe(t *testing.T, dataDir, zone string) *zoneProbe {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dataDir, daemon.BundleFile))
	if err != nil {
		t.Fatal(err)
	}
	var bundle wire.Bundle
	json.Unmarshal(raw, &bundle)
	var dev *wire.BundleDevice
	for i := range bundle.Devices {
		if bundle.Devices[i].ID == "probe-"+zone && slices.Contains(bundle.Devices[i].Zones, zone) {
			dev = &bundle.Devices[i]
		}
	}
	if dev == nil {
		t.Fatalf("no device probe-%s in zone %s (startSpeakers leaves probe-* unsimulated)", zone, zone)
	}
	p := &zoneProbe{}
	opts := mqtt.NewClientOptions().AddBroker(bundle.Broker).SetClientID(dev.ID).
		SetUsername(dev.Username).SetPassword(dev.Password).SetProtocolVersion(4).SetCleanSession(true)
	p.c = mqtt.NewClient(opts)
	if tok := p.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("probe connect: %v", tok.Error())
	}
	topic := wire.MustTopics(bundle.Site).ZoneAudio(zone)
	tok := p.c.Subscribe(topic, 0, func(_ mqtt.Client, m mqtt.Message) {
		recv := time.Now()
		var f wire.Frame
		if f.UnmarshalBinary(m.Payload()) == nil {
			p.mu.Lock()
			p.frames = append(p.frames, probeFrame{f, recv})
			p.mu.Unlock()
		}
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("probe subscribe: %v", tok.Error())
	}
	t.Cleanup(func() { p.c.Disconnect(100) })
	return p
}

// latencies returns, per packet of live frames, MQTT delivery minus the
// packet's capture time on the controller clock (PlayAt + i·20 ms). The
// WHIP endpoint maps capture times from RTP timestamps onto the first
// packet's arrival, so this is WHIP arrival -> delivery to a subscriber
// in the zone, up to the arrival jitter that loalangd logs.
func (p *zoneProbe) latencies() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []time.Duration
	for _, pf := range p.frames {
		if pf.f.Flags&wire.FlagLive == 0 {
			continue
		}
		for i := range pf.f.Packets {
			at := time.UnixMicro(pf.f.PlayAt).Add(time.Duration(i) * wire.PacketMS * time.Millisecond)
			out = append(out, pf.recv.Sub(at))
		}
	}
	slices.Sort(out)
	return out
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(float64(len(d))*q))]
}

func webApp(t *testing.T, chromium string) {
	// A 1 kHz tone for Chromium's fake microphone: 48 kHz mono 16-bit.
	micWAV := filepath.Join(t.TempDir(), "mic-1khz.wav")
	if err := os.WriteFile(micWAV, audiotest.WAV(audiotest.Tone(1000, 0.5, 48000, 4000), 48000, 1), 0o644); err != nil {
		t.Fatal(err)
	}
	_, camURL := startCam(t, camsim.Options{})
	dir := t.TempDir()
	cfg := testConfig(t, dir, 6)
	// startProbe listens to zone b as this device: every login may use only
	// its own client id, so the probe cannot borrow a simulated speaker's.
	cfg.Devices = append(cfg.Devices, config.Device{ID: "probe-b", Kind: "speaker", Name: "Probe", Zones: []string{"b"}})
	cfg.WebRTC.IdleClose = 300 * time.Millisecond
	cfg.HTTP.TLSAddr = "127.0.0.1:0"
	cfg.Cameras = []config.Camera{{ID: "cong-dinh", Name: "Cổng đình", URL: camURL}, {ID: "kho", Name: "Kho", URL: camURL}}
	d := startDaemon(t, cfg)
	base := "http://" + d.Ready().HTTP
	rec := t.TempDir()
	speakers := startSpeakers(t, dir, func(c *speaker.Config) { c.RecordDir = rec; c.KeepPlayed = 0 })
	admin := login(t, base, "admin", adminPassword(t, dir))
	for _, u := range []map[string]any{
		{"username": "truong-thon", "password": "mot-hai-ba-bon", "role": "head"},
		{"username": "congan", "password": "nam-sau-bay-tam", "role": "police", "cameras": []string{"cong-dinh"}},
	} {
		if code, body := admin.do("POST", "/api/v1/users", u); code != 201 {
			t.Fatalf("create %v: %d %s", u["username"], code, body)
		}
	}
	eventually(t, 10*time.Second, "speakers ready", func() bool {
		for _, s := range speakers {
			if !s.Ready() {
				return false
			}
		}
		return true
	})
	checkHTTPS(t, d, dir)

	ctx := startChromium(t, chromium, 80*time.Second, chromedp.Flag("use-file-for-fake-audio-capture", micWAV))
	b := &browser{t: t, ctx: ctx, base: base, out: outputDir(t)}
	b.do("viewport", chromedp.EmulateViewport(390, 844))

	// 4. Logged out: every page redirects to sign-in, every API call is 401.
	for _, p := range []string{"/", "/app/", "/app/home", "/app/broadcast", "/app/schedules", "/app/devices", "/app/cameras", "/app/log", "/app/users", "/app/account"} {
		b.do("open "+p, chromedp.Navigate(base+p))
		if loc := b.location(); !strings.Contains(loc, "/app/login") {
			t.Errorf("logged out %s: at %s, want the sign-in page", p, loc)
		}
	}
	anon := &client{t: t, base: base}
	for _, c := range [][2]string{
		{"GET", "/api/v1/me"}, {"GET", "/api/v1/devices"}, {"GET", "/api/v1/broadcasts"}, {"POST", "/api/v1/broadcasts"},
		{"POST", "/api/v1/broadcasts/stop-all"}, {"POST", "/api/v1/media"}, {"GET", "/api/v1/cameras"}, {"POST", "/api/v1/cameras/cong-dinh/whep"},
		{"POST", "/api/v1/live/whip"}, {"DELETE", "/api/v1/live/whip/x"}, {"GET", "/api/v1/audit"}, {"GET", "/api/v1/users"},
		{"PUT", "/api/v1/me/password"}, {"POST", "/api/v1/devices/spk-01/volume"}, {"GET", "/api/v1/schedules"},
	} {
		if code, _ := anon.do(c[0], c[1], nil); code != 401 {
			t.Errorf("logged out %s %s: %d, want 401", c[0], c[1], code)
		}
	}
	eval[bool](b, `document.cookie = "lang=vi; path=/", true`)

	// 1. Head: sign in, upload a tone, broadcast it to zone a, watch it.
	b.signIn("truong-thon", "mot-hai-ba-bon")
	if got := eval[string](b, `document.querySelector(".tabs a.active").textContent`); got != "Trang chủ" {
		t.Errorf("home tab reads %q, want Vietnamese by default", got)
	}
	b.screenshot("home")
	toneWAV := filepath.Join(t.TempDir(), "tone-1khz.wav")
	os.WriteFile(toneWAV, audiotest.WAV(audiotest.Tone(1000, 0.5, 16000, 3000), 16000, 1), 0o644)
	b.open("/app/broadcast")
	b.do("upload", chromedp.Click(chromedp.CSS("#zone-a")), chromedp.SetUploadFiles(chromedp.CSS("#file"), []string{toneWAV}),
		chromedp.Click(chromedp.CSS("#upload")))
	eventually(t, 15*time.Second, "upload done in the page", func() bool {
		return eval[string](b, `document.getElementById("upload-label").dataset.media || ""`) != ""
	})
	if v := eval[int](b, `document.getElementById("upload-progress").value`); v != 100 {
		t.Errorf("upload progress %d, want 100", v)
	}
	b.do("start", chromedp.Click(chromedp.CSS("#start-media")))
	state := func() string {
		return eval[string](b, `(document.getElementById("bc-state") || {dataset: {}}).dataset.state || ""`)
	}
	eventually(t, 10*time.Second, "broadcast playing in the page", func() bool { return state() == "playing" })
	eventually(t, 5*time.Second, "per-speaker progress", func() bool {
		return eval[int](b, `document.querySelectorAll("#bc-status .dev-progress").length`) == 2
	})
	// Best effort: let the first delivery reports fill the bars for the screenshot.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end) && state() == "playing"; time.Sleep(100 * time.Millisecond) {
		if eval[bool](b, `[...document.querySelectorAll("#bc-status .progress")].some(p => +p.getAttribute("aria-valuenow") > 0)`) {
			break
		}
	}
	b.screenshot("broadcast")
	eventually(t, 20*time.Second, "broadcast done in the page", func() bool { return state() == "done" })
	bcID := eval[string](b, `document.getElementById("bc-state").dataset.id`)
	played := admin.broadcast(bcID)
	assertTone(t, cfg, rec, played.StreamIDs, "a", 0.05, "upload")

	// 2. Hold to talk in zone b.
	probe := startProbe(t, dir, "b")
	b.open("/app/broadcast")
	b.do("pick zone b", chromedp.Click(chromedp.CSS("#zone-b")))
	eval[bool](b, `document.getElementById("talk").dispatchEvent(new PointerEvent("pointerdown", {bubbles: true, cancelable: true})), true`)
	talkState := func() string { return eval[string](b, `document.getElementById("talk-state").dataset.state`) }
	eventually(t, 10*time.Second, "on air", func() bool {
		s := talkState()
		if s == "error" {
			t.Fatalf("hold to talk: %s", eval[string](b, `document.getElementById("talk-state").textContent`))
		}
		return s == "live"
	})
	liveID := eval[string](b, `window.loalang.LiveTalk.broadcast`)
	eventually(t, 15*time.Second, "3 s of live speech sent", func() bool { return admin.broadcast(liveID).Packets >= 150 })
	eval[bool](b, `document.getElementById("talk").dispatchEvent(new PointerEvent("pointerup", {bubbles: true})), true`)
	eventually(t, 10*time.Second, "released", func() bool { return talkState() == "idle" })
	eventually(t, 10*time.Second, "live broadcast done", func() bool { return admin.broadcast(liveID).State == "done" })
	live := admin.broadcast(liveID)
	t.Logf("live speech: %d packets, streams %v", live.Packets, live.StreamIDs)
	lat := probe.latencies()
	if len(lat) < 100 {
		t.Fatalf("probe saw %d live packets", len(lat))
	}
	t.Logf("live speech latency, WHIP arrival -> zone subscriber (%d packets): p50 %v p99 %v max %v (play-out delay %v on top)",
		len(lat), quantile(lat, 0.5), quantile(lat, 0.99), lat[len(lat)-1], cfg.Broadcast.LiveDelay)
	if p99 := quantile(lat, 0.99); p99 > cfg.Broadcast.LiveDelay {
		t.Errorf("p99 arrival -> speaker %v exceeds the live play-out delay %v: frames would be late", p99, cfg.Broadcast.LiveDelay)
	}
	// Bound: the fake microphone plays amplitude 0.5. Live speech is not
	// loudness-normalised, so with echo cancellation, noise suppression and
	// AGC off the speakers should play 0.5 after Chrome's Opus encoder
	// (about 32 kbit/s mono) and the speakers' decoder; ±30% allows for
	// encoder and packet-loss-concealment differences between Chromium
	// versions while still failing on an attenuated or AGC-pumped tone.
	if amp := assertTone(t, cfg, rec, live.StreamIDs, "b", 0.35, "live"); amp > 0.65 {
		t.Errorf("live: 1 kHz amplitude %.3f, want 0.5 ±30%%", amp)
	}
	archive := filepath.Join(dir, "archive", liveID+".opus")
	if raw, err := os.ReadFile(archive); err != nil {
		t.Fatalf("live archive: %v", err)
	} else if code, body := admin.upload("archive.opus", raw); code != 201 {
		t.Fatalf("the archive does not import as Ogg Opus: %d %s", code, body)
	} else {
		var info struct {
			DurationMS int `json:"duration_ms"`
		}
		json.Unmarshal(body, &info)
		if want := live.Packets * 20; math.Abs(float64(info.DurationMS-want)) > 200 {
			t.Errorf("archive lasts %d ms, want %d", info.DurationMS, want)
		}
		t.Logf("archive %s: %d bytes, %d ms", archive, len(raw), info.DurationMS)
	}
	b.open("/app/schedules")
	b.screenshot("schedules")
	b.signOut()

	// 3. Police: the permitted camera plays, the other is not listed; the
	// broadcast page and API are refused.
	b.signIn("congan", "nam-sau-bay-tam")
	b.open("/app/cameras")
	if n := eval[int](b, `document.querySelectorAll("#cam-grid .cam").length`); n != 1 {
		t.Errorf("police sees %d cameras, want 1", n)
	}
	eventually(t, 10*time.Second, "camera decoding in the grid", func() bool {
		return eval[int](b, `window.loalang.framesDecoded("cong-dinh")`) > 0
	})
	// Issue 15: the tile must not read "connecting" while its video plays.
	eventually(t, 5*time.Second, "the playing tile's status", func() bool {
		return eval[string](b, `document.querySelector('.cam[data-id="cong-dinh"]').dataset.status || ""`) == "playing" &&
			eval[string](b, `document.getElementById("cam-msg-cong-dinh").textContent`) == ""
	})
	b.screenshot("cameras")
	b.do("police to broadcast", chromedp.Navigate(base+"/app/broadcast"))
	if got := eval[string](b, `(document.getElementById("error-status") || {}).textContent || ""`); got != "403" {
		t.Errorf("police on the broadcast page: %q, want 403", got)
	}
	b.open("/app/cameras")
	if code := eval[int](b, `window.loalang.api("POST", "/api/v1/broadcasts", {text: "x", zones: ["a"]}).then(() => 200, (e) => e.status)`); code != 403 {
		t.Errorf("police POST /api/v1/broadcasts from the app: %d, want 403", code)
	}
	b.signOut()

	// 5. CSRF, signed in as admin.
	b.signIn("admin", adminPassword(t, dir))
	if code := eval[int](b, `fetch("/api/v1/broadcasts/stop-all", {method: "POST"}).then(r => r.status)`); code != 403 {
		t.Errorf("fetch without the CSRF header: %d, want 403", code)
	}
	if code := eval[int](b, `window.loalang.api("POST", "/api/v1/broadcasts/stop-all").then(() => 200, (e) => e.status)`); code != 200 {
		t.Errorf("the app's own fetch with the CSRF header: %d, want 200", code)
	}
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<form id=f method=post action=%q><input name=csrf value=guess></form><script>document.getElementById("f").submit()</script>`,
			base+r.URL.Query().Get("target"))
	}))
	defer evil.Close()
	for _, target := range []string{"/api/v1/broadcasts/stop-all", "/app/logout", "/api/v1/devices/spk-01/ping"} {
		b.do("evil page", chromedp.Navigate(evil.URL+"/?target="+target))
		eventually(t, 10*time.Second, "cross-site form posted", func() bool { return strings.HasPrefix(b.location(), base) })
		text := eval[string](b, `document.body ? document.body.innerText : ""`)
		if !strings.Contains(text, "csrf") {
			t.Errorf("cross-site form post to %s was not refused: %s at %s", target, text, b.location())
		}
	}
	b.open("/app/log")
	if me := eval[string](b, `document.body.dataset.user`); me != "admin" {
		t.Errorf("the cross-site logout took effect: signed in as %q", me)
	}
	code, body := admin.do("GET", "/api/v1/audit?format=csv", nil)
	if code != 200 || strings.Count(string(body), "broadcast.stop_all") != 1 || strings.Contains(string(body), "device.ping") {
		t.Errorf("audit after the CSRF attempts: want exactly the app's own stop_all: %s", body)
	}
}

// assertTone checks that each speaker of zone recorded a 1 kHz tone of at
// least minAmp, dominating other frequencies, and that others did not.
func assertTone(t *testing.T, cfg config.Config, rec string, streams []uint32, zone string, minAmp float64, what string) (maxAmp float64) {
	t.Helper()
	if len(streams) == 0 {
		t.Fatalf("%s: no stream", what)
	}
	// Recordings appear (atomically) when a speaker has finished the stream.
	eventually(t, 10*time.Second, what+" recordings in zone "+zone, func() bool {
		for _, dev := range cfg.Devices {
			if strings.HasPrefix(dev.ID, "probe-") {
				continue // startProbe's listener, not a simulated speaker
			}
			if _, err := os.Stat(filepath.Join(rec, fmt.Sprintf("%s-%d.wav", dev.ID, streams[0]))); dev.Zones[0] == zone && err != nil {
				return false
			}
		}
		return true
	})
	for _, dev := range cfg.Devices {
		if strings.HasPrefix(dev.ID, "probe-") {
			continue
		}
		path := filepath.Join(rec, fmt.Sprintf("%s-%d.wav", dev.ID, streams[0]))
		raw, err := os.ReadFile(path)
		if dev.Zones[0] != zone {
			if err == nil {
				t.Errorf("%s: %s outside zone %s recorded the stream", what, dev.ID, zone)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %s has no recording: %v", what, dev.ID, err)
		}
		pcm, rate, _, err := audiotest.ParseWAV(raw)
		if err != nil || len(pcm) < rate {
			t.Fatalf("%s: %s recording: %d samples, %v", what, dev.ID, len(pcm), err)
		}
		mid := pcm[rate/5 : len(pcm)-rate/5]
		tone := audiotest.Goertzel(mid, rate, 1000)
		rms := audiotest.RMS(mid)
		maxAmp = max(maxAmp, tone)
		t.Logf("%s: %s 1 kHz amplitude %.3f, RMS %.3f (%.1f s)", what, dev.ID, tone, rms, float64(len(pcm))/float64(rate))
		// A pure tone of amplitude A has RMS A/√2: the tone must carry most
		// of the energy.
		if tone < minAmp || tone/math.Sqrt2 < 0.8*rms {
			t.Errorf("%s: %s 1 kHz amplitude %.3f (RMS %.3f), want ≥ %.2f and ≥ 80%% of the energy", what, dev.ID, tone, rms, minAmp)
		}
	}
	return maxAmp
}

// checkHTTPS fetches the sign-in page over the TLS listener and checks the
// certificate is the self-signed one kept in the data dir.
func checkHTTPS(t *testing.T, d *daemon.Daemon, dir string) {
	t.Helper()
	addr := d.Ready().HTTPS
	if addr == "" {
		t.Fatal("ready.json has no https address")
	}
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("TLS: %v", err)
	}
	state := conn.ConnectionState()
	conn.Close()
	leaf := state.PeerCertificates[0]
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("certificate: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "tls", "key.pem")); err != nil {
		t.Errorf("self-signed key not kept: %v", err)
	}
	t.Logf("HTTPS on %s, certificate SHA-256 %x, %s", addr, sha256.Sum256(leaf.Raw), leaf.PublicKeyAlgorithm)
	host, _, _ := net.SplitHostPort(addr)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Get("https://" + net.JoinHostPort(host, strings.Split(addr, ":")[1]) + "/app/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /app/login over HTTPS: %d", resp.StatusCode)
	}
}
