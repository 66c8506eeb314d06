package web

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/loalang/loalang/broadcast/media"
)

// TestBusyIsRetryable: a full upload or text-to-speech queue answers 503
// with Retry-After (RFC 9110 §10.2.3), so the phone app can try again.
func TestBusyIsRetryable(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("upload x: 4 imports already in flight: %w", media.ErrBusy),
		fmt.Errorf("speak text: %w", fmt.Errorf("tts: %w", media.ErrBusy)),
	} {
		w := httptest.NewRecorder()
		writeError(w, httptest.NewRequest("POST", "/api/v1/media", nil), err)
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
			t.Errorf("%v: %d Retry-After %q, want 503 with Retry-After", err, w.Code, w.Header().Get("Retry-After"))
		}
	}
}
