package broker

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loalang/loalang/device/wire"
)

// The access matrix run with Mosquitto's own command-line clients, which
// loalang did not write: every topic class of the protocol × every identity
// (the controller, a speaker of the topic's zone, a speaker of another zone,
// an unknown login) × publish, subscribe, retained publish and will, on both
// brokers. Expectations come from Rules (Allowed, PublishAllowed), so the
// brokers are checked against the one model, not against each other.

const (
	mosquittoPub = "/usr/bin/mosquitto_pub"
	mosquittoSub = "/usr/bin/mosquitto_sub"
	// observerUser watches everything under the prefix for the matrix; it is
	// a second service account so the controller identity under test keeps
	// its own client id.
	observerUser = "observer"
	// watcherUser is the observer's second login, for the command-line
	// subscriber that checks retained messages (each login has one client id).
	watcherUser = "watcher"
)

// cliIdentity is one login the matrix uses, with a topic it may read, on
// which the observer sends it markers.
type cliIdentity struct {
	name, user, pass, clientID, marker string
}

// cliMatrixRules adds the observer to the test rules.
func cliMatrixRules(t *testing.T, c creds) (Rules, string) {
	obs := secret(t)
	r := c.rules
	r.Accounts = append(append([]Account(nil), r.Accounts...),
		Account{Username: observerUser, PasswordHash: mustHash(t, obs), Role: RoleService},
		Account{Username: watcherUser, PasswordHash: mustHash(t, obs), Role: RoleService})
	return r, obs
}

// topicClasses returns one topic per class the protocol defines, as seen
// from device d1 in zone z1, plus the controller's probe and a suffix the
// protocol does not define.
func topicClasses() []string {
	tp := wire.MustTopics("demo")
	var out []string
	for _, r := range wire.DeviceTopicRules {
		out = append(out, tp.Device("d1", r.Suffix))
	}
	out = append(out, tp.Device("d1", "junk"))
	out = append(out, tp.ZoneStream("z1"), tp.ZoneAudio("z1"), tp.ControllerProbe())
	return out
}

