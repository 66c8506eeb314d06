package camera

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
// address (the relay's ICE runs on UDP4, DESIGN.md). The unspecified address
// is refused because it is what an empty list means, and it makes the answer
// carry a host candidate for every interface (RFC 8445 §5.1.1.1), which the
// viewer must all check before ICE settles.
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

// listenIPs is the configured listen list, ListenIP counting as a list of one.
func (c Config) listenIPs() []string {
	if len(c.ListenIPs) > 0 {
		return c.ListenIPs
	}
	if c.ListenIP != "" {
		return []string{c.ListenIP}
	}
	return nil
}

// openUDPMux opens the ICE UDP socket(s). With no listen address it is one
// socket on every address (pion then answers a host candidate per
// interface); otherwise one socket per configured address, all on the same
// port, joined in a multi-mux so that the answer carries exactly those
// addresses as host candidates.
func (r *Relay) openUDPMux() error {
	cfg := r.cfg
	ips, err := ParseListenIPs(cfg.listenIPs())
	if err != nil {
		return fmt.Errorf("ICE listen addresses: %w", err)
	}
	if len(ips) == 0 {
		addr := net.JoinHostPort("", strconv.Itoa(cfg.UDPPort))
		conn, err := net.ListenPacket("udp4", addr)
		if err != nil {
			return fmt.Errorf("listen ICE UDP %s: %w", addr, err)
		}
		bc := newBatchConn(conn.(*net.UDPConn))
		r.udpConns, r.batch = append(r.udpConns, bc), append(r.batch, bc)
		r.udpMux = webrtc.NewICEUDPMux(nil, bc)
		return nil
	}
	port := cfg.UDPPort
	var muxes []ice.UDPMux
	for _, ip := range ips {
		addr := net.JoinHostPort(ip.String(), strconv.Itoa(port))
		conn, err := net.ListenPacket("udp4", addr)
		if err != nil {
			for _, m := range muxes {
				_ = m.Close()
			}
			r.udpConns = nil
			return fmt.Errorf("listen ICE UDP %s: %w", addr, err)
		}
		// Port 0: the first socket's ephemeral port is used for the others,
		// so the relay still has one port number (firewall rules).
		port = conn.LocalAddr().(*net.UDPAddr).Port
		bc := newBatchConn(conn.(*net.UDPConn))
		r.udpConns, r.batch = append(r.udpConns, bc), append(r.batch, bc)
		muxes = append(muxes, ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: bc}))
	}
	r.udpMux = ice.NewMultiUDPMuxDefault(muxes...)
	return nil
}

// cork queues the ICE sockets' writes to addr until uncork (see batchConn).
func (r *Relay) cork(addr netip.AddrPort) {
	for _, b := range r.batch {
		b.cork(addr)
	}
}

func (r *Relay) uncork(addr netip.AddrPort) {
	for _, b := range r.batch {
		b.uncork(addr)
	}
}

// tuneICE applies the settings shared by camera viewing and live speech.
func tuneICE(se *webrtc.SettingEngine) {
	// A host candidate pair is accepted as soon as it succeeds (RFC 8445
	// §8.1.1 lets the agent choose when to nominate): with only configured
	// host candidates there is nothing better to wait for.
	se.SetHostAcceptanceMinWait(0)
	// AES-GCM first (RFC 7714): AES-NI and carry-less multiply make it much
	// cheaper per packet than AES-CM with HMAC-SHA1 (RFC 3711), which stays
	// for peers that offer nothing else. AES-128 before AES-256: the
	// difference in strength does not matter for a village camera and it
	// saves four AES rounds per block.
	se.SetSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AEAD_AES_256_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80)
}

// ICESettingEngine returns a setting engine for another WebRTC service of
// the daemon (live speech over WHIP) with the relay's ICE configuration: the
// same UDP mux (so the same listen addresses and port), loopback and NAT 1:1
// settings, timers and SRTP profiles. The caller may change the copy (its
// own ICE timeouts) without affecting the relay.
func (r *Relay) ICESettingEngine() webrtc.SettingEngine { return r.se }
