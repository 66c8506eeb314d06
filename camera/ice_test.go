package camera

import (
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loalang/loalang/firmware-sim/camsim"
	"github.com/loalang/loalang/internal/whepview"
	"github.com/pion/sdp/v3"
)

// answerHosts returns the addresses of the answer's host candidates (RFC
// 8839 §5.1 candidate-attribute: foundation component transport priority
// address port typ type).
func answerHosts(t *testing.T, answer string) []string {
	t.Helper()
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(answer); err != nil {
		t.Fatalf("answer: %v", err)
	}
	var out []string
	for _, md := range sd.MediaDescriptions {
		for _, a := range md.Attributes {
			if a.Key != "candidate" {
				continue
			}
			f := strings.Fields(a.Value)
			if len(f) < 8 || f[6] != "typ" {
				t.Fatalf("malformed candidate %q", a.Value)
			}
			if f[7] == "host" && !slices.Contains(out, f[4]) {
				out = append(out, f[4])
			}
		}
	}
	slices.Sort(out)
	return out
}

// hostIPv4s lists this host's IPv4 addresses other than loopback.
func hostIPv4s(t *testing.T) []string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			out = append(out, n.IP.String())
		}
	}
	return out
}

// TestAnswerCarriesOnlyListenAddresses checks that a WHEP answer carries a
// host candidate for exactly the configured listen addresses, while the
// default (every address) answers one per interface, and that a viewer
// connects through them and starts on a keyframe.
func TestAnswerCarriesOnlyListenAddresses(t *testing.T) {
	_, url := startSim(t, camsim.Options{})
	cam := Camera{ID: "cong-dinh", URL: url}
	offer := func(r *Relay) (*whepview.Viewer, Session) {
		t.Helper()
		c := whepview.New(t, whepview.BrowserH264)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		sess, err := r.Offer(ctx, cam.ID, c.Offer, "police-1")
		if err != nil {
			t.Fatalf("offer: %v", err)
		}
		return c, sess
	}

	// The default listens everywhere: one host candidate per address.
	def := testConfig()
	def.ListenIP = ""
	rDef := newRelay(t, def, cam)
	_, sess := offer(rDef)
	got := answerHosts(t, sess.AnswerSDP)
	want := append([]string{"127.0.0.1"}, hostIPv4s(t)...)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("default answer host candidates %v, want every address %v", got, want)
	}
	if err := rDef.Hangup(sess.ID); err != nil {
		t.Fatal(err)
	}

	// Two configured addresses (both on lo, which owns 127/8): exactly
	// those, whatever other addresses the host has.
	cfg := testConfig()
	cfg.ListenIP = ""
	cfg.ListenIPs = []string{"127.0.0.1", "127.0.0.2"}
	r := newRelay(t, cfg, cam)
	v, sess := offer(r)
	if got := answerHosts(t, sess.AnswerSDP); !slices.Equal(got, []string{"127.0.0.1", "127.0.0.2"}) {
		t.Fatalf("answer host candidates %v, want [127.0.0.1 127.0.0.2]:\n%s", got, sess.AnswerSDP)
	}
	v.Accept(sess.AnswerSDP)
	aus := v.WaitAUs(1, 20*time.Second)
	whepview.AssertKeyframeFirst(t, aus[0].AnnexB)
	port := r.ICEAddr().(*net.UDPAddr).Port
	if !strings.Contains(sess.AnswerSDP, " 127.0.0.2 "+strconv.Itoa(port)+" typ host") {
		t.Errorf("the second address does not use the same port %d:\n%s", port, sess.AnswerSDP)
	}
}

// TestNAT1To1PerAddress checks the "external/local" form: only the named
// local address's candidate is replaced.
func TestNAT1To1PerAddress(t *testing.T) {
	_, url := startSim(t, camsim.Options{})
	cfg := testConfig()
	cfg.ListenIP = ""
	cfg.ListenIPs = []string{"127.0.0.1", "127.0.0.2"}
	cfg.NAT1To1IPs = []string{"203.0.113.7/127.0.0.2"}
	r := newRelay(t, cfg, Camera{ID: "cam", URL: url})
	c := whepview.New(t, whepview.BrowserH264)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	sess, err := r.Offer(ctx, "cam", c.Offer, "police-1")
	if err != nil {
		t.Fatal(err)
	}
	if got := answerHosts(t, sess.AnswerSDP); !slices.Equal(got, []string{"127.0.0.1", "203.0.113.7"}) {
		t.Errorf("answer host candidates %v, want [127.0.0.1 203.0.113.7]", got)
	}
}

func TestParseListenIPsAndNAT(t *testing.T) {
	for _, bad := range [][]string{{"0.0.0.0"}, {"::1"}, {"host.local"}, {"127.0.0.1", "127.0.0.1"}} {
		if _, err := ParseListenIPs(bad); err == nil {
			t.Errorf("ParseListenIPs(%q) accepted", bad)
		}
	}
	if _, err := New(Config{ListenIPs: []string{"0.0.0.0"}}, nil); err == nil || !strings.Contains(err.Error(), "unspecified") {
		t.Errorf("New with 0.0.0.0: %v", err)
	}
	for _, bad := range [][]string{{"x"}, {"1.2.3.4/x"}, {"1.2.3.4", "5.6.7.8/10.0.0.1"}} {
		if _, err := NATRewriteRules(bad); err == nil {
			t.Errorf("NATRewriteRules(%q) accepted", bad)
		}
	}
}

// TestFramesSentInBatches checks that a viewer's frames leave through
// sendmmsg batches of several packets (batchConn), not one write per
// packet, and still arrive whole and keyframe first.
func TestFramesSentInBatches(t *testing.T) {
	_, url := startSim(t, camsim.Options{})
	r := newRelay(t, testConfig(), Camera{ID: "cam", URL: url})
	v, _, _ := watch(t, r, "cam", whepview.BrowserH264)
	aus := v.WaitAUs(30, 30*time.Second)
	whepview.AssertKeyframeFirst(t, aus[0].AnnexB)
	var batches, packets uint64
	for _, b := range r.batch {
		batches += b.batches.Load()
		packets += b.packets.Load()
	}
	// The test clip's frames are small (one packet each but the keyframes),
	// so only some batches hold more than one packet.
	if batches == 0 || packets <= batches {
		t.Errorf("%d packets in %d batches: frames are not sent in batches", packets, batches)
	}
	t.Logf("%d packets in %d sendmmsg batches", packets, batches)
}
