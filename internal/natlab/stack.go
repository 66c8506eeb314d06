package natlab

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
	"time"

	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/uplink"
)

// Names of the stack: one village of one commune.
const (
	Province  = "hn"
	CommuneID = "xa-1"
	VillageID = "thon-3"
	// WebPort is the commune server's HTTP port (on CommunePoliceIP);
	// VillageHTTPPort the village's (on VillageIP).
	WebPort         = "8080"
	VillageHTTPPort = "8088"
	// PolicePassword is the police user's password.
	PolicePassword = "mot-hai-ba-bon-nam"
)

// Proc is a child process whose output is kept.
type Proc struct {
	Name   string
	cmd    *exec.Cmd
	exited chan struct{}
	done   chan struct{}

	mu  sync.Mutex
	out []string
}

// Pid is the process id (ip netns exec execs the program, so it is the
// program's).
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Start runs cmd, keeping its output.
func Start(name string, cmd *exec.Cmd) (*Proc, error) {
	p := &Proc{Name: name, cmd: cmd, exited: make(chan struct{}), done: make(chan struct{})}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.out = append(p.out, sc.Text())
			p.mu.Unlock()
		}
		close(p.done)
	}()
	go func() { cmd.Wait(); pw.Close(); close(p.exited) }()
	return p, nil
}

// Stop interrupts the process, kills it after 10 s, and waits for it.
func (p *Proc) Stop() {
	select {
	case <-p.exited:
	default:
		p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
	}
	<-p.done
}

// Exited is closed when the process has exited.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Has reports whether one output line contains every substring.
func (p *Proc) Has(subs ...string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
next:
	for _, s := range p.out {
		for _, sub := range subs {
			if !strings.Contains(s, sub) {
				continue next
			}
		}
		return true
	}
	return false
}

// Find returns what follows prefix on the first line holding it.
func (p *Proc) Find(prefix string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.out {
		if i := strings.Index(s, prefix); i >= 0 {
			return s[i+len(prefix):], true
		}
	}
	return "", false
}

// Lines returns the output lines holding sub.
func (p *Proc) Lines(sub string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, s := range p.out {
		if strings.Contains(s, sub) {
			out = append(out, s)
		}
	}
	return out
}

// Tail is the last n bytes of the output.
func (p *Proc) Tail(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := strings.Join(p.out, "\n")
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}

// StackConfig says what to run.
type StackConfig struct {
	// Dir is a work directory (configs, data dirs), readable by root.
	Dir string
	// Loalangd and FirmwareSim are the binaries.
	Loalangd, FirmwareSim string
	// Cameras is how many simulated cameras the village has (cam-1…);
	// Shared how many of them (the first ones) it shares with the commune.
	Cameras, Shared int
	// AlwaysOn keeps the shared cameras' RTSP sessions running
	// (on_demand: false) instead of starting them at the first viewer.
	AlwaysOn bool
	// Speakers is how many simulated speakers the village has.
	Speakers int
	// Timeout is the commune's wait for a village's answer.
	Timeout time.Duration
	// PoliceCameras are the police user's cameras ("<village>.<camera>").
	PoliceCameras []string
	// Log receives progress lines; nil discards them.
	Log func(format string, args ...any)
}

// Stack is the running topology: Mosquitto, coturn and loalangd role:
// commune in the commune namespace; loalangd and firmware-sim in the
// village namespace.
type Stack struct {
	*Lab
	Cfg                                        StackConfig
	Mosquitto, Coturn, Commune, Village, FWSim *Proc
	// Web is an HTTP client whose connections are opened in the commune
	// namespace; Base the commune server's URL.
	Web  *http.Client
	Base string
	// PoliceToken is a bearer token of the police user.
	PoliceToken string
	procs       []*Proc
}

// PoliceUser is the police user the stack creates.
const PoliceUser = "cong-an-1"

