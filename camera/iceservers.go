package camera

import (
	"context"

	"github.com/pion/webrtc/v4"
)

// iceServersKey carries per-session ICE servers in an Offer's context.
type iceServersKey struct{}

// WithICEServers returns a context under which Offer uses servers instead of
// the relay's configured STUN/TURN servers for that one session. The
// commune's camera path (docs/commune-cameras.md) uses it: the commune mints
// short-lived TURN credentials per request (RFC 8489 §9.2 long-term
// credentials under coturn's REST-API scheme), so they cannot be part of the
// relay's static configuration. The credentials are secrets and never logged.
func WithICEServers(ctx context.Context, servers []webrtc.ICEServer) context.Context {
	return context.WithValue(ctx, iceServersKey{}, servers)
}

// iceServersFor returns the servers set by WithICEServers, or the relay's own.
func (r *Relay) iceServersFor(ctx context.Context) []webrtc.ICEServer {
	if s, ok := ctx.Value(iceServersKey{}).([]webrtc.ICEServer); ok {
		return s
	}
	return r.iceServers
}
