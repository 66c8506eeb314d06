package web

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/loalang/loalang/camera"
)

// TestCameraErrorStatus pins the WHEP error statuses (RFC 9725 §4.2 leaves
// the choice to the endpoint).
func TestCameraErrorStatus(t *testing.T) {
	for err, want := range map[error]int{
		fmt.Errorf("%w: no video", camera.ErrBadSDP):                     http.StatusBadRequest,
		fmt.Errorf("camera x: %w", camera.ErrNotFound):                   http.StatusNotFound,
		fmt.Errorf("camera sends H.265: %w", camera.ErrCodecUnsupported): http.StatusUnprocessableEntity,
		fmt.Errorf("10 viewers: %w", camera.ErrTooManyViewers):           http.StatusServiceUnavailable,
		fmt.Errorf("dial: %w", camera.ErrCameraDown):                     http.StatusServiceUnavailable,
		camera.ErrClosed: http.StatusServiceUnavailable,
		&camera.FieldError{Field: "url", Reason: "required"}:   http.StatusBadRequest,
		fmt.Errorf("camera x: %w", camera.ErrExists):           http.StatusConflict,
		fmt.Errorf("%w", &http.MaxBytesError{Limit: 64 << 10}): http.StatusRequestEntityTooLarge,
	} {
		if got := status(err); got != want {
			t.Errorf("status(%v) = %d, want %d", err, got, want)
		}
	}
}
