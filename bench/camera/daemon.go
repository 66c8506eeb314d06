package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// childProc is a child process, optionally in a network namespace (ip
// netns exec execs the program, so the pid is the program's). It dies with
// this process (PR_SET_PDEATHSIG) and is killed by its pid on close.
type childProc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func command(netns, prog string, args ...string) *exec.Cmd {
	if netns != "" {
		return exec.Command("ip", append([]string{"netns", "exec", netns, prog}, args...)...)
	}
	return exec.Command(prog, args...)
}

func startProc(cmd *exec.Cmd) (*childProc, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	c := &childProc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(c.done) }()
	return c, nil
}

// startChildProc starts this program with args (in netns if set), with
// pipes to its stdin and stdout.
func startChildProc(self, netns string, args ...string) (*childProc, io.WriteCloser, *bufio.Scanner, error) {
	cmd := command(netns, self, args...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	c, err := startProc(cmd)
	if err != nil {
		return nil, nil, nil, err
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	return c, in, sc, nil
}

func (c *childProc) pid() int { return c.cmd.Process.Pid }

// close waits up to 10 s for the child to exit (its stdin is closed by the
// caller, or SIGTERM for the daemon), then kills it by pid.
func (c *childProc) close() {
	select {
	case <-c.done:
		return
	case <-time.After(10 * time.Second):
	}
	_ = c.cmd.Process.Kill()
	<-c.done
}

func (c *childProc) term() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	c.close()
}

// cpuOf returns the CPU time (user + system) of pid from /proc/<pid>/stat
// fields 14 and 15 (proc(5); USER_HZ is 100).
func cpuOf(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// rssOf reads VmRSS of pid in MiB.
func rssOf(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// daemonOpts is one loalangd configuration under test.
type daemonOpts struct {
	netns     string   // "" for this namespace
	httpIP    string   // http.addr host
	listenIPs []string // webrtc.listen_ips; nil = the default (every address)
	loopback  bool     // webrtc.loopback_candidates
	pprof     string   // debug.pprof_addr, "" = off
}

// loalangd is a running daemon and the viewers child that talks to it.
type loalangd struct {
	proc  *childProc
	dir   string
	base  string // http://host:port
	token string
	views *viewersChild
}

// startDaemon writes the configuration, starts bin (in o.netns) and logs in
// as admin through views (which must reach o.httpIP).
func startDaemon(bin string, o daemonOpts, views *viewersChild) (*loalangd, error) {
	dir, err := os.MkdirTemp("", "bench-camera-loalangd-")
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "site: bench\ndata_dir: %s\nhttp:\n  addr: %s:0\nmqtt:\n  listen: 127.0.0.1:0\n", dir, o.httpIP)
	fmt.Fprintf(&b, "sound:\n  enabled: false\nauth:\n  login_burst: 100\n")
	fmt.Fprintf(&b, "webrtc:\n  udp_port: 0\n  loopback_candidates: %v\n  max_viewers: 100\n  max_viewers_per_camera: 20\n", o.loopback)
	if len(o.listenIPs) > 0 {
		fmt.Fprintf(&b, "  listen_ips: [%s]\n", strings.Join(o.listenIPs, ", "))
	}
	if o.pprof != "" {
		fmt.Fprintf(&b, "debug:\n  pprof_addr: %s\n", o.pprof)
	}
	cfgPath := filepath.Join(dir, "loalangd.yaml")
	if err := os.WriteFile(cfgPath, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "loalangd.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := command(o.netns, bin, "--config", cfgPath, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := startProc(cmd)
	if err != nil {
		return nil, err
	}
	d := &loalangd{proc: p, dir: dir, views: views}
	fail := func(err error) (*loalangd, error) {
		d.close()
		return nil, err
	}
	deadline := time.Now().Add(120 * time.Second)
	for d.base == "" {
		raw, err := os.ReadFile(filepath.Join(dir, "ready.json"))
		var r struct{ HTTP string }
		if err == nil && json.Unmarshal(raw, &r) == nil && r.HTTP != "" {
			d.base = "http://" + r.HTTP
			break
		}
		select {
		case <-p.done:
			log, _ := os.ReadFile(filepath.Join(dir, "loalangd.log"))
			return fail(fmt.Errorf("loalangd exited before ready: %s", log))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fail(errors.New("loalangd not ready after 120 s"))
		}
	}
	pw, err := os.ReadFile(filepath.Join(dir, "initial-admin-password"))
	if err != nil {
		return fail(err)
	}
	body, _ := json.Marshal(map[string]string{"username": "admin", "password": strings.TrimSpace(string(pw))})
	var tok struct{ Token string }
	if err := d.api("POST", "/api/v1/login", string(body), &tok); err != nil {
		return fail(err)
	}
	d.token = tok.Token
	return d, nil
}

// api calls the daemon's HTTP API through the viewers child.
func (d *loalangd) api(method, path, body string, out any) error {
	m, err := d.views.call(msg{Op: "http", ID: "api" + strconv.FormatInt(time.Now().UnixNano(), 10), Method: method, URL: d.base + path, Token: d.token, Body: body}, "http")
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if m.Status/100 != 2 {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, m.Status, m.Body)
	}
	if out != nil {
		return json.Unmarshal([]byte(m.Body), out)
	}
	return nil
}

// addCamera adds an RTSP camera through POST /api/v1/cameras.
func (d *loalangd) addCamera(id, url string, alwaysOn bool) error {
	body, _ := json.Marshal(map[string]any{"id": id, "name": id, "url": url, "on_demand": !alwaysOn})
	return d.api("POST", "/api/v1/cameras", string(body), nil)
}

// waitLive polls the camera list until id is live.
func (d *loalangd) waitLive(id string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		var list []struct{ ID, State string }
		if err := d.api("GET", "/api/v1/cameras", "", &list); err != nil {
			return err
		}
		for _, c := range list {
			if c.ID == id && c.State == "live" {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("camera %s not live after %v", id, within)
}

// watch opens a WHEP session on a camera; it returns the viewer id and the
// session URL.
func (d *loalangd) watch(camID string) (string, string, error) {
	id := d.views.nextID()
	m, err := d.views.call(msg{Op: "watch", ID: id, URL: d.base + "/api/v1/cameras/" + camID + "/whep", Token: d.token}, "watching")
	if err != nil {
		return "", "", err
	}
	return id, d.base + m.Loc, nil
}

func (d *loalangd) unwatch(id, loc string) {
	_, _ = d.views.call(msg{Op: "unwatch", ID: id, URL: loc, Token: d.token}, "unwatched")
}

func (d *loalangd) close() {
	d.proc.term()
	_ = os.RemoveAll(d.dir)
}

// lan is a veth pair between two network namespaces: the daemon's (A,
// 10.77.0.1, plus a second interface 10.78.0.1 that viewers cannot reach,
// as a village box has a second network) and the viewers' (B, 10.77.0.2).
type lan struct{ a, b, vethB string }

func setupLAN() (*lan, error) {
	tag := strconv.Itoa(os.Getpid())
	l := &lan{a: "lcam-a-" + tag, b: "lcam-b-" + tag, vethB: "lcb" + tag}
	vethA := "lca" + tag
	steps := [][]string{
		{"netns", "add", l.a}, {"netns", "add", l.b},
		{"link", "add", vethA, "netns", l.a, "type", "veth", "peer", "name", l.vethB, "netns", l.b},
		{"-n", l.a, "addr", "add", "10.77.0.1/24", "dev", vethA},
		{"-n", l.b, "addr", "add", "10.77.0.2/24", "dev", l.vethB},
		{"-n", l.a, "link", "set", vethA, "up"}, {"-n", l.b, "link", "set", l.vethB, "up"},
		{"-n", l.a, "link", "set", "lo", "up"}, {"-n", l.b, "link", "set", "lo", "up"},
		// A second network of the box (a VPN, a 4G modem) that viewers
		// cannot reach; no dummy driver here, so a second veth pair in A.
		{"-n", l.a, "link", "add", "lcx0", "type", "veth", "peer", "name", "lcx1"},
		{"-n", l.a, "addr", "add", "10.78.0.1/24", "dev", "lcx0"},
		{"-n", l.a, "link", "set", "lcx0", "up"}, {"-n", l.a, "link", "set", "lcx1", "up"},
	}
	for _, s := range steps {
		if out, err := exec.Command("ip", s...).CombinedOutput(); err != nil {
			l.remove()
			return nil, fmt.Errorf("ip %s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	return l, nil
}

// remove deletes both namespaces (and with them the veth pair and dummy).
func (l *lan) remove() {
	_ = exec.Command("ip", "netns", "del", l.a).Run()
	_ = exec.Command("ip", "netns", "del", l.b).Run()
}
