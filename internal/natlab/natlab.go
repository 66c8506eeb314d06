// Package natlab builds the network-namespace topology of the police
// camera path across carrier NAT (docs/commune-cameras.md) for tests and
// benchmarks, and removes it:
//
//	village 10.77.1.2 --- 10.77.1.1 cgnat 10.77.2.2 --- 10.77.2.1 commune 10.77.3.1 --- 10.77.3.2 police
//
// The cgnat namespace masquerades the village (nftables) and forwards only
// the village's outbound flows and their replies: a connection opened
// towards the village from the commune is dropped there. The commune has a
// route to the village's network through the NAT, so such an attempt
// really reaches the NAT rather than failing for want of a route.
package natlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Addresses of the topology.
const (
	VillageIP       = "10.77.1.2"
	NATInsideIP     = "10.77.1.1"
	NATOutsideIP    = "10.77.2.2"
	CommuneWANIP    = "10.77.2.1" // the villages' side: broker and TURN
	CommunePoliceIP = "10.77.3.1" // the police side: web and TURN
	PoliceIP        = "10.77.3.2"
)

// Lab is one built topology; its namespace names are unique per process.
type Lab struct {
	Village, NAT, Commune, Police string
	links                         []string
}

// Available says why the lab cannot be built here, or "" when it can:
// it needs root, ip netns and nft.
func Available() string {
	if os.Geteuid() != 0 {
		return "network namespaces need root"
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return tool + " is not installed"
		}
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return "no network namespace support"
	}
	return ""
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// New builds the topology. On error what was built is removed.
func New() (*Lab, error) {
	id := fmt.Sprintf("%d", os.Getpid()%100000)
	l := &Lab{Village: "nlv" + id, NAT: "nln" + id, Commune: "nlc" + id, Police: "nlp" + id}
	if err := l.build(id); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func (l *Lab) build(id string) error {
	for _, ns := range []string{l.Village, l.NAT, l.Commune, l.Police} {
		if err := run("ip", "netns", "add", ns); err != nil {
			return err
		}
		if err := l.Exec(ns, "ip", "link", "set", "lo", "up"); err != nil {
			return err
		}
	}
	type link struct{ a, aNS, aIP, b, bNS, bIP string }
	links := []link{
		{"nv" + id, l.Village, VillageIP, "ni" + id, l.NAT, NATInsideIP},
		{"no" + id, l.NAT, NATOutsideIP, "nw" + id, l.Commune, CommuneWANIP},
		{"np" + id, l.Commune, CommunePoliceIP, "nq" + id, l.Police, PoliceIP},
	}
	for _, k := range links {
		if err := run("ip", "link", "add", k.a, "type", "veth", "peer", "name", k.b); err != nil {
			return err
		}
		l.links = append(l.links, k.a)
		for _, end := range [][3]string{{k.a, k.aNS, k.aIP}, {k.b, k.bNS, k.bIP}} {
			if err := run("ip", "link", "set", end[0], "netns", end[1]); err != nil {
				return err
			}
			if err := l.Exec(end[1], "ip", "addr", "add", end[2]+"/24", "dev", end[0]); err != nil {
				return err
			}
			if err := l.Exec(end[1], "ip", "link", "set", end[0], "up"); err != nil {
				return err
			}
		}
	}
	steps := [][]string{
		{l.Village, "ip", "route", "add", "default", "via", NATInsideIP},
		{l.NAT, "ip", "route", "add", "default", "via", CommuneWANIP},
		{l.Commune, "ip", "route", "add", "10.77.1.0/24", "via", NATOutsideIP},
		{l.Police, "ip", "route", "add", "default", "via", CommunePoliceIP},
		{l.NAT, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"},
	}
	for _, s := range steps {
		if err := l.Exec(s[0], s[1:]...); err != nil {
			return err
		}
	}
	// Carrier-grade NAT: masquerade the village, forward its outbound flows
	// and their replies only (RFC 4787 behaviour of a port-restricted NAT:
	// conntrack maps replies of a flow, nothing else gets in).
	rules := fmt.Sprintf(`table ip natlab {
	chain natlab_post { type nat hook postrouting priority srcnat; oifname "no%[1]s" masquerade; }
	chain natlab_forward { type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "ni%[1]s" oifname "no%[1]s" accept
	}
}
`, id)
	f, err := os.CreateTemp("", "natlab-*.nft")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	f.WriteString(rules)
	f.Close()
	return l.Exec(l.NAT, "nft", "-f", f.Name())
}

// Exec runs a command in a namespace and waits for it.
func (l *Lab) Exec(ns string, args ...string) error {
	return run(append([]string{"ip", "netns", "exec", ns}, args...)...)
}

// Command returns a command that runs in a namespace.
func (l *Lab) Command(ns string, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Close deletes the namespaces (and with them their veth ends and the NAT
// rules). Processes still running in them keep running: kill them first.
func (l *Lab) Close() error {
	var errs []error
	for _, ns := range []string{l.Village, l.NAT, l.Commune, l.Police} {
		if _, err := os.Stat("/var/run/netns/" + ns); err == nil {
			if err := run("ip", "netns", "del", ns); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// DialContext dials from inside namespace ns: the socket is created on an
// OS thread switched into ns (setns(2)) and stays there, so the connection
// behaves as one opened by a process of that namespace.
func (l *Lab) DialContext(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type res struct {
			c   net.Conn
			err error
		}
		ch := make(chan res, 1)
		go func() {
			runtime.LockOSThread()
			orig, err := os.Open("/proc/thread-self/ns/net")
			if err != nil {
				ch <- res{nil, err}
				return // the locked thread is discarded
			}
			defer orig.Close()
			target, err := os.Open("/var/run/netns/" + ns)
			if err != nil {
				ch <- res{nil, err}
				return
			}
			defer target.Close()
			if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
				ch <- res{nil, fmt.Errorf("setns %s: %w", ns, err)}
				return
			}
			d := net.Dialer{Timeout: 5 * time.Second}
			c, err := d.DialContext(ctx, network, addr)
			if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
				runtime.UnlockOSThread()
			}
			ch <- res{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
}
