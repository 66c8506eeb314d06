package scripts

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/loalang/loalang/device/wire"
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// buildBins builds the demo's three programs once per test binary into a
// temporary BIN_DIR.
func buildBins(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "loalang-demo-bin-")
		for _, p := range []string{"loalangd", "firmware-sim", "loalang"} {
			if binErr != nil {
				return
			}
			pkg := "../cmd/" + p
			if p == "firmware-sim" {
				pkg = "../firmware-sim"
			}
			if out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, p), pkg).CombinedOutput(); err != nil {
				binErr = fmt.Errorf("build %s: %v\n%s", p, err, out)
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// hold listens on 127.0.0.1:port for the test's duration and reports
// whether this process holds it. A port another program already holds is
// just as busy, so that is fine too.
func hold(t *testing.T, port int) bool {
	t.Helper()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Logf("port %d is already held elsewhere: %v", port, err)
		return false
	}
	t.Cleanup(func() { ln.Close() })
	return true
}

// login signs in as admin with the password file's content.
func login(t *testing.T, base, pwFile string) string {
	t.Helper()
	pw, err := os.ReadFile(pwFile)
	if err != nil {
		t.Fatalf("the password file the demo names: %v", err)
	}
	body := fmt.Sprintf(`{"username":"admin","password":%q}`, strings.TrimSpace(string(pw)))
	resp, err := http.Post(base+"/api/v1/login", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Token == "" {
		t.Fatalf("login: %d %v", resp.StatusCode, err)
	}
	return r.Token
}

// onlineSpeakers counts the speakers the daemon reports online.
func onlineSpeakers(t *testing.T, base, tok string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/api/v1/devices", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var devs []struct {
		Kind   string `json:"kind"`
		Online bool   `json:"online"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&devs); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range devs {
		if d.Kind == "speaker" && d.Online {
			n++
		}
	}
	return n
}

func waitSpeakers(t *testing.T, base, tok string, want int, logs fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for n := 0; n < want; n = onlineSpeakers(t, base, tok) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d speakers online\n%s", n, want, logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDemoSurvivesBusyPorts holds the demo's well-known ports (8554 and
// 8555 for the cameras' RTSP, 1883 MQTT, 8080 HTTP) as another program
// would, runs scripts/run-demo.sh (what `make run` runs) and checks that
// it names each busy port and its holder, prints the URL and the password
// file, and that the daemon is up with all 12 speakers online, the
// simulated cameras serving RTSP on their new ports and the relay board
// attached.
func TestDemoSurvivesBusyPorts(t *testing.T) {
	bin := buildBins(t)
	mine := map[int]bool{}
	for _, p := range []int{8554, 8555, 1883, 8080} {
		mine[p] = hold(t, p)
	}
	data := t.TempDir()
	cmd := exec.Command("bash", "./run-demo.sh")
	cmd.Env = append(os.Environ(), "DATA_DIR="+data, "BIN_DIR="+bin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, _ := cmd.StdoutPipe()
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // whatever the script left
	})
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	urlRE := regexp.MustCompile(`Web app and API:\s+(http://\S+)/`)
	pwRE := regexp.MustCompile(`Password file:\s+(\S+)`)
	var base, pwFile string
	var out strings.Builder
	deadline := time.After(90 * time.Second)
	for base == "" || pwFile == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the demo stopped:\n%s\n%s", out.String(), stderr.String())
			}
			out.WriteString(l + "\n")
			if m := urlRE.FindStringSubmatch(l); m != nil {
				base = m[1]
			}
			if m := pwRE.FindStringSubmatch(l); m != nil {
				pwFile = m[1]
			}
		case <-deadline:
			t.Fatalf("no URL within 90 s:\n%s\n%s", out.String(), stderr.String())
		}
	}
	go func() {
		for range lines {
		}
	}()
	if strings.HasSuffix(base, ":8080") {
		t.Fatalf("the demo printed the busy port: %s", base)
	}
	// The holder is named: this test binary, where it holds the port.
	comm, _ := os.ReadFile("/proc/self/comm")
	me := fmt.Sprintf("%s (pid %d)", strings.TrimSpace(string(comm)), os.Getpid())
	for p, want := range map[int]string{
		8554: "port 8554/tcp (RTSP, simulated camera cam-01) is held by ",
		8555: "port 8555/tcp (RTSP, simulated camera cam-02) is held by ",
		1883: "port 1883/tcp (MQTT, the embedded broker) is held by ",
		8080: "port 8080/tcp (HTTP, the web app and API) is held by ",
	} {
		if mine[p] {
			want += me
		}
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("the demo did not say %q:\n%s", want, stderr.String())
		}
	}
	if !strings.HasPrefix(pwFile, data) {
		t.Errorf("password file %s is not in the data dir %s", pwFile, data)
	}
	tok := login(t, base, pwFile)
	waitSpeakers(t, base, tok, 12, &stderr)

	// The simulated cameras serve on the ports the run config gave them.
	var b wire.Bundle
	raw, _ := os.ReadFile(filepath.Join(data, "provisioning.json"))
	if err := json.Unmarshal(raw, &b); err != nil || len(b.Cameras) != 2 {
		t.Fatalf("bundle: %v %+v", err, b.Cameras)
	}
	for _, c := range b.Cameras {
		if strings.Contains(c.URL, ":8554/") || strings.Contains(c.URL, ":8555/") {
			t.Errorf("camera %s still on a busy port: %s", c.ID, c.URL)
		}
	}
	for !strings.Contains(stderr.String(), "village simulated") || !strings.Contains(stderr.String(), "relay board attached") {
		select {
		case <-time.After(50 * time.Millisecond):
		case err := <-exited:
			t.Fatalf("the demo stopped: %v\n%s", err, stderr.String())
		}
	}
	if strings.Contains(stderr.String(), "simulated device failed") {
		t.Errorf("a simulated device failed:\n%s", stderr.String())
	}
	for _, c := range b.Cameras {
		host := strings.TrimPrefix(c.URL, "rtsp://")
		host = host[:strings.Index(host, "/")]
		conn, err := net.DialTimeout("tcp", host, 5*time.Second)
		if err != nil {
			t.Errorf("camera %s: %v", c.ID, err)
			continue
		}
		conn.Close()
	}

	// Ctrl-C (SIGINT to the script) stops the daemon and the simulator.
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("the demo did not stop on SIGINT:\n%s", stderr.String())
	}
	if resp, err := http.Get(base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatalf("the daemon still answers after the demo stopped")
	}
}