func runCLIMatrix(t *testing.T, addr string, r Rules, c creds, obsPass string, mosq bool) {
	for _, bin := range []string{mosquittoPub, mosquittoSub} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s missing (make deps installs mosquitto-clients): %v", bin, err)
		}
	}
	tp := wire.MustTopics("demo")
	obs := mustDial(t, addr, observerUser, obsPass)
	if code := obs.subscribe(t, prefix+"#"); code != 1 {
		t.Fatalf("observer subscribe = %#x", code)
	}
	ids := []cliIdentity{
		{"controller", ServiceUsername, c.svc, ServiceClientID("demo"), prefix + "test/marker"},
		{"speaker of this zone", "d1", c.d1, "d1", tp.Device("d1", wire.SufCmd)},
		{"speaker of another zone", "d2", c.d2, "d2", tp.Device("d2", wire.SufCmd)},
		{"unknown", "stranger", secret(t), "stranger", ""},
	}
	host, port := splitAddr(t, addr)
	base := func(id cliIdentity) []string {
		return []string{"-h", host, "-p", port, "-V", "mqttv311", "-u", id.user, "-P", id.pass, "-i", id.clientID}
	}
	seq := 0
	next := func(kind string) string {
		seq++
		return fmt.Sprintf("%s-%d-%s", kind, seq, secret(t)[:8])
	}
	// settle makes sure everything the broker did before now has reached
	// the observer: a marker from a fresh connection is processed after
	// the broker handled an earlier, already closed connection.
	settle := func() {
		m := next("settle")
		if !obs.publish(prefix+"test/settle", 1, false, m) {
			t.Fatal("observer settle publish failed")
		}
		if _, ok := obs.rec.wait(m, nil); !ok {
			t.Fatal("observer settle marker not received")
		}
	}

	// Connect: each login only under its own client id [MQTT-3.1.4-3].
	for _, id := range ids {
		for _, other := range ids {
			t.Run("clientid/"+id.name+"/as "+other.name, func(t *testing.T) {
				want := r.ClientIDAllowed(id.user, other.clientID)
				as := id
				as.clientID = other.clientID
				res := runCLI(t, mosquittoPub, append(base(as), "-q", "1", "-t", prefix+"dev/"+id.user+"/heartbeat", "-m", "{}")...)
				if (res.err == nil) != want {
					t.Errorf("%s connecting as %q: err=%v (%s), want accepted=%v", id.name, other.clientID, res.err, res.out, want)
				}
			})
		}
	}

	for _, id := range ids {
		for _, topic := range topicClasses() {
			name := id.name + "/" + strings.TrimPrefix(topic, prefix)

			t.Run("publish/"+name, func(t *testing.T) {
				want := r.PublishAllowed(id.user, topic, 32, false)
				p := next("pub")
				runCLI(t, mosquittoPub, append(base(id), "-q", "1", "-t", topic, "-m", p)...)
				if want {
					if _, ok := obs.rec.wait(p, nil); !ok {
						t.Errorf("%s may publish %s: not received", id.name, topic)
					}
					return
				}
				settle()
				if _, got := obs.rec.find(p); got {
					t.Errorf("%s may not publish %s: received", id.name, topic)
				}
			})

			t.Run("retained/"+name, func(t *testing.T) {
				want := r.PublishAllowed(id.user, topic, 32, true)
				if mosq {
					// Mosquitto's ACL cannot tell a retained publish from
					// another: the topic rule applies (docs/security.md).
					want = r.Allowed(id.user, topic, true)
				}
				p := next("ret")
				runCLI(t, mosquittoPub, append(base(id), "-q", "1", "-r", "-t", topic, "-m", p)...)
				settle()
				// A fresh subscriber gets a retained message right after its
				// SUBACK, before the marker published after it.
				watcher := startCLI(t, mosquittoSub, "-h", host, "-p", port, "-V", "mqttv311", "-u", watcherUser, "-P", obsPass,
					"-i", watcherUser, "-q", "1", "-F", "%r %t %p", "-t", topic, "-t", prefix+"test/marker2")
				watcher.waitReady(t, obs, prefix+"test/marker2")
				end := next("end")
				obs.publish(prefix+"test/marker2", 1, false, end)
				if !watcher.wait(end, waitTimeout) {
					t.Fatal("watcher marker not received")
				}
				got := watcher.has("1 " + topic + " " + p)
				watcher.stop()
				if got != want {
					t.Errorf("%s retained publish on %s: stored=%v, want %v", id.name, topic, got, want)
				}
				if got { // clear it for the next case
					obs.publish(topic, 1, true, "")
				}
			})

			t.Run("subscribe/"+name, func(t *testing.T) {
				want := r.Allowed(id.user, topic, false)
				if id.marker == "" {
					res := runCLI(t, mosquittoSub, append(base(id), "-q", "1", "-t", topic, "-C", "1", "-W", "5")...)
					if res.err == nil {
						t.Errorf("%s connected: %s", id.name, res.out)
					}
					return
				}
				sub := startCLI(t, mosquittoSub, append(base(id), "-q", "1", "-F", "%t %p", "-t", topic, "-t", id.marker)...)
				defer sub.stop()
				sub.waitReady(t, obs, id.marker)
				p, end := next("sub"), next("end")
				obs.publish(topic, 1, false, p)
				obs.publish(id.marker, 1, false, end)
				if !sub.wait(end, waitTimeout) {
					t.Fatalf("%s: marker not received", id.name)
				}
				if got := sub.has(topic + " " + p); got != want {
					t.Errorf("%s subscribed %s: received=%v, want %v", id.name, topic, got, want)
				}
			})

			t.Run("will/"+name, func(t *testing.T) {
				want := r.PublishAllowed(id.user, topic, 32, false)
				p := next("will")
				if id.marker == "" {
					res := runCLI(t, mosquittoSub, append(base(id), "--will-topic", topic, "--will-payload", p, "--will-qos", "1",
						"-t", topic, "-C", "1", "-W", "5")...)
					if res.err == nil {
						t.Errorf("%s connected: %s", id.name, res.out)
					}
					settle()
					if _, got := obs.rec.find(p); got {
						t.Errorf("unknown login's will on %s delivered", topic)
					}
					return
				}
				sub := startCLI(t, mosquittoSub, append(base(id), "--will-topic", topic, "--will-payload", p, "--will-qos", "1",
					"-t", id.marker)...)
				connected := sub.tryReady(obs, id.marker)
				sub.kill() // no DISCONNECT: the broker sends the will, if it accepted it
				if want {
					if !connected {
						t.Fatalf("%s with a will on %s: not connected: %s", id.name, topic, sub.out())
					}
					if _, ok := obs.rec.wait(p, nil); !ok {
						t.Errorf("%s will on %s: not delivered", id.name, topic)
					}
					return
				}
				settle()
				if _, got := obs.rec.find(p); got {
					t.Errorf("%s will on %s: delivered, want refused or dropped", id.name, topic)
				}
			})
		}
	}
}

