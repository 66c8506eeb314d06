package broker

import (
	"errors"
	"strings"
	"testing"

	"github.com/loalang/loalang/device/wire"
)

// testRules returns the rule set shared by the table and broker tests: the
// service account, d1 in zones z1 and z2, d2 in zone z3. Hashes are only
// needed where a broker checks passwords, so the caller passes them in.
func testRules(svcHash, d1Hash, d2Hash string) Rules {
	return Rules{Site: "demo", Accounts: []Account{
		{Username: ServiceUsername, PasswordHash: svcHash, Role: RoleService, ClientID: ServiceClientID("demo")},
		{Username: "d1", PasswordHash: d1Hash, Role: RoleDevice, DeviceID: "d1", Zones: []string{"z1", "z2"}},
		{Username: "d2", PasswordHash: d2Hash, Role: RoleDevice, Zones: []string{"z3"}},
	}}
}

func TestRulesAllowed(t *testing.T) {
	r := testRules("", "", "")
	const p = "loalang/v1/demo/"
	cases := []struct {
		user, topic string
		write, want bool
	}{
		// A device publishes the protocol's device topics under its own dev/<id>/.
		{"d1", p + "dev/d1/status", true, true},
		{"d1", p + "dev/d1/heartbeat", true, true},
		{"d1", p + "dev/d1/reply", true, true},
		{"d1", p + "dev/d1/report", true, true},
		{"d1", p + "dev/d1/clock", true, true},
		{"d2", p + "dev/d2/status", true, true}, // DeviceID defaults to Username
		// ...and nothing else there: not its own cmd or time, no made-up
		// suffix, no deeper level, not the parent level.
		{"d1", p + "dev/d1", true, false},
		{"d1", p + "dev/d1/cmd", true, false},
		{"d1", p + "dev/d1/time", true, false},
		{"d1", p + "dev/d1/junk", true, false},
		{"d1", p + "dev/d1/status/x", true, false},
		{"d1", p + "ctl/probe", true, false},
		{"d1", p + "ctl/probe", false, false},
		// ...not another device's, a zone or outside the site.
		{"d1", p + "dev/d2/status", true, false},
		{"d1", p + "dev/d2/cmd", true, false},
		{"d1", p + "dev/d10/status", true, false},
		{"d1", p + "zone/z1/audio", true, false},
		{"d1", p + "zone/z1/stream", true, false},
		{"d1", "loalang/v1/other/dev/d1/status", true, false},
		{"d1", p + "dev/+/status", true, false}, // wildcards are not topic names
		{"d1", "", true, false},
		// A device reads its own cmd and time and its zones' stream and audio.
		{"d1", p + "dev/d1/cmd", false, true},
		{"d1", p + "dev/d1/time", false, true},
		{"d1", p + "zone/z1/stream", false, true},
		{"d1", p + "zone/z1/audio", false, true},
		{"d1", p + "zone/z2/audio", false, true},
		// ...and nothing else: not its own status, other devices, other zones.
		{"d1", p + "dev/d1/status", false, false},
		{"d1", p + "dev/d2/cmd", false, false},
		{"d1", p + "dev/d2/time", false, false},
		{"d1", p + "zone/z3/audio", false, false},
		{"d1", p + "zone/z3/stream", false, false},
		{"d2", p + "zone/z1/audio", false, false},
		// Wildcard subscriptions are allowed only if wholly covered.
		{"d1", p + "#", false, false},
		{"d1", "#", false, false},
		{"d1", p + "dev/+/cmd", false, false},
		{"d1", p + "zone/+/audio", false, false},
		{"d1", p + "dev/d1/#", false, false}, // would include its own status
		{"d1", p + "dev/d1/+", false, false},
		{"d1", "$SYS/#", false, false},
		{"d1", "$share/g/" + p + "dev/d1/cmd", false, false},
		// The service account reads and writes everything under the prefix.
		{ServiceUsername, p + "dev/d1/cmd", true, true},
		{ServiceUsername, p + "zone/z9/audio", true, true},
		{ServiceUsername, p + "#", false, true},
		{ServiceUsername, p + "dev/+/status", false, true},
		{ServiceUsername, p + "dev/d1/status", false, true},
		// ...but nothing outside it.
		{ServiceUsername, "#", false, false},
		{ServiceUsername, "loalang/v1/+/dev/d1/status", false, false},
		{ServiceUsername, "loalang/v1/other/dev/d1/cmd", true, false},
		{ServiceUsername, "$SYS/broker/uptime", false, false},
		// Anonymous and unknown users get nothing.
		{"", p + "dev/d1/status", true, false},
		{"", p + "dev/d1/cmd", false, false},
		{"d3", p + "dev/d3/status", true, false},
		{"D1", p + "dev/d1/status", true, false},
	}
	for _, c := range cases {
		if got := r.Allowed(c.user, c.topic, c.write); got != c.want {
			t.Errorf("Allowed(%q, %q, write=%v) = %v, want %v", c.user, c.topic, c.write, got, c.want)
		}
	}
}

