package archtest

import (
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/loalang/loalang/"

// domain packages hold the product's rules and types; they depend on the
// standard library, the wire contract and each other, never on an adapter
// or on the libraries the adapters wrap.
var domain = []string{"auth", "device", "device/wire", "broadcast", "broadcast/catalog", "broadcast/playout", "broadcast/schedule", "health", "audit"}

// adapters wrap one dependency each, or wire the daemon together.
var adapters = []string{"store", "broker", "bus", "uplink", "web", "whip", "rtc", "commune", "daemon", "cmd/loalangd", "cmd/loalang", "broadcast/relay", "broadcast/trigger"}

// adapterLibs are the libraries that belong behind an adapter.
var adapterLibs = []string{"go.etcd.io/bbolt", "github.com/mochi-mqtt/", "github.com/eclipse/paho.mqtt.golang", "net/http"}

type pkg struct {
	ImportPath string
	Deps       []string
	Imports    []string
}

// list returns every package of the module (tests excluded) with its
// transitive dependencies.
func list(t *testing.T) map[string]pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps=false", "-json", module+"...")
	cmd.Env = append(cmd.Environ(), "GOFLAGS=-buildvcs=false -tags=nolibopusfile")
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go list: %v\n%s", err, stderr)
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode go list: %v", err)
		}
		pkgs[strings.TrimPrefix(p.ImportPath, module)] = p
	}
	if len(pkgs) < 20 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

// violations applies the rules to pkgs and returns one line per broken
// rule, naming the package and the import that breaks it.
func violations(pkgs map[string]pkg) []string {
	var out []string
	own := func(dep string) (string, bool) { return strings.CutPrefix(dep, module) }
	for _, name := range domain {
		p, ok := pkgs[name]
		if !ok {
			out = append(out, fmt.Sprintf("domain package %s is missing", name))
			continue
		}
		for _, dep := range p.Deps {
			if d, ok := own(dep); ok && slices.ContainsFunc(adapters, func(a string) bool { return d == a || strings.HasPrefix(d, a+"/") }) {
				out = append(out, fmt.Sprintf("domain package %s depends on adapter %s", name, d))
			}
			for _, lib := range adapterLibs {
				if dep == strings.TrimSuffix(lib, "/") || strings.HasPrefix(dep, lib) {
					out = append(out, fmt.Sprintf("domain package %s depends on %s, which belongs behind an adapter", name, dep))
				}
			}
		}
	}
	for name, p := range pkgs {
		switch {
		case name == "firmware-sim" || strings.HasPrefix(name, "firmware-sim/"):
			// The simulator shares only the wire contract with the daemon:
			// a simulator built from the daemon's code can only agree with it.
			for _, dep := range p.Deps {
				if d, ok := own(dep); ok && d != "device/wire" && d != "firmware-sim" && !strings.HasPrefix(d, "firmware-sim/") {
					out = append(out, fmt.Sprintf("simulator package %s depends on %s (only device/wire is shared)", name, d))
				}
			}
		case name == "web":
			for _, dep := range p.Imports {
				if strings.HasPrefix(dep, "go.etcd.io/bbolt") || dep == module+"store" {
					out = append(out, fmt.Sprintf("web imports %s: it reaches storage through services", dep))
				}
			}
		}
		if name != "cmd/loalangd" && !strings.HasPrefix(name, "bench/") {
			if slices.Contains(p.Imports, module+"daemon") {
				out = append(out, fmt.Sprintf("%s imports daemon: only cmd/loalangd wires the daemon", name))
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestDependencyRules fails when a package breaks a rule of
// docs/architecture.md.
func TestDependencyRules(t *testing.T) {
	for _, v := range violations(list(t)) {
		t.Error(v)
	}
}

// TestRulesCatchViolations proves the rules can fail: it adds forbidden
// imports to the real package list and expects each to be named.
func TestRulesCatchViolations(t *testing.T) {
	pkgs := list(t)
	add := func(name, imp string) {
		p := pkgs[name]
		p.Imports = append(slices.Clone(p.Imports), imp)
		p.Deps = append(slices.Clone(p.Deps), imp)
		pkgs[name] = p
	}
	add("broadcast", module+"store")
	add("device", "go.etcd.io/bbolt")
	add("firmware-sim/speaker", module+"broadcast")
	add("web", "go.etcd.io/bbolt")
	add("web", module+"store")
	add("broker", module+"daemon")
	want := []string{
		"domain package broadcast depends on adapter store",
		"domain package device depends on go.etcd.io/bbolt, which belongs behind an adapter",
		"simulator package firmware-sim/speaker depends on broadcast (only device/wire is shared)",
		"web imports go.etcd.io/bbolt: it reaches storage through services",
		"web imports github.com/loalang/loalang/store: it reaches storage through services",
		"broker imports daemon: only cmd/loalangd wires the daemon",
	}
	got := violations(pkgs)
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("rule not enforced: %q not in %q", w, got)
		}
	}
}