func TestEmbeddedCLIMatrix(t *testing.T) {
	t.Parallel()
	c := newCreds(t)
	r, obs := cliMatrixRules(t, c)
	e := startEmbedded(t, r)
	runCLIMatrix(t, e.Addr(), r, c, obs, false)
}

func TestMosquittoCLIMatrix(t *testing.T) {
	t.Parallel()
	c := newCreds(t)
	r, obs := cliMatrixRules(t, c)
	m := startMosquitto(t, r)
	runCLIMatrix(t, m.addr, r, c, obs, true)
}

func splitAddr(t *testing.T, addr string) (host, port string) {
	t.Helper()
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		t.Fatalf("address %q has no port", addr)
	}
	if _, err := strconv.Atoi(addr[i+1:]); err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return addr[:i], addr[i+1:]
}

// cliResult is a finished command-line client.
type cliResult struct {
	out string
	err error
}

// runCLI runs a client to completion (bounded by a deadline).
func runCLI(t *testing.T, bin string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return cliResult{string(out), err}
}

// cliProc is a running mosquitto_sub whose output lines are collected.
type cliProc struct {
	cmd    *exec.Cmd
	exited chan struct{}

	mu     sync.Mutex
	lines  []string
	notify chan struct{}
}

// startCLI starts a client; the test's cleanup kills it (by pid) if the
// test has not stopped it.
func startCLI(t *testing.T, bin string, args ...string) *cliProc {
	t.Helper()
	p := &cliProc{cmd: exec.Command(bin, args...), exited: make(chan struct{}), notify: make(chan struct{}, 1)}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.exited)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
			select {
			case p.notify <- struct{}{}:
			default:
			}
		}
		_ = p.cmd.Wait()
	}()
	t.Cleanup(p.kill)
	return p
}

// has reports whether a line equal to s was printed.
func (p *cliProc) has(s string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.lines {
		if l == s || strings.HasSuffix(l, " "+s) {
			return true
		}
	}
	return false
}

func (p *cliProc) out() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// wait waits until a line ending in s appears, the process exits or d passes.
func (p *cliProc) wait(s string, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		if p.has(s) {
			return true
		}
		select {
		case <-p.notify:
		case <-p.exited:
			return p.has(s)
		case <-timer.C:
			return false
		}
	}
}

// tryReady publishes markers on topic until the client prints one (it is
// connected and subscribed) and reports whether it did before it exited.
func (p *cliProc) tryReady(obs *client, topic string) bool {
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		m := fmt.Sprintf("ready-%d", i)
		obs.publish(topic, 1, false, m)
		if p.wait(m, 100*time.Millisecond) {
			return true
		}
		select {
		case <-p.exited:
			return false
		default:
		}
	}
	return false
}

func (p *cliProc) waitReady(t *testing.T, obs *client, topic string) {
	t.Helper()
	if !p.tryReady(obs, topic) {
		t.Fatalf("%s never subscribed: %s", p.cmd.Path, p.out())
	}
}

// kill ends the process with SIGKILL, so it sends no DISCONNECT.
func (p *cliProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// stop is kill under the name a reader expects where no will matters.
func (p *cliProc) stop() { p.kill() }
