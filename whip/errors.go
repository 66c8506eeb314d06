package whip

import "errors"

// Errors of the WHIP ingest; web maps them to statuses (web/errors.go).
var (
	// ErrBadOffer means the SDP offer is malformed or offers no sending
	// Opus audio (RFC 9725 §4.2; 400).
	ErrBadOffer = errors.New("sdp")
	// ErrNotFound means no such session, or not one the caller may end.
	ErrNotFound = errors.New("no such live session")
	// ErrClosed means the service is shutting down.
	ErrClosed = errors.New("live speech service closed")
	// errFormat ends a session whose browser sends anything but 20 ms mono
	// Opus packets.
	errFormat = errors.New("live audio is not 20 ms mono Opus")
)
