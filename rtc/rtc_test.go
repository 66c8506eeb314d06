package rtc

import (
	"net"
	"net/netip"
	"testing"

	"github.com/pion/webrtc/v4"
)

// TestOpenUDPMux checks the sockets of several listen addresses share one
// port, that closing the mux frees it, and that a taken port fails with
// nothing left open.
func TestOpenUDPMux(t *testing.T) {
	ips := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")}
	wrapped := 0
	mux, err := OpenUDPMux(0, ips, func(c *net.UDPConn) net.PacketConn { wrapped++; return c })
	if err != nil {
		t.Skipf("127.0.0.2 not usable here: %v", err)
	}
	addrs := mux.GetListenAddresses()
	if len(addrs) != 2 || wrapped != 2 {
		t.Fatalf("addresses %v, %d wrapped", addrs, wrapped)
	}
	port := addrs[0].(*net.UDPAddr).Port
	if addrs[1].(*net.UDPAddr).Port != port {
		t.Fatalf("ports differ: %v", addrs)
	}
	if _, err := OpenUDPMux(port, ips[:1], nil); err == nil {
		t.Fatal("second mux on a taken port opened")
	}
	if err := mux.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := OpenUDPMux(port, ips, nil)
	if err != nil {
		t.Fatalf("port %d not freed by Close: %v", port, err)
	}
	again.Close()
}

func TestConfigParsing(t *testing.T) {
	for _, bad := range [][]string{{"0.0.0.0"}, {"::1"}, {"x"}, {"127.0.0.1", "127.0.0.1"}} {
		if _, err := ParseListenIPs(bad); err == nil {
			t.Errorf("ParseListenIPs(%q) accepted", bad)
		}
	}
	se := webrtc.SettingEngine{}
	if err := SetNAT1To1(&se, []string{"203.0.113.7", "203.0.113.8/10.0.0.2"}); err == nil {
		t.Error("mixed NAT 1:1 forms accepted")
	}
	if err := SetNAT1To1(&se, []string{"203.0.113.7"}); err != nil {
		t.Error(err)
	}
	if s := ICEServers(nil, []string{"turn:t.example"}, "u", "secret"); len(s) != 1 || s[0].Credential != "secret" {
		t.Errorf("ICE servers %+v", s)
	}
	if s := ICEServers(nil, nil, "", ""); s != nil {
		t.Errorf("no servers configured, got %+v", s)
	}
}
