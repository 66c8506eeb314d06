package daemon_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/daemon"
	"github.com/loalang/loalang/firmware-sim/camsim"
	"github.com/loalang/loalang/internal/whepview"
	"github.com/loalang/loalang/internal/whipphone"
)

// hostCandidates returns the sorted, distinct addresses of an SDP's host
// candidates (RFC 8839 §5.1).
func hostCandidates(sdp string) []string {
	var out []string
	for _, l := range strings.Split(sdp, "\n") {
		f := strings.Fields(strings.TrimSpace(l))
		if len(f) >= 8 && strings.HasPrefix(f[0], "a=candidate:") && f[6] == "typ" && f[7] == "host" && !slices.Contains(out, f[4]) {
			out = append(out, f[4])
		}
	}
	slices.Sort(out)
	return out
}

// whipOffer is a complete Opus send offer from a pion peer standing in for
// the village head's phone.
func whipOffer(t *testing.T) string {
	t.Helper()
	return whipphone.New(t, nil).Offer
}

// TestICEListenIPs checks webrtc.listen_ips end to end: on a host with
// several addresses (127.0.0.1 and at least one LAN address here, or
// 127.0.0.2 on lo), the answers to a WHEP offer and to a WHIP offer carry
// host candidates for exactly the configured addresses, and a viewer gets
// its first frame through them. The default (no list) answers one per
// address, which is what made ICE slow to settle (issue 16).
func TestICEListenIPs(t *testing.T) {
	_, camURL := startCam(t, camsim.Options{})
	cfg := cameraConfig(t, t.TempDir(), config.Camera{ID: "cong-dinh", Name: "Cổng đình", URL: camURL})
	cfg.WebRTC.ListenIPs = []string{"127.0.0.1", "127.0.0.2"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, cfg)
	base := "http://" + d.Ready().HTTP
	admin := login(t, base, "admin", adminPassword(t, cfg.DataDir))

	want := []string{"127.0.0.1", "127.0.0.2"}
	v := whepview.New(t, whepview.BrowserH264)
	code, answer, loc := whep(admin, "cong-dinh", "application/sdp", v.Offer)
	if code != http.StatusCreated {
		t.Fatalf("WHEP: %d %s", code, answer)
	}
	if got := hostCandidates(answer); !slices.Equal(got, want) {
		t.Errorf("WHEP answer host candidates %v, want %v:\n%s", got, want, answer)
	}
	v.Accept(answer)
	aus := v.WaitAUs(1, 20*time.Second)
	if len(aus) == 0 {
		t.Fatal("no frame through the configured candidates")
	}
	if code, body := admin.do("DELETE", loc, nil); code != http.StatusOK && code != http.StatusNoContent {
		t.Errorf("WHEP DELETE: %d %s", code, body)
	}

	req, _ := http.NewRequest("POST", base+"/api/v1/live/whip?zones=a", strings.NewReader(whipOffer(t)))
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+admin.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("WHIP POST: %d %s", resp.StatusCode, body)
	}
	if got := hostCandidates(string(body)); !slices.Equal(got, want) {
		t.Errorf("WHIP answer host candidates %v, want %v", got, want)
	}
	if l := resp.Header.Get("Location"); l != "" {
		admin.do("DELETE", l, nil)
	}
}

// TestICEListenIPsValidation checks the config errors name the key.
func TestICEListenIPsValidation(t *testing.T) {
	for _, c := range []struct {
		listen, nat []string
		key         string
	}{
		{listen: []string{"0.0.0.0"}, key: "webrtc.listen_ips[0]"},
		{listen: []string{"127.0.0.1", "lan"}, key: "webrtc.listen_ips[1]"},
		{listen: []string{"::1"}, key: "webrtc.listen_ips[0]"},
		{nat: []string{"203.0.113.7/x"}, key: "webrtc.nat_1to1_ips[0]"},
		{nat: []string{"203.0.113.7", "203.0.113.8/10.0.0.2"}, key: "webrtc.nat_1to1_ips"},
	} {
		cfg := testConfig(t, t.TempDir(), 0)
		cfg.WebRTC.ListenIPs, cfg.WebRTC.NAT1To1IPs = c.listen, c.nat
		err := cfg.Validate()
		var ce *config.Error
		if err == nil || !errors.As(err, &ce) || ce.Key != c.key {
			t.Errorf("listen %q nat %q: %v, want an error on %s", c.listen, c.nat, err, c.key)
		}
	}
	// An address this host does not have fails at start, naming the key.
	cfg := testConfig(t, t.TempDir(), 0)
	cfg.WebRTC.ListenIPs = []string{"192.0.2.254"}
	if ips, _ := net.InterfaceAddrs(); slices.ContainsFunc(ips, func(a net.Addr) bool { return strings.HasPrefix(a.String(), "192.0.2.254/") }) {
		t.Skip("this host owns 192.0.2.254")
	}
	d, err := daemon.New(context.Background(), cfg, testLogger(t))
	if err == nil {
		_ = d.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "webrtc.listen_ips") {
		t.Errorf("start with a foreign listen address: %v, want an error naming webrtc.listen_ips", err)
	}
}
