package harness

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// MosquittoBinary finds the mosquitto executable (Debian puts it in
// /usr/sbin, often not on a user's PATH).
func MosquittoBinary() (string, error) {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
		return "/usr/sbin/mosquitto", nil
	}
	return "", fmt.Errorf("mosquitto is not installed (make deps installs it)")
}

// FreeAddr returns a loopback TCP address that was free a moment ago.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// StartMosquitto runs mosquitto -c conf, logging to log, and waits until
// addr accepts connections.
func StartMosquitto(ctx context.Context, conf, addr, log string) (*Child, error) {
	bin, err := MosquittoBinary()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	child, err := StartChild(cmd)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return child, nil
		}
		select {
		case <-child.Exited():
			b, _ := os.ReadFile(log)
			return nil, fmt.Errorf("mosquitto exited: %s", tail(b, 1000))
		case <-ctx.Done():
			_ = child.Close(5 * time.Second)
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = child.Close(5 * time.Second)
			return nil, fmt.Errorf("mosquitto not listening on %s after 20 s", addr)
		}
	}
}

// BareMosquittoConf writes the baseline's Mosquitto configuration into dir:
// one loopback listener, anonymous clients, no ACL, no persistence, and the
// same per-client queue bound as loalang's generated configuration.
func BareMosquittoConf(dir, addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	conf := filepath.Join(dir, "mosquitto-bare.conf")
	body := fmt.Sprintf("per_listener_settings false\nallow_anonymous true\nlistener %s %s\npersistence false\nsys_interval 0\n"+
		"max_queued_messages 1024\nlog_dest stderr\nlog_type error\nlog_type warning\n", port, host)
	return conf, os.WriteFile(conf, []byte(body), 0o600)
}

var passwordFileRE = regexp.MustCompile(`mqtt\.password_file: (\S+)`)

// LoalangMosquitto provisions cfgYAML's devices in dir with
// `loalangd mosquitto-config`, which writes Mosquitto's configuration
// (accounts, client ids and ACL, docs/security.md) into dir/mosquitto for a
// listener on addr, and returns the configuration file and cfgYAML pointed
// at that broker (mqtt.url, mqtt.password_file).
func LoalangMosquitto(ctx context.Context, bin, dir, cfgYAML, addr string) (conf, yaml string, err error) {
	cfgPath := filepath.Join(dir, "loalangd.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgYAML), 0o600); err != nil {
		return "", "", err
	}
	out := filepath.Join(dir, "mosquitto")
	msg, err := exec.CommandContext(ctx, bin, "mosquitto-config", "--config", cfgPath, "--data-dir", dir,
		"--out", out, "--listen", addr).CombinedOutput()
	if err != nil {
		return "", "", fmt.Errorf("loalangd mosquitto-config: %v: %s", err, msg)
	}
	m := passwordFileRE.FindSubmatch(msg)
	if m == nil {
		return "", "", fmt.Errorf("loalangd mosquitto-config named no password file: %s", msg)
	}
	const embedded = "mqtt:\n  listen: 127.0.0.1:0\n"
	if !strings.Contains(cfgYAML, embedded) {
		return "", "", fmt.Errorf("config has no embedded broker section to replace")
	}
	yaml = strings.Replace(cfgYAML, embedded, fmt.Sprintf("mqtt:\n  url: tcp://%s\n  password_file: %s\n", addr, m[1]), 1)
	return filepath.Join(out, "mosquitto.conf"), yaml, nil
}
