package broadcast

import "errors"

// Sentinel errors returned (wrapped, with the detail a human needs) by the
// engine. Compare them with errors.Is. The HTTP layer maps ErrUnknownZone and
// ErrInvalid to 422, ErrNotFound to 404, ErrBusy and ErrNotActive to 409 and
// ErrUnavailable to 503.
var (
	// ErrUnknownZone means a request named a zone the directory does not know;
	// the wrapping message names the zone.
	ErrUnknownZone = errors.New("broadcast: unknown zone")
	// ErrInvalid means a request field is missing or out of range; the
	// wrapping message names the field.
	ErrInvalid = errors.New("broadcast: invalid request")
	// ErrNotFound means no broadcast has the given id.
	ErrNotFound = errors.New("broadcast: not found")
	// ErrNotActive means the broadcast has already ended, so it cannot be
	// stopped again.
	ErrNotActive = errors.New("broadcast: not active")
	// ErrBusy means live speech cannot start because a broadcast of equal or
	// higher priority holds one of its zones; live speech is never queued.
	ErrBusy = errors.New("broadcast: zone busy")
	// ErrUnavailable means the source needed by a request (stored media or
	// text-to-speech) is not configured or not working on this machine.
	ErrUnavailable = errors.New("broadcast: source unavailable")
	// ErrEnded means a live broadcast has ended (closed, stopped, pre-empted
	// for good or past its maximum duration) and takes no more packets.
	ErrEnded = errors.New("broadcast: live broadcast ended")
	// ErrClosed means the engine has been closed.
	ErrClosed = errors.New("broadcast: engine closed")
)
