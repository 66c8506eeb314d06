package camera

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/pion/webrtc/v4"

	"github.com/loalang/loalang/rtc"
)

// ParseListenIPs checks ICE listen addresses (rtc.ParseListenIPs).
func ParseListenIPs(ips []string) ([]netip.Addr, error) { return rtc.ParseListenIPs(ips) }

// NATRewriteRules turns NAT 1:1 entries into pion address rewrite rules
// (rtc.NATRewriteRules).
func NATRewriteRules(entries []string) ([]webrtc.ICEAddressRewriteRule, error) {
	return rtc.NATRewriteRules(entries)
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

// openUDPMux opens the ICE UDP socket(s) with rtc.OpenUDPMux, each
// wrapped in a batchConn so viewer writes can be corked.
func (r *Relay) openUDPMux() error {
	ips, err := ParseListenIPs(r.cfg.listenIPs())
	if err != nil {
		return fmt.Errorf("ICE listen addresses: %w", err)
	}
	mux, err := rtc.OpenUDPMux(r.cfg.UDPPort, ips, func(c *net.UDPConn) net.PacketConn {
		bc := newBatchConn(c)
		r.udpConns, r.batch = append(r.udpConns, bc), append(r.batch, bc)
		return bc
	})
	if err != nil {
		r.udpConns, r.batch = nil, nil // closed by rtc.OpenUDPMux
		return err
	}
	r.udpMux = mux
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

// tuneICE applies the settings shared by camera viewing and live speech
// (rtc.Tune).
func tuneICE(se *webrtc.SettingEngine) { rtc.Tune(se) }

// ICESettingEngine returns a setting engine for another WebRTC service of
// the daemon (live speech over WHIP) with the relay's ICE configuration: the
// same UDP mux (so the same listen addresses and port), loopback and NAT 1:1
// settings, timers and SRTP profiles. The caller may change the copy (its
// own ICE timeouts) without affecting the relay.
func (r *Relay) ICESettingEngine() webrtc.SettingEngine { return r.se }

// ICEServers returns the relay's STUN and TURN servers (rtc.ICEServers of
// its configuration), for another WebRTC service of the daemon: live speech
// then offers the same servers without rebuilding them. The TURN credential
// is a secret: callers must not log the result.
func (r *Relay) ICEServers() []webrtc.ICEServer { return slices.Clone(r.iceServers) }
