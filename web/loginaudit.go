package web

import (
	"math"
	"net/http"
	"net/netip"
	"strconv"
)

// clientIP is the address the request came from. loalangd trusts no
// forwarding header: behind a reverse proxy every caller would share the
// proxy's address (docs/security.md).
func clientIP(r *http.Request) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return ap.Addr().Unmap().String()
}

// sourceKey is the key a source is throttled by: its IPv4 address, or the
// /64 of an IPv6 address, since one host commonly holds a whole /64 (RFC
// 7421 §1) and could otherwise pick a fresh address per attempt.
func sourceKey(r *http.Request) string {
	a, err := netip.ParseAddr(clientIP(r))
	if err != nil {
		return "ip:" + r.RemoteAddr
	}
	if a.Is6() {
		p, _ := a.Prefix(64)
		return "ip6:" + p.String()
	}
	return "ip:" + a.String()
}

// retryAfter is the Retry-After value (RFC 9110 §10.2.3) for a throttled
// source: whole seconds until its next attempt is allowed.
func (s *Server) retryAfter(r *http.Request) string {
	return strconv.Itoa(max(1, int(math.Ceil(s.sessions.RetryAfter(sourceKey(r)).Seconds()))))
}
