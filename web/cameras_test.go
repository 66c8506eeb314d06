package web

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/loalang/loalang/camera"
)

// TestMergeCameras checks that API records win over the config file: a
// record replaces, a tombstone hides, and new ones follow in ID order.
func TestMergeCameras(t *testing.T) {
	base := []camera.Camera{{ID: "b", Name: "file b", URL: "rtsp://b"}, {ID: "a", Name: "file a", URL: "rtsp://a"}, {ID: "c", URL: "rtsp://c"}}
	recs := []CameraRecord{
		{ID: "z", Name: "new z", URL: "rtsp://z"},
		{ID: "a", Name: "api a", URL: "rtsp://a2", AlwaysOn: true},
		{ID: "c", Deleted: true},
		{ID: "y", Name: "new y", URL: "rtsp://y"},
		{ID: "x", Deleted: true},
	}
	got := MergeCameras(base, recs)
	var ids []string
	for _, c := range got {
		ids = append(ids, c.ID)
	}
	if !slices.Equal(ids, []string{"b", "a", "y", "z"}) {
		t.Fatalf("merged ids %v", ids)
	}
	if got[1].Name != "api a" || got[1].URL != "rtsp://a2" || !got[1].AlwaysOn || got[0].Name != "file b" {
		t.Fatalf("merged %+v", got)
	}
}

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
		fmt.Errorf("%w", &http.MaxBytesError{Limit: 64 << 10}): http.StatusRequestEntityTooLarge,
	} {
		if got := status(err); got != want {
			t.Errorf("status(%v) = %d, want %d", err, got, want)
		}
	}
}

func TestCheckRTSPNeverEchoesTheURL(t *testing.T) {
	for _, raw := range []string{"http://admin:bi-mat@cam/x", "rtsp://", "admin:bi-mat", "rtsp://admin:bi-mat@/x"} {
		err := checkRTSP("url", raw)
		if err == nil {
			t.Errorf("%q accepted", raw)
			continue
		}
		if s := err.Error(); strings.Contains(s, "bi-mat") || strings.Contains(s, "admin") {
			t.Errorf("error %q echoes the URL", s)
		}
	}
	for _, ok := range []string{"rtsp://admin:bi-mat@10.0.0.5:554/ch1", "rtsps://cam.local/live"} {
		if err := checkRTSP("url", ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

// TestCameraRequestSecrets: credentials sent in the URL or in the
// write-only username/password fields land in the record's secret, never in
// its URL; a URL sent back as shown keeps them, one moved to another host
// drops the stored user information, and a placeholder with nothing stored
// is refused without echoing anything.
func TestCameraRequestSecrets(t *testing.T) {
	str := func(s string) *string { return &s }
	rec := CameraRecord{ID: "c"}
	req := cameraRequest{URL: str("rtsp://admin:S3cr3t@10.0.0.5/live?channel=1&pw=S3cr3t")}
	if err := applyCameraRequest(req, &rec); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(rec.URL, "S3cr3t") || rec.Secret.Password != "S3cr3t" || rec.URL != "rtsp://10.0.0.5/live?channel=1&pw=***" {
		t.Fatalf("after create: url %s", rec.URL)
	}
	// Sent back as shown, with a new path: everything kept.
	req = cameraRequest{URL: str("rtsp://***@10.0.0.5/live2?channel=1&pw=***")}
	if err := applyCameraRequest(req, &rec); err != nil {
		t.Fatal(err)
	}
	if dial, _ := rec.Secret.Join(rec.URL); dial != "rtsp://admin:S3cr3t@10.0.0.5/live2?channel=1&pw=S3cr3t" {
		t.Fatalf("round trip dials %s", dial)
	}
	// Without user information, same host: kept. Another host: dropped.
	req = cameraRequest{URL: str("rtsp://10.0.0.5/live3")}
	if err := applyCameraRequest(req, &rec); err != nil || rec.Secret.Username != "admin" {
		t.Fatalf("same host: %v, user kept %v", err, rec.Secret.Username == "admin")
	}
	req = cameraRequest{URL: str("rtsp://10.0.0.6/live3")}
	if err := applyCameraRequest(req, &rec); err != nil || !rec.Secret.IsZero() {
		t.Fatalf("another host: %v, secret kept %v", err, !rec.Secret.IsZero())
	}
	// The write-only fields.
	req = cameraRequest{Username: str("viewer"), Password: str("Mat-Khau-9")}
	if err := applyCameraRequest(req, &rec); err != nil || rec.Secret.Password != "Mat-Khau-9" || strings.Contains(rec.URL, "Mat-Khau") {
		t.Fatalf("fields: %v %+v", err, rec.URL)
	}
	// A placeholder with nothing stored.
	rec = CameraRecord{ID: "d"}
	req = cameraRequest{URL: str("rtsp://10.0.0.5/x?token=***")}
	err := applyCameraRequest(req, &rec)
	if status(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "url: token=***") {
		t.Fatalf("placeholder without a stored value: %v", err)
	}
}