func poll(d time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// StartStack builds the namespaces and starts everything; Close stops it.
func StartStack(cfg StackConfig) (s *Stack, err error) {
	if cfg.Log == nil {
		cfg.Log = func(string, ...any) {}
	}
	lab, err := New()
	if err != nil {
		return nil, fmt.Errorf("build the NAT topology: %w", err)
	}
	s = &Stack{Lab: lab, Cfg: cfg}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	run := func(name string, cmd *exec.Cmd) (*Proc, error) {
		p, err := Start(name, cmd)
		if err == nil {
			s.procs = append(s.procs, p)
		}
		return p, err
	}
	tmp := cfg.Dir
	mconf := filepath.Join(tmp, "mosquitto.conf")
	os.WriteFile(mconf, []byte("listener 1883 "+CommuneWANIP+"\nallow_anonymous true\nset_tcp_nodelay true\n"), 0o644)
	if s.Mosquitto, err = run("mosquitto", lab.Command(lab.Commune, "mosquitto", "-c", mconf)); err != nil {
		return s, err
	}
	turnSecret := "turn-secret-" + uplink.NewNonce()
	if s.Coturn, err = run("coturn", lab.Command(lab.Commune, "turnserver", "-n", "--no-cli", "--no-tls", "--no-dtls",
		"--listening-ip="+CommuneWANIP, "--listening-ip="+CommunePoliceIP, "--relay-ip="+CommuneWANIP,
		"--listening-port=3478", "--min-port=49160", "--max-port=49460", "--realm=loalang", "--fingerprint",
		"--use-auth-secret", "--static-auth-secret="+turnSecret, "--log-file=stdout", "--simple-log",
		"--pidfile="+filepath.Join(tmp, "turnserver.pid"), "--userdb="+filepath.Join(tmp, "turndb"))); err != nil {
		return s, err
	}
	commune := lab.DialContext(lab.Commune)
	if err := poll(30*time.Second, "mosquitto in the commune", func() bool {
		c, err := commune(context.Background(), "tcp", CommuneWANIP+":1883")
		if err == nil {
			c.Close()
		}
		return err == nil
	}); err != nil {
		return s, err
	}
	if err := poll(30*time.Second, "coturn", func() bool { return s.Coturn.Has("Total General servers") }); err != nil {
		return s, err
	}
	cfg.Log("mosquitto and coturn up in the commune namespace")

	// The commune server: loalangd role: commune with the camera path.
	cdir := filepath.Join(tmp, "commune")
	os.MkdirAll(cdir, 0o700)
	communePub, err := uplink.Keygen(filepath.Join(cdir, "commune.key"))
	if err != nil {
		return s, err
	}
	os.WriteFile(filepath.Join(cdir, "turn-secret"), []byte(turnSecret+"\n"), 0o600)
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
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
  timeout: %[9]s
  relay_only: true
`, CommunePoliceIP, WebPort, Province, CommuneID, CommuneWANIP, filepath.Join(cdir, "commune.key"), VillageID,
		filepath.Join(cdir, "turn-secret"), timeout)
	os.WriteFile(filepath.Join(cdir, "loalangd.yaml"), []byte(ccfg), 0o600)
	if s.Commune, err = run("commune loalangd", lab.Command(lab.Commune, cfg.Loalangd, "--config", filepath.Join(cdir, "loalangd.yaml"),
		"--data-dir", cdir, "--log-level", "info")); err != nil {
		return s, err
	}
	s.Web = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: commune}}
	s.Base = "http://" + CommunePoliceIP + ":" + WebPort
	if err := poll(60*time.Second, "the commune server", func() bool {
		resp, err := s.Web.Get(s.Base + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}); err != nil {
		return s, err
	}
	adminPW, err := os.ReadFile(filepath.Join(cdir, "initial-admin-password"))
	if err != nil {
		return s, err
	}
	adminTok, err := s.Login("admin", strings.TrimSpace(string(adminPW)))
	if err != nil {
		return s, err
	}
	body, _ := json.Marshal(map[string]any{"username": PoliceUser, "password": PolicePassword, "role": "police", "cameras": cfg.PoliceCameras})
	resp, err := s.Do("POST", "/api/v1/commune/users", adminTok, "application/json", strings.NewReader(string(body)))
	if err != nil {
		return s, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return s, fmt.Errorf("create the police user: %d", resp.StatusCode)
	}
	if s.PoliceToken, err = s.Login(PoliceUser, PolicePassword); err != nil {
		return s, err
	}
	cfg.Log("commune server up; police user %s", PoliceUser)

	// The village.
	vdir := filepath.Join(tmp, "village")
	os.MkdirAll(vdir, 0o700)
	provKey, _, _ := ed25519.GenerateKey(nil)
	var vc strings.Builder
	fmt.Fprintf(&vc, "site: %s\nhttp:\n  addr: %s:%s\nmqtt:\n  listen: 127.0.0.1:0\n", VillageID, VillageIP, VillageHTTPPort)
	fmt.Fprintf(&vc, "webrtc:\n  udp_port: 0\n  listen_ips: [%s]\nsound:\n  enabled: false\n", VillageIP)
	vc.WriteString("zones:\n  - id: z1\n    name: Xóm 1\ndevices:\n")
	for i := 1; i <= max(cfg.Speakers, 1); i++ {
		fmt.Fprintf(&vc, "  - id: spk-%d\n    kind: speaker\n    name: Loa %d\n    zones: [z1]\n", i, i)
	}
	vc.WriteString("cameras:\n")
	var shared []string
	for i := 1; i <= cfg.Cameras; i++ {
		fmt.Fprintf(&vc, "  - id: cam-%d\n    name: Camera %d\n    url: rtsp://127.0.0.1:%d/cam-%d\n", i, i, 18553+i, i)
		if i <= cfg.Shared {
			shared = append(shared, fmt.Sprintf("cam-%d", i))
			if cfg.AlwaysOn {
				vc.WriteString("    on_demand: false\n")
			}
		}
	}
	fmt.Fprintf(&vc, "uplink:\n  url: tcp://%s:1883\n  client_id: %s\n  province: %s\n  commune: %s\n  province_keys: [%q]\n  commune_keys: [%q]\n  max_backoff: 5s\n  commune_cameras: [%s]\n",
		CommuneWANIP, VillageID, Province, CommuneID, uplink.PublicKeyString(provKey), communePub, strings.Join(shared, ", "))
	os.WriteFile(filepath.Join(vdir, "loalangd.yaml"), []byte(vc.String()), 0o600)
	if s.Village, err = run("village loalangd", lab.Command(lab.Village, cfg.Loalangd, "--config", filepath.Join(vdir, "loalangd.yaml"),
		"--data-dir", vdir, "--log-level", "info")); err != nil {
		return s, err
	}
	var ready struct{ HTTP, MQTT string }
	if err := poll(120*time.Second, "the village's loalangd", func() bool {
		raw, err := os.ReadFile(filepath.Join(vdir, "ready.json"))
		return err == nil && json.Unmarshal(raw, &ready) == nil && ready.HTTP != "" && ready.MQTT != ""
	}); err != nil {
		return s, err
	}
	var bundle wire.Bundle
	raw, err := os.ReadFile(filepath.Join(vdir, "provisioning.json"))
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(raw, &bundle); err != nil {
		return s, err
	}
	bundle.Broker = "tcp://" + ready.MQTT
	raw, _ = json.Marshal(bundle)
	os.WriteFile(filepath.Join(vdir, "sim.json"), raw, 0o600)
	if s.FWSim, err = run("firmware-sim", lab.Command(lab.Village, cfg.FirmwareSim, "--provisioning", filepath.Join(vdir, "sim.json"), "--no-relay")); err != nil {
		return s, err
	}
	if err := poll(90*time.Second, "the village's uplink online at the commune", func() bool {
		resp, err := s.Do("GET", "/api/v1/commune/villages/presence", s.PoliceToken, "", nil)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var ps []struct {
			Village string
			Online  bool
		}
		json.NewDecoder(resp.Body).Decode(&ps)
		return len(ps) == 1 && ps[0].Village == VillageID && ps[0].Online
	}); err != nil {
		return s, err
	}
	cfg.Log("village up behind the NAT, its uplink online at the commune")
	return s, nil
}

// Do sends a request from the commune namespace with a bearer token.
func (s *Stack) Do(method, path, token, ctype string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequest(method, s.Base+path, body)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	return s.Web.Do(req)
}

// Login signs in at the commune and returns the bearer token.
func (s *Stack) Login(user, pass string) (string, error) {
	body, _ := json.Marshal(map[string]string{"username": user, "password": pass})
	resp, err := s.Web.Post(s.Base+"/api/v1/commune/login", "application/json", strings.NewReader(string(body)))
	if err != nil {
		return "", fmt.Errorf("login %s: %w", user, err)
	}
	defer resp.Body.Close()
	var out struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || out.Token == "" {
		return "", fmt.Errorf("login %s: status %d", user, resp.StatusCode)
	}
	return out.Token, nil
}

// Close stops every process by pid, in reverse order, and deletes the
// namespaces.
func (s *Stack) Close() error {
	for i := len(s.procs) - 1; i >= 0; i-- {
		s.procs[i].Stop()
	}
	return s.Lab.Close()
}

// Procs lists the started processes.
func (s *Stack) Procs() []*Proc { return s.procs }
