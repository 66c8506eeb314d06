package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestWriteMosquittoConfigFiles(t *testing.T) {
	h := mustHash(t, "s")
	r := testRules(h, h, h)
	dir := filepath.Join(t.TempDir(), "mosq")
	if err := WriteMosquittoConfig(dir, r, "127.0.0.1:18830"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{MosquittoConfFile, MosquittoDynsecFile, MosquittoACLFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	conf := readFile(t, filepath.Join(dir, MosquittoConfFile))
	for _, line := range []string{
		"allow_anonymous false",
		"plugin_opt_config_file " + filepath.Join(dir, MosquittoDynsecFile),
		"acl_file " + filepath.Join(dir, MosquittoACLFile),
		"persistence false",
		"listener 18830 127.0.0.1",
	} {
		if !strings.Contains(conf, line+"\n") {
			t.Errorf("mosquitto.conf lacks %q:\n%s", line, conf)
		}
	}
	if strings.Contains(conf, "password_file") {
		t.Errorf("mosquitto.conf has a password_file, which would accept any client id:\n%s", conf)
	}
	var dyn dynsecFile
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(dir, MosquittoDynsecFile))), &dyn); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, c := range dyn.Clients {
		ids[c.Username] = c.ClientID
		if "$7$"+strconv.Itoa(c.Iterations)+"$"+c.Salt+"$"+c.Password != h {
			t.Errorf("dynamic security client %s: hash fields do not reassemble the account's hash", c.Username)
		}
	}
	if want := map[string]string{ServiceUsername: "loalangd-demo", "d1": "d1", "d2": "d2"}; !maps.Equal(ids, want) {
		t.Errorf("dynamic security client ids = %v, want %v", ids, want)
	}
	acl := readFile(t, filepath.Join(dir, MosquittoACLFile))
	if first := strings.Index(acl, "\ntopic "); first < strings.Index(acl, "\nuser ") {
		t.Errorf("a topic line precedes the first user line, granting anonymous access:\n%s", acl)
	}
	for _, line := range []string{
		// Zone audio first: Mosquitto checks the entries in order on each delivery.
		"user d1\ntopic read loalang/v1/demo/zone/z1/audio\ntopic read loalang/v1/demo/zone/z1/stream\n",
		"topic read loalang/v1/demo/zone/z2/stream\ntopic write loalang/v1/demo/dev/d1/status\ntopic write loalang/v1/demo/dev/d1/heartbeat\ntopic read loalang/v1/demo/dev/d1/cmd\n",
		"user loalangd\ntopic readwrite loalang/v1/demo/#\n",
	} {
		if !strings.Contains(acl, line) {
			t.Errorf("acl lacks %q:\n%s", line, acl)
		}
	}
	// Rewriting leaves no temporary files behind.
	if err := WriteMosquittoConfig(dir, r, ":18830"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(readFile(t, filepath.Join(dir, MosquittoConfFile)), "listener 18830\n") {
		t.Error("empty host should listen on all addresses")
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 3 {
		t.Errorf("dir has %d entries, want 3", len(ents))
	}
}

func TestWriteMosquittoConfigRejects(t *testing.T) {
	h := mustHash(t, "s")
	good := testRules(h, h, h)
	for _, addr := range []string{"127.0.0.1:0", "127.0.0.1", "127.0.0.1:x", "127.0.0.1:70000", "a b:1883"} {
		if err := WriteMosquittoConfig(t.TempDir(), good, addr); err == nil {
			t.Errorf("listen address %q accepted", addr)
		}
	}
	bad := testRules(h, h, "plaintext")
	if err := WriteMosquittoConfig(t.TempDir(), bad, "127.0.0.1:1883"); !errors.Is(err, ErrInvalidRules) {
		t.Errorf("plaintext password: %v, want ErrInvalidRules", err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMessageHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(messageHandler{slog.NewTextHandler(&buf, nil)}).With("component", "broker")
	log.Warn("", "error", io.EOF)
	log.Warn("", "error", errors.New("read: connection reset"))
	log.Warn("error processing packet", "error", "x", "pk", "payload-secret")
	log.Info("kept as is")
	out := buf.String()
	if strings.Contains(out, "EOF") {
		t.Errorf("routine EOF disconnect logged at INFO:\n%s", out)
	}
	if !strings.Contains(out, `level=INFO msg="connection ended" component=broker error="read: connection reset"`) {
		t.Errorf("unnamed record not renamed:\n%s", out)
	}
	if strings.Contains(out, "payload-secret") || !strings.Contains(out, `level=INFO msg="error processing packet"`) {
		t.Errorf("packet dump not stripped or level not INFO:\n%s", out)
	}
	if !strings.Contains(out, "kept as is") {
		t.Errorf("ordinary record lost:\n%s", out)
	}
}
