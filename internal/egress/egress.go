// Package egress decides which addresses the daemon may connect to on a
// user's behalf (the upstream of a scheduled relay). A URL typed into the
// API must not make the daemon reach itself or its neighbours: its own API
// on loopback, a cloud metadata service on link-local, or the village LAN.
// The check runs on the resolved address at connect time (net.Dialer
// Control), so it holds after redirects and against DNS names that resolve
// to such addresses. See docs/security.md, "Relay URLs".
package egress

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
)

// ErrForbidden means the address is loopback, link-local, unspecified,
// multicast, broadcast or private and not in the allow-list.
var ErrForbidden = errors.New("address not allowed")

// special are ranges refused although netip has no predicate for them.
var special = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),          // "this network" (RFC 1122 §3.2.1.3)
	netip.MustParsePrefix("100.64.0.0/10"),      // shared address space, carrier NAT (RFC 6598)
	netip.MustParsePrefix("192.0.0.0/24"),       // IETF protocol assignments (RFC 6890)
	netip.MustParsePrefix("198.18.0.0/15"),      // benchmarking (RFC 2544)
	netip.MustParsePrefix("240.0.0.0/4"),        // reserved, and 255.255.255.255
	netip.MustParsePrefix("64:ff9b::/96"),       // NAT64 (RFC 6052): may embed 127.0.0.1
	netip.MustParsePrefix("64:ff9b:1::/48"),     // local-use NAT64 (RFC 8215)
	netip.MustParsePrefix("2002::/16"),          // 6to4 (RFC 3056): may embed a private IPv4
	netip.MustParsePrefix("::ffff:0:0:0/96"),    // IPv4-translated (RFC 2765)
	netip.MustParsePrefix("100::/64"),           // discard-only (RFC 6666)
	netip.MustParsePrefix("2001:db8::/32"),      // documentation (RFC 3849)
	netip.MustParsePrefix("fec0::/10"),          // deprecated site-local (RFC 3879)
	netip.MustParsePrefix("2001::/32"),          // Teredo (RFC 4380): may embed any IPv4
	netip.MustParsePrefix("::/128"),             // unspecified
	netip.MustParsePrefix("169.254.0.0/16"),     // link-local, cloud metadata
	netip.MustParsePrefix("fe80::/10"),          // link-local
	netip.MustParsePrefix("127.0.0.0/8"),        // loopback
	netip.MustParsePrefix("::1/128"),            // loopback
	netip.MustParsePrefix("255.255.255.255/32"), // limited broadcast
}

// Policy is the set of addresses outbound connections may reach: any
// public unicast address, plus the prefixes in Allow (e.g. the village LAN
// "192.168.1.0/24" where a local radio encoder lives, or "127.0.0.1/32" in
// tests). The zero Policy allows public addresses only.
type Policy struct {
	Allow []netip.Prefix
}

// ParsePolicy builds a Policy from CIDR strings (a bare address means
// that one address). key names the config key for errors.
func ParsePolicy(key string, cidrs []string) (Policy, error) {
	var p Policy
	for i, c := range cidrs {
		var pfx netip.Prefix
		var err error
		if strings.Contains(c, "/") {
			pfx, err = netip.ParsePrefix(c)
		} else {
			var a netip.Addr
			if a, err = netip.ParseAddr(c); err == nil {
				pfx = netip.PrefixFrom(a, a.BitLen())
			}
		}
		if err != nil {
			return Policy{}, fmt.Errorf("%s[%d]: %q is not a CIDR such as 192.168.1.0/24", key, i, c)
		}
		p.Allow = append(p.Allow, pfx.Masked())
	}
	return p, nil
}

// Check returns nil when addr may be reached, or an error wrapping
// ErrForbidden that says why not.
func (p Policy) Check(addr netip.Addr) error {
	addr = addr.WithZone("")
	plain := addr.Unmap() // ::ffff:127.0.0.1 is 127.0.0.1
	for _, a := range p.Allow {
		if a.Contains(addr) || a.Contains(plain) {
			return nil
		}
	}
	var why string
	switch {
	case !plain.IsValid():
		why = "invalid"
	case plain.IsLoopback():
		why = "loopback"
	case plain.IsLinkLocalUnicast(), plain.IsLinkLocalMulticast():
		why = "link-local"
	case plain.IsUnspecified():
		why = "unspecified"
	case plain.IsMulticast(), plain.IsInterfaceLocalMulticast():
		why = "multicast"
	case plain.IsPrivate():
		why = "private"
	default:
		for _, s := range special {
			if s.Contains(plain) {
				why = "special-purpose"
				break
			}
		}
	}
	if why == "" {
		return nil
	}
	return fmt.Errorf("%s address %s: %w", why, plain, ErrForbidden)
}

// Control is a net.Dialer Control function: it runs after name resolution,
// on the address actually connected to, and refuses it unless allowed.
func (p Policy) Control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("dial %s: %w", network, ErrForbidden)
	}
	return p.Check(ap.Addr())
}

// CheckURL checks what can be known of a URL without resolving it: a host
// that is a literal IP address, or "localhost" (RFC 6761 §6.3). Names are
// checked at connect time by Control, since the village box may be offline
// when the schedule is created. The error never holds the URL (it may carry
// a token).
func (p Policy) CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a URL")
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		if p.Check(netip.MustParseAddr("127.0.0.1")) != nil {
			return fmt.Errorf("host %s is loopback: %w", host, ErrForbidden)
		}
		return nil
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return p.Check(a)
	}
	// Legacy IPv4 forms such as 2130706433 or 0x7f.1 (inet_aton) are
	// refused outright: Go's resolver would not dial them, but a proxy or
	// another client might, and no radio station is named that way.
	if host != "" && host[0] >= '0' && host[0] <= '9' && strings.Trim(host, "0123456789abcdefx.") == "" {
		return fmt.Errorf("host %q is a numeric address in a legacy form: %w", host, ErrForbidden)
	}
	return nil
}

// Redact returns raw without its user information and with every query
// value replaced by "***", for logs and the audit trail: relay URLs carry
// tokens in their query (e.g. "?token=…", "?key=…") as often as in user
// information.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	u.User = nil
	if u.RawQuery != "" {
		parts := strings.Split(u.RawQuery, "&")
		for i, kv := range parts {
			if k, _, ok := strings.Cut(kv, "="); ok {
				parts[i] = k + "=***"
			} else {
				parts[i] = "***" // a bare token
			}
		}
		u.RawQuery = strings.Join(parts, "&")
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}
