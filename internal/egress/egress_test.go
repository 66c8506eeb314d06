package egress

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	lan, err := ParsePolicy("relay_allow", []string{"192.168.1.0/24", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr    string
		def, ok bool // allowed by the zero policy, by lan
	}{
		{"203.0.113.7", true, true},
		{"8.8.8.8", true, true},
		{"2a00:1450:4001::1", true, true},
		{"127.0.0.1", false, true},
		{"127.0.0.2", false, false},
		{"::1", false, false},
		{"::ffff:127.0.0.1", false, true},
		{"169.254.169.254", false, false},
		{"fe80::1", false, false},
		{"0.0.0.0", false, false},
		{"::", false, false},
		{"224.0.0.1", false, false},
		{"ff02::1", false, false},
		{"255.255.255.255", false, false},
		{"10.1.2.3", false, false},
		{"172.16.0.1", false, false},
		{"192.168.1.20", false, true},
		{"192.168.2.20", false, false},
		{"fd00::1", false, false},
		{"100.64.0.1", false, false},
		{"64:ff9b::7f00:1", false, false},
	} {
		a := netip.MustParseAddr(tc.addr)
		if err := (Policy{}).Check(a); (err == nil) != tc.def || (err != nil && !errors.Is(err, ErrForbidden)) {
			t.Errorf("default policy, %s: %v", tc.addr, err)
		}
		if err := lan.Check(a); (err == nil) != tc.ok {
			t.Errorf("lan policy, %s: %v", tc.addr, err)
		}
	}
	if _, err := ParsePolicy("schedule.relay_allow", []string{"192.168.1.0/33"}); err == nil || !strings.Contains(err.Error(), "schedule.relay_allow[0]") {
		t.Errorf("bad CIDR: %v", err)
	}
}

func TestCheckURL(t *testing.T) {
	for raw, ok := range map[string]bool{
		"http://radio.example/live":          true, // names are checked at dial time
		"http://203.0.113.7:8000/live":       true,
		"http://127.0.0.1:8080/api/v1/users": false,
		"http://[::1]/x":                     false,
		"http://localhost:8080/":             false,
		"http://api.localhost/":              false,
		"http://169.254.169.254/latest/":     false,
		"http://2130706433/":                 false,
		"http://0x7f.1/":                     false,
		"http://192.168.1.1/":                false,
		"https://user:pw@127.0.0.1/?token=x": false,
	} {
		err := (Policy{}).CheckURL(raw)
		if (err == nil) != ok {
			t.Errorf("%s: %v", raw, err)
		}
		if err != nil && (strings.Contains(err.Error(), "token") || strings.Contains(err.Error(), "pw")) {
			t.Errorf("%s: error %q echoes the URL", raw, err)
		}
	}
}

func TestRedact(t *testing.T) {
	got := Redact("https://u:p4ss@radio.example/live.mp3?token=S3cr3t&station=vov1&S3cr3t2")
	if strings.Contains(got, "S3cr3t") || strings.Contains(got, "p4ss") || strings.Contains(got, "u:") {
		t.Fatalf("Redact leaks: %s", got)
	}
	if want := "https://radio.example/live.mp3?token=***&station=***&***"; got != want {
		t.Fatalf("Redact = %s", got)
	}
}