// TestFailedSimulatedDeviceIsIsolated runs firmware-sim from a folder
// without var/demo (the relay board's pty link cannot be made) with one
// camera's port held by another listener: both devices are reported, the
// other camera streams and all 12 speakers come online.
func TestFailedSimulatedDeviceIsIsolated(t *testing.T) {
	bin := buildBins(t)
	data := t.TempDir()
	daemon := exec.Command(filepath.Join(bin, "loalangd"), "--config", "../configs/demo.yaml", "--data-dir", data, "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0")
	daemon.Env = append(os.Environ(), "LOALANG_WEBRTC_UDP_PORT=0")
	var dlog syncBuffer
	daemon.Stderr = &dlog
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { daemon.Process.Kill(); daemon.Wait() })
	var ready struct {
		HTTP string `json:"http"`
	}
	for deadline := time.Now().Add(30 * time.Second); ready.HTTP == ""; {
		if raw, err := os.ReadFile(filepath.Join(data, "ready.json")); err == nil {
			json.Unmarshal(raw, &ready)
		}
		if time.Now().After(deadline) {
			t.Fatalf("loalangd not ready:\n%s", dlog.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The bundle as the daemon wrote it, with the cameras on :0-chosen
	// ports: cam-01's is held, cam-02's is free. The relay link stays
	// relative (var/demo/relay-01.pty) and the simulator runs elsewhere.
	var b wire.Bundle
	raw, _ := os.ReadFile(filepath.Join(data, "provisioning.json"))
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatal(err)
	}
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	free, _ := net.Listen("tcp", "127.0.0.1:0")
	freeAddr := free.Addr().String()
	free.Close()
	b.Cameras[0].URL = "rtsp://" + held.Addr().String() + "/cam-01"
	b.Cameras[1].URL = "rtsp://" + freeAddr + "/cam-02"
	if len(b.Relays) != 1 || !strings.HasPrefix(b.Relays[0].Port, "var/demo/") {
		t.Fatalf("relays: %+v", b.Relays)
	}
	bundle := filepath.Join(t.TempDir(), "bundle.json")
	raw, _ = json.Marshal(b)
	os.WriteFile(bundle, raw, 0o600)

	sim := exec.Command(filepath.Join(bin, "firmware-sim"), "--provisioning", bundle)
	sim.Dir = t.TempDir() // no var/demo here
	var slog syncBuffer
	sim.Stderr = &slog
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	simDone := make(chan error, 1)
	go func() { simDone <- sim.Wait() }()
	t.Cleanup(func() {
		sim.Process.Signal(syscall.SIGTERM)
		<-simDone
	})

	for !strings.Contains(slog.String(), "village simulated") {
		select {
		case err := <-simDone:
			t.Fatalf("firmware-sim stopped: %v\n%s", err, slog.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	log := slog.String()
	for _, want := range []string{
		`kind=camera device=cam-01`,
		`kind="relay board" device=relay-01`,
		"folder var/demo",
		"speakers=12 cameras=1 relay_boards=0",
	} {
		if !strings.Contains(log, want) {
			t.Errorf("firmware-sim log lacks %q:\n%s", want, log)
		}
	}
	tok := login(t, "http://"+ready.HTTP, filepath.Join(data, "initial-admin-password"))
	waitSpeakers(t, "http://"+ready.HTTP, tok, 12, &slog)
	conn, err := net.DialTimeout("tcp", freeAddr, 5*time.Second)
	if err != nil {
		t.Fatalf("cam-02 does not serve: %v", err)
	}
	conn.Close()
	select {
	case err := <-simDone:
		t.Fatalf("firmware-sim stopped: %v\n%s", err, slog.String())
	default:
	}

	// With nothing that can start, firmware-sim says so and exits 1.
	only := wire.Bundle{Site: b.Site, Broker: b.Broker, Relays: b.Relays}
	raw, _ = json.Marshal(only)
	os.WriteFile(bundle, raw, 0o600)
	none := exec.Command(filepath.Join(bin, "firmware-sim"), "--provisioning", bundle)
	none.Dir = sim.Dir
	out, err := none.CombinedOutput()
	if code := none.ProcessState.ExitCode(); err == nil || code != 1 || !strings.Contains(string(out), "no simulated device could start (failed: [relay-01])") {
		t.Fatalf("firmware-sim with no device that can start: exit %d %v\n%s", code, err, out)
	}
}
