package camera

import (
	"context"

	"github.com/pion/webrtc/v4"
)

// relayICEKey carries per-session TURN servers in an Offer's context.
type relayICEKey struct{}

// WithRelayICE returns a context under which Offer reaches its viewer only
// through the TURN servers given, for that one session: the session uses
// them instead of the relay's configured STUN/TURN servers and gathers
// relay candidates only (RFC 8445 §5.1.1.2; W3C WebRTC's "relay" ICE
// transport policy).
//
// The commune's camera path (docs/commune-cameras.md) uses it. The viewer
// is on another network and the village behind carrier NAT, so the
// village's host candidates could never be reached: they would only leak
// its LAN addresses and make the browser spend its first paced checks
// (RFC 8445 §6.1.4.2) on pairs that cannot work. The commune mints
// short-lived TURN credentials per request (RFC 8489 §9.2 long-term
// credentials under coturn's REST-API scheme), so they cannot be part of
// the relay's static configuration. The credentials are secrets and never
// logged.
func WithRelayICE(ctx context.Context, servers []webrtc.ICEServer) context.Context {
	return context.WithValue(ctx, relayICEKey{}, servers)
}

// iceConfigFor returns the peer connection's ICE configuration: the
// servers set by WithRelayICE with the relay-only policy, or the relay's
// own servers and every candidate type.
func (r *Relay) iceConfigFor(ctx context.Context) webrtc.Configuration {
	if s, ok := ctx.Value(relayICEKey{}).([]webrtc.ICEServer); ok {
		return webrtc.Configuration{ICEServers: s, ICETransportPolicy: webrtc.ICETransportPolicyRelay}
	}
	return webrtc.Configuration{ICEServers: r.iceServers}
}
