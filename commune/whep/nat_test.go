package whep_test

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loalang/loalang/commune/whep"
	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/internal/natlab"
	"github.com/loalang/loalang/uplink"
)

// The NAT test runs: this test (which builds the namespaces); loalangd
// (built by the test) with role: commune, Mosquitto and coturn in the
// commune namespace; loalangd and firmware-sim in the village namespace;
// headless Chromium driven by this test binary re-executed in the police
// namespace (roleEnv=police).
const roleEnv = "LOALANG_NATCAM_ROLE"

const (
	province, communeID, village = "hn", "xa-1", "thon-3"
	policeUser                   = "cong-an-1"
	webPort                      = "8080"
	villageHTTPPort              = "8088"
)

// lines collects a child's output and lets the test wait for a line.
type lines struct {
	mu  sync.Mutex
	all []string
}

func (l *lines) add(s string) {
	l.mu.Lock()
	l.all = append(l.all, s)
	l.mu.Unlock()
}

func (l *lines) find(prefix string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.all {
		if i := strings.Index(s, prefix); i >= 0 {
			return s[i+len(prefix):], true
		}
	}
	return "", false
}

func (l *lines) has(subs ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
next:
	for _, s := range l.all {
		for _, sub := range subs {
			if !strings.Contains(s, sub) {
				continue next
			}
		}
		return true
	}
	return false
}

func (l *lines) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.Join(l.all, "\n")
	if len(s) > 6000 {
		s = s[len(s)-6000:]
	}
	return s
}