func TestRulesPublishAllowed(t *testing.T) {
	r := testRules("", "", "")
	const p = "loalang/v1/demo/"
	cases := []struct {
		user, topic string
		size        int
		retain      bool
		want        bool
	}{
		// Only status may be retained, within its size.
		{"d1", p + "dev/d1/status", 90, true, true},
		{"d1", p + "dev/d1/status", 0, true, true}, // clearing its own retained status
		{"d1", p + "dev/d1/status", wire.MaxStatusPayload, true, true},
		{"d1", p + "dev/d1/status", wire.MaxStatusPayload + 1, true, false},
		{"d1", p + "dev/d1/status", 512 << 10, true, false}, // the reported attack
		{"d1", p + "dev/d1/heartbeat", 120, false, true},
		{"d1", p + "dev/d1/heartbeat", 120, true, false},
		{"d1", p + "dev/d1/heartbeat", wire.MaxHeartbeatPayload + 1, false, false},
		{"d1", p + "dev/d1/reply", wire.MaxReplyPayload, false, true},
		{"d1", p + "dev/d1/reply", wire.MaxReplyPayload + 1, false, false},
		{"d1", p + "dev/d1/reply", 10, true, false},
		{"d1", p + "dev/d1/report", wire.MaxReportPayload, false, true},
		{"d1", p + "dev/d1/report", 10, true, false},
		{"d1", p + "dev/d1/clock", wire.MaxClockPayload, false, true},
		{"d1", p + "dev/d1/clock", wire.MaxClockPayload + 1, false, false},
		{"d1", p + "dev/d2/status", 10, true, false},
		{"d1", p + "dev/d1/junk", 10, false, false},
		// The service account may retain anything under the prefix.
		{ServiceUsername, p + "dev/d1/cmd", 512 << 10, true, true},
		{ServiceUsername, "other/x", 1, false, false},
		{"", p + "dev/d1/status", 1, false, false},
		{"d3", p + "dev/d3/status", 1, false, false},
	}
	for _, c := range cases {
		if got := r.PublishAllowed(c.user, c.topic, c.size, c.retain); got != c.want {
			t.Errorf("PublishAllowed(%q, %q, %d, retain=%v) = %v, want %v", c.user, c.topic, c.size, c.retain, got, c.want)
		}
	}
}

func TestRulesClientIDAllowed(t *testing.T) {
	r := testRules("", "", "")
	cases := []struct {
		user, id string
		want     bool
	}{
		{ServiceUsername, "loalangd-demo", true},
		{ServiceUsername, ServiceUsername, false},
		{"d1", "d1", true},
		{"d2", "d2", true},
		{"d1", "loalangd-demo", false}, // the reported takeover
		{"d1", "d2", false},
		{"d1", "", false},
		{"d1", "d1-probe", false},
		{"d3", "d3", false},
		{"", "", false},
	}
	for _, c := range cases {
		if got := r.ClientIDAllowed(c.user, c.id); got != c.want {
			t.Errorf("ClientIDAllowed(%q, %q) = %v, want %v", c.user, c.id, got, c.want)
		}
	}
}

func TestCovers(t *testing.T) {
	cases := []struct {
		grant, filter string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/b/c", false},
		{"a/b", "a", false},
		{"a/#", "a", true}, // "#" includes the parent level (MQTT 3.1.1 §4.7.1.2)
		{"a/#", "a/b/c", true},
		{"a/#", "a/#", true},
		{"a/#", "a/+", true},
		{"a/#", "#", false},
		{"a/+", "a/b", true},
		{"a/+", "a/+", true},
		{"a/+", "a/#", false},
		{"a/+", "a/b/c", false},
		{"a/b", "a/+", false},
		{"+/x", "$SYS/x", false},
		{"#", "$SYS/x", false},
	}
	for _, c := range cases {
		if got := covers(c.grant, c.filter); got != c.want {
			t.Errorf("covers(%q, %q) = %v, want %v", c.grant, c.filter, got, c.want)
		}
	}
}

