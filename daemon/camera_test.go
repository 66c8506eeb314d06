package daemon_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/loalang/loalang/internal/whepview"

	"github.com/chromedp/chromedp"

	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/firmware-sim/camsim"
)

// cameraConfig is testConfig without speakers, with the given cameras and
// an idle close short enough for the goroutine check.
func cameraConfig(t *testing.T, dir string, cams ...config.Camera) config.Config {
	t.Helper()
	cfg := testConfig(t, dir, 0)
	cfg.WebRTC.IdleClose = 300 * time.Millisecond
	cfg.Cameras = cams
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startCam starts a simulated camera on an ephemeral loopback port.
func startCam(t *testing.T, opts camsim.Options) (*camsim.Sim, string) {
	t.Helper()
	s, err := camsim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, u
}

// restartCam reboots a simulated camera on the same address.
func restartCam(t *testing.T, s *camsim.Sim) {
	t.Helper()
	addr := s.Addr()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Start(addr); err != nil {
		t.Fatal(err)
	}
}

// whep POSTs an offer (RFC 9725 §4.2) and returns status, body and Location.
func whep(c *client, camID, contentType, offer string) (int, string, string) {
	c.t.Helper()
	req, _ := http.NewRequest("POST", c.base+"/api/v1/cameras/"+camID+"/whep", strings.NewReader(offer))
	req.Header.Set("Content-Type", contentType)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("WHEP POST %s: %v", camID, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header.Get("Location")
}

// watchPion opens a WHEP session from a new pion viewer.
func watchPion(t *testing.T, c *client, camID string) (*whepview.Viewer, string) {
	t.Helper()
	v := whepview.New(t, whepview.BrowserH264)
	code, answer, loc := whep(c, camID, "application/sdp", v.Offer)
	if code != http.StatusCreated || !strings.HasPrefix(loc, "/api/v1/whep/") || !strings.Contains(answer, "a=fingerprint") {
		t.Fatalf("WHEP %s: %d %q %s", camID, code, loc, answer)
	}
	v.Accept(answer)
	return v, loc
}

type cameraView struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	URL     string `json:"url"`
	State   string `json:"state"`
	Codec   string `json:"codec"`
	Width   int    `json:"width"`
	Viewers int    `json:"viewers"`
}

func cameraList(c *client) (int, []cameraView, []byte) {
	c.t.Helper()
	code, body := c.do("GET", "/api/v1/cameras", nil)
	var out []cameraView
	if code == 200 {
		if err := json.Unmarshal(body, &out); err != nil {
			c.t.Fatalf("camera list %s: %v", body, err)
		}
	}
	return code, out, body
}

func auditActions(t *testing.T, c *client) string {
	t.Helper()
	code, body := c.do("GET", "/api/v1/audit?format=csv", nil)
	if code != 200 {
		t.Fatalf("audit: %d %s", code, body)
	}
	return string(body)
}

// goroutinesBack polls until the goroutine count is back to base.
func goroutinesBack(t *testing.T, base int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for runtime.NumGoroutine() > base {
		http.DefaultClient.CloseIdleConnections()
		if time.Since(start) > within {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, baseline %d:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// TestCameraWHEP drives the camera API with pion viewers: roles and
// permissions, WHEP errors, the first frame, a camera reboot under a
// viewer, hang-up, the audit trail and goroutines after the last viewer.
func TestCameraWHEP(t *testing.T) {
	sim, camURL := startCam(t, camsim.Options{})
	cfg := cameraConfig(t, t.TempDir(), config.Camera{ID: "cong-dinh", Name: "Cổng đình", URL: camURL})
	d := startDaemon(t, cfg)
	base := "http://" + d.Ready().HTTP
	admin := login(t, base, "admin", adminPassword(t, cfg.DataDir))
	for _, u := range []map[string]any{
		{"username": "congan", "password": "mot-hai-ba-bon", "role": "police", "cameras": []string{"cong-dinh"}},
		{"username": "congan2", "password": "mot-hai-ba-bon", "role": "police", "cameras": []string{"cho"}},
		{"username": "truongthon", "password": "mot-hai-ba-bon", "role": "head"},
	} {
		if code, body := admin.do("POST", "/api/v1/users", u); code != 201 {
			t.Fatalf("create user: %d %s", code, body)
		}
	}
	police := login(t, base, "congan", "mot-hai-ba-bon")
	other := login(t, base, "congan2", "mot-hai-ba-bon")
	head := login(t, base, "truongthon", "mot-hai-ba-bon")
	anon := &client{t: t, base: base}

	// Roles on the list.
	if code, _, _ := cameraList(anon); code != 401 {
		t.Errorf("anonymous camera list: %d, want 401", code)
	}
	if code, _, _ := cameraList(head); code != 403 {
		t.Errorf("head camera list: %d, want 403", code)
	}
	if code, list, body := cameraList(police); code != 200 || len(list) != 1 || list[0].ID != "cong-dinh" || list[0].URL != "" || bytes.Contains(body, []byte("rtsp")) {
		t.Errorf("police camera list: %d %s", code, body)
	}
	if code, list, body := cameraList(other); code != 200 || len(list) != 0 {
		t.Errorf("police without permission, camera list: %d %s", code, body)
	}
	if code, list, body := cameraList(admin); code != 200 || len(list) != 1 || list[0].URL != camURL || list[0].State != "idle" {
		t.Errorf("admin camera list: %d %s", code, body)
	}

	// WHEP errors, before any session (the goroutine baseline needs none).
	probe := whepview.New(t, whepview.BrowserH264)
	if code, _, _ := whep(anon, "cong-dinh", "application/sdp", probe.Offer); code != 401 {
		t.Errorf("anonymous WHEP: %d, want 401", code)
	}
	for who, c := range map[string]*client{"head": head, "police without permission": other} {
		if code, _, _ := whep(c, "cong-dinh", "application/sdp", probe.Offer); code != 403 {
			t.Errorf("%s WHEP: %d, want 403", who, code)
		}
	}
	if code, _, _ := whep(police, "cong-dinh", "application/json", probe.Offer); code != 415 {
		t.Errorf("WHEP as JSON: %d, want 415", code)
	}
	if code, _, _ := whep(police, "cong-dinh", "application/sdp", strings.Repeat("a=x\r\n", 20000)); code != 413 {
		t.Errorf("WHEP 100 KB offer: %d, want 413", code)
	}
	code, body, _ := whep(police, "cong-dinh", "application/sdp", "v=0\r\nthis is not SDP\r\n")
	if code != 400 || !strings.Contains(body, "SDP") {
		t.Errorf("bad SDP: %d %s, want 400 with the reason", code, body)
	}
	audioOnly := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtpmap:111 opus/48000/2\r\n"
	if code, body, _ := whep(police, "cong-dinh", "application/sdp", audioOnly); code != 400 {
		t.Errorf("offer without video: %d %s, want 400", code, body)
	}
	if code, _, _ := whep(admin, "khong-co", "application/sdp", probe.Offer); code != 404 {
		t.Errorf("WHEP to an unknown camera: %d, want 404", code)
	}
	req, _ := http.NewRequest("OPTIONS", base+"/api/v1/cameras/cong-dinh/whep", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 204 || resp.Header.Get("Accept-Post") != "application/sdp" {
		t.Errorf("OPTIONS: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	probe.Close()

	// One warm-up session starts pion's lazily created globals, so the
	// goroutine baseline is taken after it (as camera's own tests do).
	warm, loc := watchPion(t, police, "cong-dinh")
	eventually(t, 10*time.Second, "warm-up frames", func() bool { return warm.Count() > 0 })
	if code, _ := police.do("DELETE", loc, nil); code != 200 {
		t.Fatalf("hang up warm-up: %d", code)
	}
	warm.Close()
	eventually(t, 10*time.Second, "camera idle after the warm-up", func() bool {
		_, list, _ := cameraList(admin)
		return len(list) == 1 && list[0].State == "idle" && list[0].Viewers == 0
	})
	http.DefaultClient.CloseIdleConnections()
	baseline := runtime.NumGoroutine()

	// The first frame: an IDR carrying SPS and PPS.
	start := time.Now()
	v, loc := watchPion(t, police, "cong-dinh")
	offerTook := time.Since(start)
	eventually(t, 10*time.Second, "first access unit", func() bool { return v.Count() > 0 })
	first := time.Since(start)
	whepview.AssertKeyframeFirst(t, v.AUs()[0].AnnexB)
	t.Logf("pion viewer: WHEP answer after %v, first access unit (SPS+PPS+IDR) %v after the POST", offerTook.Round(time.Millisecond), first.Round(time.Millisecond))
	peak := runtime.NumGoroutine()
	if _, list, _ := cameraList(admin); len(list) != 1 || list[0].State != "live" || list[0].Codec != "H264" || list[0].Width != 640 || list[0].Viewers != 1 {
		t.Errorf("camera while watched: %+v", list)
	}

	// The camera reboots: the same session resumes, no new WHEP.
	before := v.Count()
	restarted := time.Now()
	restartCam(t, sim)
	eventually(t, 5*time.Second, "frames after the camera reboot", func() bool { return v.Count() > before+15 })
	t.Logf("camera rebooted under a pion viewer: 15 new access units %v after the restart, same WHEP session", time.Since(restarted).Round(time.Millisecond))

	// Hang-up: only the owner or an admin.
	if code, _ := other.do("DELETE", loc, nil); code != 403 {
		t.Errorf("another police user hangs up: %d, want 403", code)
	}
	if code, _ := head.do("DELETE", loc, nil); code != 403 {
		t.Errorf("head hangs up: %d, want 403", code)
	}
	if code, _ := police.do("DELETE", loc, nil); code != 200 {
		t.Errorf("owner hangs up: %d, want 200", code)
	}
	if code, _ := police.do("DELETE", loc, nil); code != 404 {
		t.Errorf("second hang-up: %d, want 404", code)
	}
	v.Close()

	// After the last viewer the on-demand camera closes and every
	// goroutine of the session and the ingest is gone.
	eventually(t, 5*time.Second, "camera idle after the last viewer", func() bool {
		_, list, _ := cameraList(admin)
		return len(list) == 1 && list[0].State == "idle"
	})
	took := goroutinesBack(t, baseline, 10*time.Second)
	t.Logf("goroutines: %d while watching, back to the baseline %d %v after the camera went idle", peak, baseline, took.Round(time.Millisecond))

	// Views are audited: the start by the API, the end by the relay.
	eventually(t, 5*time.Second, "view audit", func() bool {
		a := auditActions(t, admin)
		return strings.Count(a, "camera.view.start,cong-dinh") >= 2 && strings.Count(a, "congan,camera.view,cong-dinh") >= 2
	})
	if a := auditActions(t, admin); !strings.Contains(a, `""reason"":""hangup""`) || !strings.Contains(a, `""from"":`) {
		t.Errorf("camera.view audit lacks from/to/reason:\n%s", a)
	}
	if code, body := admin.do("GET", "/metrics", nil); code != 200 || !bytes.Contains(body, []byte(`loalang_camera_reconnects_total{camera="cong-dinh"`)) {
		t.Errorf("camera metrics missing: %d", code)
	}
}

// TestCameraRuntimeChanges adds, changes and removes cameras through the API
// and checks that a camera added at runtime can be watched without restart
// and that every change survives a daemon restart.
func TestCameraRuntimeChanges(t *testing.T) {
	_, fileURL := startCam(t, camsim.Options{})
	_, newURL := startCam(t, camsim.Options{Path: "/live/ch1"})
	_, hevcURL := startCam(t, camsim.Options{Path: "/hevc", Codec: camsim.H265})
	// The simulator asks no credentials, so a URL carrying them still plays;
	// they must be stored but never shown.
	secretURL := strings.Replace(newURL, "rtsp://", "rtsp://admin:bi-mat-123@", 1)
	dir := t.TempDir()
	cfg := cameraConfig(t, dir, config.Camera{ID: "cong-dinh", Name: "Cổng đình", URL: fileURL})
	d := startDaemon(t, cfg)
	base := "http://" + d.Ready().HTTP
	admin := login(t, base, "admin", adminPassword(t, dir))

	for _, bad := range []map[string]any{
		{"id": "cho đình", "url": newURL},
		{"id": "cho", "url": "http://127.0.0.1/x"},
		{"id": "cho"},
		{"id": "cho", "url": newURL, "substream_url": "ftp://x"},
		{"id": "cho", "url": newURL, "secret": "x"},
	} {
		if code, body := admin.do("POST", "/api/v1/cameras", bad); code != 400 || bytes.Contains(body, []byte("bi-mat")) {
			t.Errorf("POST %v: %d %s, want 400", bad, code, body)
		}
	}
	if code, _ := admin.do("POST", "/api/v1/cameras", map[string]any{"id": "cong-dinh", "url": newURL}); code != 409 {
		t.Errorf("duplicate camera: %d, want 409", code)
	}
	code, body := admin.do("POST", "/api/v1/cameras", map[string]any{"id": "cho", "name": "Chợ", "url": secretURL})
	if code != 201 || bytes.Contains(body, []byte("bi-mat")) || !bytes.Contains(body, []byte("***")) {
		t.Fatalf("add camera: %d %s", code, body)
	}
	added := time.Now()
	v, loc := watchPion(t, admin, "cho")
	eventually(t, 10*time.Second, "frames from the camera added at runtime", func() bool { return v.Count() > 0 })
	whepview.AssertKeyframeFirst(t, v.AUs()[0].AnnexB)
	t.Logf("camera added at runtime: first access unit %v after the POST", time.Since(added).Round(time.Millisecond))
	admin.do("DELETE", loc, nil)
	v.Close()

	// An H.265 camera and a viewer offering only H.264: 422 naming the codec.
	if code, body := admin.do("POST", "/api/v1/cameras", map[string]any{"id": "ngo", "url": hevcURL}); code != 201 {
		t.Fatalf("add H.265 camera: %d %s", code, body)
	}
	probe := whepview.New(t, whepview.BrowserH264)
	if code, body, _ := whep(admin, "ngo", "application/sdp", probe.Offer); code != 422 || !strings.Contains(body, "265") {
		t.Errorf("H.265 camera to an H.264-only viewer: %d %s, want 422 naming the codec", code, body)
	} else {
		t.Logf("H.265 camera, H.264-only viewer: %d %s", code, strings.TrimSpace(body))
	}
	probe.Close()
	if code, _ := admin.do("DELETE", "/api/v1/cameras/ngo", nil); code != 204 {
		t.Errorf("delete H.265 camera: %d", code)
	}

	// Rename without re-sending the URL; remove the config-file camera.
	if code, body := admin.do("PUT", "/api/v1/cameras/cho", map[string]any{"name": "Chợ thôn"}); code != 200 || !bytes.Contains(body, []byte("Chợ thôn")) {
		t.Errorf("rename: %d %s", code, body)
	}
	if code, _ := admin.do("PUT", "/api/v1/cameras/khong-co", map[string]any{"name": "x"}); code != 404 {
		t.Errorf("PUT unknown camera: %d, want 404", code)
	}
	if code, _ := admin.do("DELETE", "/api/v1/cameras/cong-dinh", nil); code != 204 {
		t.Errorf("delete camera: %d, want 204", code)
	}
	if code, _ := admin.do("DELETE", "/api/v1/cameras/cong-dinh", nil); code != 404 {
		t.Errorf("delete camera twice: %d, want 404", code)
	}
	audit := auditActions(t, admin)
	for _, want := range []string{"camera.create,cho", "camera.update,cho", "camera.delete,cong-dinh"} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit lacks %s", want)
		}
	}
	if strings.Contains(audit, "bi-mat") {
		t.Error("audit trail holds the camera password")
	}

	// Restart on the same data dir: the runtime changes win over the file.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d = startDaemon(t, cfg)
	base = "http://" + d.Ready().HTTP
	admin = login(t, base, "admin", adminPassword(t, dir))
	_, list, raw := cameraList(admin)
	if len(list) != 1 || list[0].ID != "cho" || list[0].Name != "Chợ thôn" || bytes.Contains(raw, []byte("bi-mat")) {
		t.Fatalf("cameras after restart: %s", raw)
	}
	v, _ = watchPion(t, admin, "cho")
	eventually(t, 10*time.Second, "frames after the daemon restart", func() bool { return v.Count() > 0 })
	v.Close()
}

// netnsEnv marks the child test process that runs inside its own network
// namespace ("1"); "host" forces the host-namespace fallback.
const netnsEnv = "LOALANG_TEST_NETNS"

// TestCameraChromium plays cameras in headless Chromium over WHEP.
//
// Isolation: Chromium must never reach beyond 127.0.0.0/8 (DESIGN.md). A
// Chromium alone in a new network namespace could not reach the daemon on
// the host's loopback, so the whole test (camsim, daemon, page server and
// Chromium) re-executes itself in a fresh namespace with only lo up
// (`unshare -n`). Where namespaces are not allowed it runs in the host
// namespace, kept to loopback by --host-resolver-rules and no ICE servers.
func TestCameraChromium(t *testing.T) {
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		t.Skip("chromium not installed (apt install chromium)")
	}
	if os.Getenv(netnsEnv) == "" && exec.Command("unshare", "-n", "true").Run() == nil {
		reexecInNetns(t, "TestCameraChromium")
		return
	}
	if mode := os.Getenv(netnsEnv); mode != "1" {
		t.Log("not isolated: Chromium runs in the host namespace, limited to loopback by flags")
	} else if ifs, err := net.Interfaces(); err == nil && len(ifs) == 1 && ifs[0].Name == "lo" {
		t.Log("isolated: the test's network namespace has only lo")
	} else if exec.Command("unshare", "-n", "true").Run() == nil {
		t.Fatalf("expected to run in a namespace with only lo, have %v", ifs)
	}
	chromiumWHEP(t, chromium)
}

func chromiumWHEP(t *testing.T, chromium string) {
	plain, plainURL := startCam(t, camsim.Options{})
	_, sdpOnlyURL := startCam(t, camsim.Options{Path: "/sdp-only", ParamsOnlyInSDP: true})
	dir := t.TempDir()
	cfg := cameraConfig(t, dir,
		config.Camera{ID: "cong-dinh", Name: "Cổng đình", URL: plainURL},
		config.Camera{ID: "cho", Name: "Chợ", URL: sdpOnlyURL})
	d := startDaemon(t, cfg)
	admin := login(t, "http://"+d.Ready().HTTP, "admin", adminPassword(t, dir))
	if code, body := admin.do("POST", "/api/v1/users", map[string]any{"username": "congan", "password": "mot-hai-ba-bon", "role": "police", "cameras": []string{"cong-dinh", "cho"}}); code != 201 {
		t.Fatalf("create police: %d %s", code, body)
	}
	police := login(t, "http://"+d.Ready().HTTP, "congan", "mot-hai-ba-bon")

	// The page and the API share an origin (no CORS needed): the test
	// server serves the page and proxies /api/ to the daemon.
	page, err := os.ReadFile("testdata/whep.html")
	if err != nil {
		t.Fatal(err)
	}
	daemonURL, _ := url.Parse("http://" + d.Ready().HTTP)
	mux := http.NewServeMux()
	mux.Handle("/api/", httputil.NewSingleHostReverseProxy(daemonURL))
	mux.HandleFunc("GET /whep.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(page)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	ctx := startChromium(t, chromium, 60*time.Second)

	launched := time.Now()
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/whep.html")); err != nil {
		t.Fatalf("open the page: %v", err)
	}
	t.Logf("Chromium started and loaded the page in %v", time.Since(launched).Round(time.Millisecond))

	frames := func(id string) int {
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf("framesDecoded(%q)", id), chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("framesDecoded(%s): %v", id, err)
		}
		return n
	}
	pageStart := time.Now()
	for i, cam := range []struct{ id, what string }{
		{"cong-dinh", "SPS/PPS in band"},
		{"cho", "SPS/PPS only in the SDP"},
	} {
		start := time.Now()
		if i == 0 {
			start = pageStart
		}
		loc, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf("play(%q, %q)", cam.id, police.token), chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("play %s: %v", cam.id, err)
		}
		if !strings.HasPrefix(loc, "/api/v1/whep/") {
			t.Fatalf("play %s: Location %q", cam.id, loc)
		}
		answered := time.Since(start)
		// Within 3 s of the page starting (of play() for the second camera).
		took := eventually(t, max(3*time.Second-answered, 0), "Chromium decodes "+cam.id, func() bool { return frames(cam.id) > 0 })
		t.Logf("Chromium, camera %s (%s): WHEP answered after %v, framesDecoded > 0 %v after the start", cam.id, cam.what,
			answered.Round(time.Millisecond), (answered + took).Round(time.Millisecond))
	}

	// Reboot the first camera while Chromium watches: frames resume with no
	// new WHEP session.
	addr := plain.Addr()
	if err := plain.Close(); err != nil {
		t.Fatal(err)
	}
	at := frames("cong-dinh")
	if _, err := plain.Start(addr); err != nil {
		t.Fatal(err)
	}
	took := eventually(t, 5*time.Second, "Chromium decodes after the camera reboot", func() bool { return frames("cong-dinh") > at+15 })
	t.Logf("camera rebooted under Chromium: 15 more frames decoded %v after the restart, same WHEP session", took.Round(time.Millisecond))
	code, metrics := admin.do("GET", "/metrics", nil)
	if code != 200 || !bytes.Contains(metrics, []byte(`loalang_camera_params_inserted_total{camera="cho",substream="false"}`)) ||
		bytes.Contains(metrics, []byte(`loalang_camera_params_inserted_total{camera="cho",substream="false"} 0`)) {
		t.Errorf("the SDP-only camera's keyframes were not given SPS/PPS by the relay (metrics %d)", code)
	}
	if errs, err := chromedp.Run(ctx, chromedp.Evaluate[[]string]("window.errors")); err != nil || len(errs) > 0 {
		t.Logf("page errors: %v %v", errs, err)
	}
}