// start runs cmd, collecting its output, and kills it by pid at cleanup.
func start(t *testing.T, name string, cmd *exec.Cmd) *lines {
	t.Helper()
	out := &lines{}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			out.add(sc.Text())
		}
		close(done)
	}()
	exited := make(chan struct{})
	go func() { cmd.Wait(); pw.Close(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			// ip netns exec execs the program, so the pid is the program's.
			cmd.Process.Signal(os.Interrupt)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-exited
			}
		}
		<-done
		if t.Failed() {
			t.Logf("--- %s output ---\n%s", name, out.text())
		}
	})
	return out
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func goBuild(t *testing.T, out, pkg string) string {
	t.Helper()
	bin := filepath.Join(out, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return bin
}

// TestNATCameraPath: a village behind carrier NAT (nftables masquerade,
// nothing forwarded inbound) holds loalangd, simulated speakers and
// simulated cameras; the commune namespace holds Mosquitto, coturn and the
// commune's camera server; the police namespace holds headless Chromium.
// The commune cannot open a TCP connection to the village's web port, yet
// Chromium at the police decodes a village camera (framesDecoded > 0) over
// a TURN relay, signalled through the uplink broker. The commune answers a
// camera the police may not see 403 without asking, a camera the village
// does not share 403 from the village, and an unknown village 504 after its
// timeout; DELETE is forwarded.
func TestNATCameraPath(t *testing.T) {
	if os.Getenv(roleEnv) != "" {
		t.Skip("helper process")
	}
	if why := natlab.Available(); why != "" {
		t.Skip("NAT topology unavailable: " + why)
	}
	for _, tool := range []string{"mosquitto", "turnserver", "chromium"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("NAT topology needs %s (make deps)", tool)
		}
	}
	tmp := t.TempDir()
	os.Chmod(tmp, 0o755)
	loalangd := goBuild(t, tmp, "./cmd/loalangd")
	fwsim := goBuild(t, tmp, "./firmware-sim")

	lab, err := natlab.New()
	if err != nil {
		t.Fatalf("build the NAT topology: %v", err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("remove namespaces: %v", err)
		}
	})

	// The commune: Mosquitto for the villages' uplinks, coturn for media.
	mconf := filepath.Join(tmp, "mosquitto.conf")
	os.WriteFile(mconf, []byte("listener 1883 "+natlab.CommuneWANIP+"\nallow_anonymous true\n"), 0o644)
	mosq := start(t, "mosquitto", lab.Command(lab.Commune, "mosquitto", "-c", mconf, "-v"))
	turnSecret := "turn-secret-" + uplink.NewNonce()
	turn := start(t, "coturn", lab.Command(lab.Commune, "turnserver", "-n", "--no-cli", "--no-tls", "--no-dtls",
		"--listening-ip="+natlab.CommuneWANIP, "--listening-ip="+natlab.CommunePoliceIP, "--relay-ip="+natlab.CommuneWANIP,
		"--listening-port=3478", "--min-port=49160", "--max-port=49460", "--realm=loalang", "--fingerprint",
		"--use-auth-secret", "--static-auth-secret="+turnSecret, "--log-file=stdout", "--simple-log",
		"--pidfile="+filepath.Join(tmp, "turnserver.pid"), "--userdb="+filepath.Join(tmp, "turndb")))
	commune := lab.DialContext(lab.Commune)
	waitFor(t, 30*time.Second, "mosquitto in the commune", func() bool {
		c, err := commune(context.Background(), "tcp", natlab.CommuneWANIP+":1883")
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	waitFor(t, 30*time.Second, "coturn listening", func() bool {
		_, ok := turn.find("Total General servers")
		return ok
	})

	// The commune server: loalangd with role: commune, the camera path
	// mounted on it (whep.Mount).
	cdir := filepath.Join(tmp, "commune")
	os.MkdirAll(cdir, 0o700)
	communePub, err := uplink.Keygen(filepath.Join(cdir, "commune.key"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(cdir, "turn-secret"), []byte(turnSecret+"\n"), 0o600)
	provKey, _, _ := ed25519.GenerateKey(nil)
	ccfg := fmt.Sprintf(`role: commune
http:
  addr: %[1]s:%[2]s
commune:
  province: %[3]s
  id: %[4]s
  mqtt_url: tcp://%[5]s:1883
  client_id: commune-%[4]s
  signing_key_file: %[6]s
  public_url: http://%[1]s:%[2]s
  villages: [%[7]s]
commune_cameras:
  turn_urls: ["turn:%[1]s:3478?transport=udp"]
  turn_secret_file: %[8]s
  timeout: 4s
  relay_only: true
`, natlab.CommunePoliceIP, webPort, province, communeID, natlab.CommuneWANIP, filepath.Join(cdir, "commune.key"), village, filepath.Join(cdir, "turn-secret"))
	os.WriteFile(filepath.Join(cdir, "loalangd.yaml"), []byte(ccfg), 0o600)
	srvOut := start(t, "commune loalangd", lab.Command(lab.Commune, loalangd, "--config", filepath.Join(cdir, "loalangd.yaml"), "--data-dir", cdir, "--log-level", "info"))
	web := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: commune}}
	base := "http://" + natlab.CommunePoliceIP + ":" + webPort
	waitFor(t, 60*time.Second, "the commune server", func() bool {
		resp, err := web.Get(base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	adminPW, err := os.ReadFile(filepath.Join(cdir, "initial-admin-password"))
	if err != nil {
		t.Fatal(err)
	}
	adminTok := login(t, web, base, "admin", strings.TrimSpace(string(adminPW)))
	var cams []string
	for i := 1; i <= 5; i++ {
		cams = append(cams, whep.CameraID(village, fmt.Sprintf("cam-%d", i)))
	}
	cams = append(cams, whep.CameraID("thon-9", "cam-1"))
	body, _ := json.Marshal(map[string]any{"username": policeUser, "password": "mot-hai-ba-bon-nam", "role": "police", "cameras": cams})
	resp, err := do(web, "POST", base+"/api/v1/commune/users", adminTok, "application/json", strings.NewReader(string(body)))
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create the police user: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	policeToken := login(t, web, base, policeUser, "mot-hai-ba-bon-nam")
	authed := func(method, url, ctype string, body io.Reader) (*http.Response, error) {
		return do(web, method, url, policeToken, ctype, body)
	}

	// The village.
	vdir := filepath.Join(tmp, "village")
	os.MkdirAll(vdir, 0o700)
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "site: %s\nhttp:\n  addr: %s:%s\nmqtt:\n  listen: 127.0.0.1:0\n", village, natlab.VillageIP, villageHTTPPort)
	fmt.Fprintf(&cfg, "webrtc:\n  udp_port: 0\n  listen_ips: [%s]\nsound:\n  enabled: false\n", natlab.VillageIP)
	cfg.WriteString("zones:\n  - id: z1\n    name: Xóm 1\ndevices:\n")
	for i := 1; i <= 3; i++ {
		fmt.Fprintf(&cfg, "  - id: spk-%d\n    kind: speaker\n    name: Loa %d\n    zones: [z1]\n", i, i)
	}
	cfg.WriteString("cameras:\n")
	for i := 1; i <= 5; i++ {
		fmt.Fprintf(&cfg, "  - id: cam-%d\n    name: Camera %d\n    url: rtsp://127.0.0.1:%d/cam-%d\n", i, i, 18553+i, i)
	}
	fmt.Fprintf(&cfg, "uplink:\n  url: tcp://%s:1883\n  client_id: %s\n  province: %s\n  commune: %s\n  province_keys: [%q]\n  commune_keys: [%q]\n  max_backoff: 5s\n  commune_cameras: [cam-1, cam-2, cam-3, cam-4]\n",
		natlab.CommuneWANIP, village, province, communeID, uplink.PublicKeyString(provKey), communePub)
	os.WriteFile(filepath.Join(vdir, "loalangd.yaml"), []byte(cfg.String()), 0o600)
	vOut := start(t, "loalangd", lab.Command(lab.Village, loalangd, "--config", filepath.Join(vdir, "loalangd.yaml"), "--data-dir", vdir, "--log-level", "info"))
	var ready struct{ HTTP, MQTT string }
	waitFor(t, 120*time.Second, "loalangd ready", func() bool {
		raw, err := os.ReadFile(filepath.Join(vdir, "ready.json"))
		return err == nil && json.Unmarshal(raw, &ready) == nil && ready.HTTP != "" && ready.MQTT != ""
	})
	var bundle wire.Bundle
	raw, err := os.ReadFile(filepath.Join(vdir, "provisioning.json"))
	if err != nil || json.Unmarshal(raw, &bundle) != nil {
		t.Fatalf("provisioning bundle: %v", err)
	}
	bundle.Broker = "tcp://" + ready.MQTT
	raw, _ = json.Marshal(bundle)
	os.WriteFile(filepath.Join(vdir, "sim.json"), raw, 0o600)
	start(t, "firmware-sim", lab.Command(lab.Village, fwsim, "--provisioning", filepath.Join(vdir, "sim.json"), "--no-relay"))

	waitFor(t, 90*time.Second, "the village's uplink online at the commune", func() bool {
		resp, err := authed("GET", base+"/api/v1/commune/villages/presence", "", nil)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var ps []whep.Presence
		json.NewDecoder(resp.Body).Decode(&ps)
		return len(ps) == 1 && ps[0].Village == village && ps[0].Online
	})

	// Inbound is refused: the commune cannot reach the village's web port
	// (the attempt is routed to the NAT, which drops it), nor the NAT's
	// outside address; from the village's own side of the NAT it answers.
	for _, addr := range []string{natlab.VillageIP + ":" + villageHTTPPort, natlab.NATOutsideIP + ":" + villageHTTPPort} {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		c, err := commune(ctx, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
			t.Fatalf("the commune opened a TCP connection to the village at %s", addr)
		}
		t.Logf("commune -> %s refused as it must be: %v", addr, err)
	}
	inside, err := lab.DialContext(lab.NAT)(context.Background(), "tcp", natlab.VillageIP+":"+villageHTTPPort)
	if err != nil {
		t.Fatalf("the village's web port is not listening (control from inside the NAT): %v", err)
	}
	inside.Close()

	// Refusals through the commune.
	offer := "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
	expect := func(path string, want int, wantText string) {
		t.Helper()
		resp, err := authed("POST", base+path, "application/sdp", strings.NewReader(offer))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || !strings.Contains(string(body), wantText) {
			t.Fatalf("POST %s: %d %s, want %d with %q", path, resp.StatusCode, body, want, wantText)
		}
		t.Logf("POST %s: %d %s", path, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	expect("/api/v1/commune/villages/"+village+"/cameras/cam-9/whep", http.StatusForbidden, "Forbidden")
	expect("/api/v1/commune/villages/"+village+"/cameras/cam-5/whep", http.StatusForbidden, "not shared with the commune")
	expect("/api/v1/commune/villages/thon-9/cameras/cam-1/whep", http.StatusGatewayTimeout, "did not answer")
	resp, err = web.Post(base+"/api/v1/commune/villages/"+village+"/cameras/cam-1/whep", "application/sdp", strings.NewReader(offer))
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unauthenticated offer: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()

	// Chromium at the police plays cam-1 through TURN.
	pol := lab.Command(lab.Police, os.Args[0], "-test.run=^TestNATHelperPolice$", "-test.v", "-test.timeout=5m")
	pol.Env = append(os.Environ(), roleEnv+"=police", "NATCAM_URL="+base+"/commune/cameras?autoplay=0#token="+policeToken,
		"NATCAM_HOME="+tmp, "NATCAM_CAMERAS=cam-1")
	polOut := start(t, "police chromium", pol)
	waitFor(t, 240*time.Second, "the police helper's result", func() bool {
		_, ok := polOut.find("POLICE RESULT ")
		return ok
	})
	res, _ := polOut.find("POLICE RESULT ")
	var got policeResult
	if err := json.Unmarshal([]byte(res), &got); err != nil {
		t.Fatalf("police result %q: %v", res, err)
	}
	t.Logf("police: %+v", got)
	for _, out := range []*lines{srvOut, vOut} {
		out.mu.Lock()
		for _, l := range out.all {
			if strings.Contains(l, "took=") {
				t.Log(l)
			}
		}
		out.mu.Unlock()
	}
	if got.Error != "" {
		t.Fatalf("police: %s", got.Error)
	}
	for _, c := range got.Cameras {
		if c.FramesDecoded <= 0 {
			t.Fatalf("Chromium decoded no frame of %s", c.Camera)
		}
		if c.LocalType != "relay" {
			t.Fatalf("%s: the selected pair's local candidate is %q, want relay (through coturn)", c.Camera, c.LocalType)
		}
		if !c.Deleted {
			t.Fatalf("%s: DELETE was not answered 204", c.Camera)
		}
	}
	waitFor(t, 30*time.Second, "the village's hangup of the commune session", func() bool {
		return srvOut.has("camera hangup forwarded", "204")
	})
	_ = mosq
}

type policeCamera struct {
	Camera        string  `json:"camera"`
	FramesDecoded int     `json:"frames_decoded"`
	GatheredMS    float64 `json:"gathered_ms"`
	AnswerMS      float64 `json:"answer_ms"`
	FirstFrameMS  float64 `json:"first_frame_ms"`
	LocalType     string  `json:"local_type"`
	RemoteType    string  `json:"remote_type"`
	RTTMS         float64 `json:"rtt_ms"`
	Deleted       bool    `json:"deleted"`
}

type policeResult struct {
	Cameras []policeCamera `json:"cameras"`
	Error   string         `json:"error,omitempty"`
}

func do(c *http.Client, method, url, token, ctype string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	return c.Do(req)
}

func login(t *testing.T, c *http.Client, base, user, pass string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"username": user, "password": pass})
	resp, err := c.Post(base+"/api/v1/commune/login", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	defer resp.Body.Close()
	var out struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || out.Token == "" {
		t.Fatalf("login %s: %d %v", user, resp.StatusCode, err)
	}
	return out.Token
}
