package uplink

import "errors"

// Reasons a command is refused; each is reported upward by its Code.
var (
	ErrMalformed    = errors.New("malformed command")
	ErrBadSignature = errors.New("bad signature")
	ErrExpired      = errors.New("expired")
	ErrNotForUs     = errors.New("not for this village")
	ErrReplay       = errors.New("replayed nonce")
	ErrMedia        = errors.New("media fetch failed")
	ErrPlay         = errors.New("broadcast refused")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("uplink closed")
)

// Code is the machine-readable refusal reason sent upward.
func Code(err error) string {
	for _, c := range []struct {
		err  error
		code string
	}{{ErrBadSignature, "bad_signature"}, {ErrExpired, "expired"}, {ErrNotForUs, "not_for_us"}, {ErrReplay, "replay"},
		{ErrMedia, "media"}, {ErrPlay, "play"}, {ErrMalformed, "malformed"}} {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return "error"
}
