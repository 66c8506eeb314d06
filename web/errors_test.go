package web

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/loalang/loalang/store"
)

// TestDiskFullIs507 is part of finding 5: a write that failed for lack of
// space answered 500 "internal error" with the reason only in the log.
// Now it is 507 Insufficient Storage (RFC 4918 §11.5) saying what
// happened, without the data dir's paths.
func TestDiskFullIs507(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("put users/x: %w", fmt.Errorf("%w: %w", store.ErrNoSpace, &fs.PathError{Op: "write", Path: "/var/lib/loalang/loalang.db", Err: syscall.ENOSPC})),
		fmt.Errorf("import: %w", &os.PathError{Op: "write", Path: "/var/lib/loalang/media/.tmp-1.opus", Err: syscall.ENOSPC}),
	} {
		w := httptest.NewRecorder()
		writeError(w, httptest.NewRequest("POST", "/api/v1/media", nil), err)
		var body map[string]string
		json.Unmarshal(w.Body.Bytes(), &body)
		if w.Code != http.StatusInsufficientStorage || !strings.Contains(body["error"], "no space left") || strings.Contains(body["error"], "/var/lib") {
			t.Errorf("%v: %d %q", err, w.Code, body["error"])
		}
	}
}
