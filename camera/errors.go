package camera

import "errors"

// Sentinel errors returned by the relay. Callers compare with errors.Is; the
// web layer maps them to HTTP statuses (RFC 9725 §4.2 lets a WHEP endpoint
// answer errors with any 4xx/5xx).
var (
	// ErrNotFound means the camera or session ID is unknown.
	ErrNotFound = errors.New("not found")
	// ErrBadSDP means the WHEP offer could not be parsed or lacks what WebRTC
	// needs (a receiving video m-section, ICE credentials, a DTLS fingerprint).
	ErrBadSDP = errors.New("bad SDP offer")
	// ErrCodecUnsupported means the camera's codec and the codecs offered by
	// the browser have nothing in common; the wrapping message names both.
	ErrCodecUnsupported = errors.New("codec unsupported")
	// ErrTooManyViewers means a per-camera or global viewer limit is reached.
	ErrTooManyViewers = errors.New("too many viewers")
	// ErrCameraDown means the camera could not be reached or described within
	// the handshake timeout; the wrapping message carries the reason.
	ErrCameraDown = errors.New("camera down")
	// ErrClosed means the relay has been closed.
	ErrClosed = errors.New("relay closed")
)
