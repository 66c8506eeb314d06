package web

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"syscall"

	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/broadcast"
	"github.com/loalang/loalang/broadcast/catalog"
	"github.com/loalang/loalang/broadcast/media"
	"github.com/loalang/loalang/broadcast/playout"
	"github.com/loalang/loalang/broadcast/schedule"
	"github.com/loalang/loalang/camera"
	"github.com/loalang/loalang/device"
	"github.com/loalang/loalang/whip"
)

// Errors of the HTTP layer itself.
var (
	errUnauthenticated = errors.New("authentication required")
	errForbidden       = errors.New("your role may not do this")
	errNotFound        = errors.New("no such resource")
	errConflict        = errors.New("already exists")
)

// busyRetryAfter is the Retry-After, in seconds, of a 503 for a full
// upload or text-to-speech queue.
const busyRetryAfter = 5

// badRequestError is a client error with a reason naming the field.
type badRequestError struct{ msg string }

func (e *badRequestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &badRequestError{fmt.Sprintf(format, args...)}
}

// domainStatus maps the domain packages' errors to statuses.
var domainStatus = []struct {
	target error
	status int
}{
	{media.ErrTooLarge, http.StatusRequestEntityTooLarge},
	{media.ErrUnsupported, http.StatusUnsupportedMediaType},
	{media.ErrEmpty, http.StatusUnprocessableEntity},
	{media.ErrCorrupt, http.StatusUnprocessableEntity},
	{media.ErrTooLong, http.StatusUnprocessableEntity},
	{media.ErrSilent, http.StatusUnprocessableEntity},
	{media.ErrTTSUnavailable, http.StatusServiceUnavailable},
	{media.ErrBusy, http.StatusServiceUnavailable}, // with Retry-After, see writeError
	{media.ErrNoVoice, http.StatusBadRequest},
	{media.ErrUnknownLanguage, http.StatusBadRequest},
	{catalog.ErrInvalid, http.StatusBadRequest}, // the message names the field
	{catalog.ErrNotFound, http.StatusNotFound},
	{catalog.ErrInUse, http.StatusConflict},
	{playout.ErrNotFound, http.StatusNotFound},
	{broadcast.ErrInvalid, http.StatusUnprocessableEntity},
	{broadcast.ErrUnknownZone, http.StatusUnprocessableEntity},
	{broadcast.ErrNotFound, http.StatusNotFound},
	{broadcast.ErrBusy, http.StatusConflict},
	{broadcast.ErrNotActive, http.StatusConflict},
	{broadcast.ErrEnded, http.StatusConflict},
	{broadcast.ErrUnavailable, http.StatusServiceUnavailable},
	// Schedules: every *schedule.FieldError (ErrNeverFires included) is
	// ErrInvalid, and its message names the field.
	{schedule.ErrInvalid, http.StatusUnprocessableEntity},
	{schedule.ErrBadInput, http.StatusBadRequest},
	{schedule.ErrNotFound, http.StatusNotFound},
	{schedule.ErrConflict, http.StatusConflict},
	// Accounts: a *auth.FieldError names the field.
	{auth.ErrInvalid, http.StatusBadRequest},
	{auth.ErrNotFound, http.StatusNotFound},
	{auth.ErrExists, http.StatusConflict},
	// Cameras and WHEP (RFC 9725 §4.2 lets the endpoint answer any 4xx/5xx).
	{camera.ErrBadSDP, http.StatusBadRequest},
	{camera.ErrNotFound, http.StatusNotFound},
	{camera.ErrCodecUnsupported, http.StatusUnprocessableEntity}, // the message names the codec
	{camera.ErrTooManyViewers, http.StatusServiceUnavailable},
	{camera.ErrCameraDown, http.StatusServiceUnavailable},
	{camera.ErrClosed, http.StatusServiceUnavailable},
	{camera.ErrInvalid, http.StatusBadRequest}, // a *camera.FieldError names the field
	{camera.ErrExists, http.StatusConflict},
	// Live speech over WHIP (RFC 9725 §4.2).
	{whip.ErrBadOffer, http.StatusBadRequest},
	{whip.ErrNotFound, http.StatusNotFound},
	{whip.ErrClosed, http.StatusServiceUnavailable},
}

// status maps an error to its HTTP status: the one place where domain
// errors meet HTTP.
func status(err error) int {
	var br *badRequestError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge
	case errors.As(err, &br):
		return http.StatusBadRequest
	case errors.Is(err, errUnauthenticated), errors.Is(err, auth.ErrBadPassword):
		return http.StatusUnauthorized
	case errors.Is(err, errForbidden):
		return http.StatusForbidden
	case errors.Is(err, errNotFound), notFound(err), errors.Is(err, device.ErrUnknown):
		return http.StatusNotFound
	case errors.Is(err, errConflict), errors.Is(err, ErrUplinkOff):
		return http.StatusConflict
	case errors.Is(err, auth.ErrRateLimited):
		return http.StatusTooManyRequests
	case errors.Is(err, auth.ErrWeakPassword), errors.Is(err, auth.ErrBadUsername):
		return http.StatusBadRequest
	case errors.Is(err, device.ErrTimeout):
		return http.StatusGatewayTimeout
	case errors.Is(err, device.ErrRejected):
		return http.StatusBadGateway
	case noSpace(err), errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		// RFC 4918 §11.5: the server is unable to store what the request
		// needs. Nothing was saved; the client may retry once space is free.
		return http.StatusInsufficientStorage
	}
	for _, m := range domainStatus {
		if errors.Is(err, m.target) {
			return m.status
		}
	}
	return http.StatusInternalServerError
}

// writeError answers with {"error": "..."}; internal errors are logged and
// shown only as a generic message.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := status(err)
	msg := err.Error()
	if code == http.StatusInternalServerError {
		msg = "internal error"
		LogFrom(r).Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if code == http.StatusInsufficientStorage {
		// The wrapped error names files in the data dir; say what matters.
		msg = "no space left on the data disk: nothing was saved; free space on the controller and retry"
		LogFrom(r).Error("request failed: disk full", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="loalang"`)
	}
	if code == http.StatusTooManyRequests && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "10")
	}
	if errors.Is(err, media.ErrBusy) {
		// RFC 9110 §10.2.3: the queue drains within seconds.
		w.Header().Set("Retry-After", strconv.Itoa(busyRetryAfter))
	}
	writeJSON(w, code, map[string]string{"error": msg})
}

// WriteError is writeError for feature handlers registered with Handle.
func WriteError(w http.ResponseWriter, r *http.Request, err error) { writeError(w, r, err) }

// WriteJSON is writeJSON for feature handlers registered with Handle.
func WriteJSON(w http.ResponseWriter, status int, v any) { writeJSON(w, status, v) }

// notFound and noSpace recognise the store's conditions by method, so that
// web tells them apart without importing it (docs/architecture.md, rule 4).
func notFound(err error) bool {
	var k interface{ NotFound() bool }
	return errors.As(err, &k) && k.NotFound()
}

func noSpace(err error) bool {
	var k interface{ NoSpace() bool }
	return errors.As(err, &k) && k.NoSpace()
}