func TestRulesValidate(t *testing.T) {
	h, err := HashPassword("secret-for-validate")
	if err != nil {
		t.Fatal(err)
	}
	good := testRules(h, h, h)
	if err := good.Validate(); err != nil {
		t.Fatalf("valid rules: %v", err)
	}
	bad := map[string]func(r *Rules){
		"empty site":      func(r *Rules) { r.Site = "" },
		"wildcard site":   func(r *Rules) { r.Site = "de+mo" },
		"slash user":      func(r *Rules) { r.Accounts[1].Username = "d1/x" },
		"colon user":      func(r *Rules) { r.Accounts[1].Username = "d1:x" },
		"space user":      func(r *Rules) { r.Accounts[1].Username = "d 1" },
		"duplicate user":  func(r *Rules) { r.Accounts[2].Username = "d1" },
		"hash zone":       func(r *Rules) { r.Accounts[1].Zones = []string{"#"} },
		"bad device id":   func(r *Rules) { r.Accounts[1].DeviceID = "+" },
		"dotted site":     func(r *Rules) { r.Site = "de.mo" }, // not a wire topic level
		"dotted zone":     func(r *Rules) { r.Accounts[1].Zones = []string{"z.1"} },
		"no role":         func(r *Rules) { r.Accounts[1].Role = 0 },
		"plain password":  func(r *Rules) { r.Accounts[1].PasswordHash = "secret" },
		"newline in hash": func(r *Rules) { r.Accounts[1].PasswordHash = h + "\nuser evil" },
		"long name":       func(r *Rules) { r.Accounts[1].Username = strings.Repeat("x", 65) },
		"bad client id":   func(r *Rules) { r.Accounts[0].ClientID = "loalangd demo" },
		"long client id":  func(r *Rules) { r.Accounts[0].ClientID = strings.Repeat("x", 129) },
		"shared id":       func(r *Rules) { r.Accounts[0].ClientID = "d2" },
		"shared id by device id": func(r *Rules) {
			r.Accounts[2].ClientID = "d1"
		},
	}
	for name, mutate := range bad {
		r := testRules(h, h, h)
		r.Accounts = append([]Account(nil), r.Accounts...)
		mutate(&r)
		if err := r.Validate(); !errors.Is(err, ErrInvalidRules) {
			t.Errorf("%s: Validate() = %v, want ErrInvalidRules", name, err)
		}
	}
}

// TestGrantsAreWireTopics checks every grant is a topic of device/wire's
// contract, built by its Topics: the broker restates none of the protocol.
// A device gets exactly its DeviceTopicRules and its zones' ZoneTopicRules;
// rules the wire contract would refuse grant nothing.
func TestGrantsAreWireTopics(t *testing.T) {
	r := testRules("", "", "")
	tp := wire.MustTopics(r.Site)
	want := map[string]bool{}
	for _, tr := range wire.DeviceTopicRules {
		want[tp.Device("d1", tr.Suffix)] = true
	}
	for _, z := range []string{"z1", "z2"} {
		for _, tr := range wire.ZoneTopicRules {
			want[tp.Zone(z, tr.Suffix)] = true
		}
	}
	got := r.Grants(r.Accounts[1])
	if len(got) != len(want) {
		t.Fatalf("%d grants, want %d: %+v", len(got), len(want), got)
	}
	for _, g := range got {
		if !want[g.Filter] {
			t.Errorf("grant %q is not a wire topic of d1", g.Filter)
		}
		if id, suffix, ok := tp.ParseDevice(g.Filter); ok && (id != "d1" || suffix == "") {
			t.Errorf("grant %q parses as device %q", g.Filter, id)
		}
	}
	if svc := r.Grants(r.Accounts[0]); len(svc) != 1 || svc[0].Filter != tp.All() {
		t.Errorf("service grants %+v, want only %q", svc, tp.All())
	}
	bad := r
	bad.Site = "de.mo"
	if g := bad.Grants(r.Accounts[1]); g != nil {
		t.Errorf("invalid site granted %+v", g)
	}
	if g := r.Grants(Account{Username: "x.y", Role: RoleDevice}); g != nil {
		t.Errorf("invalid device id granted %+v", g)
	}
}
