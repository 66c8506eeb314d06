// Package rtc is the ICE and UDP-mux setup shared by the daemon's WebRTC
// services, the camera relay (WHEP, package camera) and live speech (WHIP,
// package whip): listen addresses, NAT 1:1 rewriting, the UDP mux that
// puts every session on one port, ICE servers and the SRTP and ICE tuning.
// One copy, so WHEP and WHIP answers carry the same candidates. It wraps
// pion and has no HTTP.
package rtc

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/dtls/v3"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

// ParseListenIPs checks ICE listen addresses: each must be a literal IPv4
// address (ICE runs on UDP4, DESIGN.md). The unspecified address is refused
// because it is what an empty list means, and it makes the answer carry a
// host candidate for every interface (RFC 8445 §5.1.1.1), which the peer
// must all check before ICE settles.
func ParseListenIPs(ips []string) ([]netip.Addr, error) {
	out := make([]netip.Addr, 0, len(ips))
	seen := map[netip.Addr]bool{}
	for i, s := range ips {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		switch {
		case err != nil:
			return nil, fmt.Errorf("[%d] %q is not an IP address", i, s)
		case !a.Is4():
			return nil, fmt.Errorf("[%d] %q is not an IPv4 address (ICE runs on UDP4 only)", i, s)
		case a.IsUnspecified():
			return nil, fmt.Errorf("[%d] %q is the unspecified address: leave the list empty to listen on every address", i, s)
		case seen[a]:
			return nil, fmt.Errorf("[%d] %q is listed twice", i, s)
		}
		seen[a] = true
		out = append(out, a)
	}
	return out, nil
}

// NATRewriteRules turns NAT 1:1 entries into pion address rewrite rules
// that replace host candidates (RFC 8445 §5.1.1.2 leaves the choice of
// advertised addresses to the agent). An entry is either "external", which
// replaces every host candidate's address, or "external/local", which
// replaces only the candidate of that local address.
func NATRewriteRules(entries []string) ([]webrtc.ICEAddressRewriteRule, error) {
	var all []string
	var rules []webrtc.ICEAddressRewriteRule
	for i, e := range entries {
		ext, local, paired := strings.Cut(strings.TrimSpace(e), "/")
		ea, err := netip.ParseAddr(ext)
		if err != nil || !ea.Is4() {
			return nil, fmt.Errorf("[%d] %q: %q is not an IPv4 address", i, e, ext)
		}
		if !paired {
			all = append(all, ea.String())
			continue
		}
		la, err := netip.ParseAddr(local)
		if err != nil || !la.Is4() {
			return nil, fmt.Errorf("[%d] %q: local %q is not an IPv4 address", i, e, local)
		}
		rules = append(rules, webrtc.ICEAddressRewriteRule{
			External: []string{ea.String()}, Local: la.String(),
			AsCandidateType: webrtc.ICECandidateTypeHost, Mode: webrtc.ICEAddressRewriteReplace,
		})
	}
	if len(all) > 0 && len(rules) > 0 {
		return nil, errors.New("mixes \"external\" and \"external/local\" entries: use one form")
	}
	if len(all) > 0 {
		rules = append(rules, webrtc.ICEAddressRewriteRule{
			External: all, AsCandidateType: webrtc.ICECandidateTypeHost, Mode: webrtc.ICEAddressRewriteReplace,
		})
	}
	return rules, nil
}

// SetNAT1To1 applies NAT 1:1 entries (see NATRewriteRules) to se; none
// leaves se unchanged.
func SetNAT1To1(se *webrtc.SettingEngine, entries []string) error {
	if len(entries) == 0 {
		return nil
	}
	rules, err := NATRewriteRules(entries)
	if err != nil {
		return fmt.Errorf("NAT 1:1 IPs: %w", err)
	}
	if err := se.SetICEAddressRewriteRules(rules...); err != nil {
		return fmt.Errorf("set NAT 1:1 IPs: %w", err)
	}
	return nil
}

// ICEServers returns the STUN (RFC 7064) and TURN (RFC 7065) servers as
// pion wants them: one entry for the STUN URLs, one for the TURN URLs with
// their credential. None configured is none returned: the village may be
// offline, and public STUN would leak addresses.
func ICEServers(stun, turn []string, turnUser, turnCredential string) []webrtc.ICEServer {
	var out []webrtc.ICEServer
	if len(stun) > 0 {
		out = append(out, webrtc.ICEServer{URLs: stun})
	}
	if len(turn) > 0 {
		out = append(out, webrtc.ICEServer{URLs: turn, Username: turnUser, Credential: turnCredential})
	}
	return out
}

// Tune applies the settings every service shares: host candidate pairs
// accepted at once, AES-GCM SRTP first, and no mDNS candidates.
func Tune(se *webrtc.SettingEngine) {
	// A host candidate pair is accepted as soon as it succeeds (RFC 8445
	// §8.1.1 lets the agent choose when to nominate): with only configured
	// host candidates there is nothing better to wait for.
	se.SetHostAcceptanceMinWait(0)
	// AES-GCM first (RFC 7714): AES-NI and carry-less multiply make it much
	// cheaper per packet than AES-CM with HMAC-SHA1 (RFC 3711), which stays
	// for peers that offer nothing else. AES-128 before AES-256: the
	// difference in strength does not matter here and it saves four AES
	// rounds per block.
	se.SetSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AEAD_AES_256_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80)
	// mDNS candidates are useless to a server and cost a multicast socket.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
}

// OpenUDPMux opens the ICE UDP socket(s) on port (0: an ephemeral one).
// With no listen address it is one socket on every address (pion then
// answers a host candidate per interface); otherwise one socket per
// address, all on the same port, joined in a multi-mux so that answers carry
// exactly those addresses as host candidates. wrap, when set, wraps each
// socket (the camera relay batches its writes); closing the mux closes the
// sockets. On error nothing stays open.
func OpenUDPMux(port int, ips []netip.Addr, wrap func(*net.UDPConn) net.PacketConn) (ice.UDPMux, error) {
	if wrap == nil {
		wrap = func(c *net.UDPConn) net.PacketConn { return c }
	}
	if len(ips) == 0 {
		addr := net.JoinHostPort("", strconv.Itoa(port))
		conn, err := net.ListenPacket("udp4", addr)
		if err != nil {
			return nil, fmt.Errorf("listen ICE UDP %s: %w", addr, err)
		}
		return webrtc.NewICEUDPMux(nil, wrap(conn.(*net.UDPConn))), nil
	}
	var muxes []ice.UDPMux
	for _, ip := range ips {
		addr := net.JoinHostPort(ip.String(), strconv.Itoa(port))
		conn, err := net.ListenPacket("udp4", addr)
		if err != nil {
			for _, m := range muxes {
				_ = m.Close()
			}
			return nil, fmt.Errorf("listen ICE UDP %s: %w", addr, err)
		}
		// Port 0: the first socket's ephemeral port is used for the others,
		// so the service still has one port number (firewall rules).
		port = conn.LocalAddr().(*net.UDPAddr).Port
		muxes = append(muxes, ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: wrap(conn.(*net.UDPConn))}))
	}
	return ice.NewMultiUDPMuxDefault(muxes...), nil
}
