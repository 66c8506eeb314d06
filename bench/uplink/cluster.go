package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/loalang/loalang/bench/fanout/harness"
)

// node is one NATS server of the province's cluster, a child process
// (this program with -node), with MQTT and JetStream on: NATS's MQTT needs
// JetStream, whose clustered streams hold the MQTT sessions (R3), so a
// client of a killed node resumes its session on another.
type node struct {
	name  string
	mqtt  string // host:port
	child *harness.Child
	conf  string
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func port(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// startCluster writes n node configs, routes every node to the others and
// starts them, waiting until each accepts an MQTT connection (which needs
// JetStream's meta leader elected).
func startCluster(ctx context.Context, work string, n int) ([]*node, error) {
	var nodes []*node
	var routes []string
	clients := make([]string, n)
	clusters := make([]string, n)
	for i := range n {
		var err error
		if clients[i], err = freePort(); err != nil {
			return nil, err
		}
		if clusters[i], err = freePort(); err != nil {
			return nil, err
		}
		m, err := freePort()
		if err != nil {
			return nil, err
		}
		routes = append(routes, "nats-route://"+clusters[i])
		nodes = append(nodes, &node{name: fmt.Sprintf("n%d", i+1), mqtt: m})
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	for i, nd := range nodes {
		dir := filepath.Join(work, nd.name)
		os.MkdirAll(dir, 0o700)
		conf := fmt.Sprintf(`server_name: %s
listen: %s
jetstream { store_dir: %q, max_memory_store: 256MB, max_file_store: 2GB }
cluster { name: province, listen: %s, routes: [%s] }
mqtt { listen: %s }
`, nd.name, clients[i], dir, clusters[i], strings.Join(routes, ", "), nd.mqtt)
		nd.conf = filepath.Join(dir, "nats.conf")
		if err := os.WriteFile(nd.conf, []byte(conf), 0o600); err != nil {
			return nil, err
		}
		if err := nd.start(self, dir); err != nil {
			return nil, err
		}
	}
	for _, nd := range nodes {
		if err := waitMQTT(ctx, nd.mqtt, 90*time.Second); err != nil {
			return nodes, fmt.Errorf("node %s: %w", nd.name, err)
		}
	}
	return nodes, nil
}

func (nd *node) start(self, dir string) error {
	logf, err := os.OpenFile(filepath.Join(dir, "nats.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(self, "-node", nd.conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	nd.child, err = harness.StartChild(cmd)
	return err
}

// kill ends the node with SIGKILL, by its pid.
func (nd *node) kill() {
	syscall.Kill(nd.child.Pid(), syscall.SIGKILL)
	<-nd.child.Exited()
}

func waitMQTT(ctx context.Context, addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("probe-%d", time.Now().UnixNano())).SetConnectTimeout(5 * time.Second))
		tok := c.Connect()
		if tok.WaitTimeout(6*time.Second) && tok.Error() == nil {
			c.Disconnect(50)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no MQTT on %s after %s: %v", addr, within, tok.Error())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// runNode is the -node child: one NATS server until SIGTERM (or SIGKILL).
func runNode(conf string) error {
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		return err
	}
	opts.NoSigs = true
	s, err := server.NewServer(opts)
	if err != nil {
		return err
	}
	s.ConfigureLogger()
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		return fmt.Errorf("nats %s not ready", conf)
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	<-ch
	s.Shutdown()
	s.WaitForShutdown()
	return nil
}
