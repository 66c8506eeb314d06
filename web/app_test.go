package web

import (
	"crypto/tls"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestOpusDuration(t *testing.T) {
	for _, c := range []struct {
		pkt    []byte
		want   time.Duration
		stereo bool
	}{
		{[]byte{0xfc, 1}, 20 * time.Millisecond, true},       // config 31 CELT 20 ms, stereo, code 0
		{[]byte{0xf8, 1}, 20 * time.Millisecond, false},      // config 31 CELT 20 ms, mono
		{[]byte{0x08}, 20 * time.Millisecond, false},         // config 1 SILK 20 ms
		{[]byte{0x01 << 3, 0}, 20 * time.Millisecond, false}, // same, extra byte
		{[]byte{0x00}, 10 * time.Millisecond, false},         // config 0 SILK 10 ms
		{[]byte{0x18}, 60 * time.Millisecond, false},         // config 3 SILK 60 ms
		{[]byte{0xf9}, 40 * time.Millisecond, false},         // CELT 20 ms, code 1: two frames
		{[]byte{0xf3, 0x02}, 20 * time.Millisecond, false},   // config 30 CELT 10 ms, code 3, 2 frames
		{[]byte{0x78}, 20 * time.Millisecond, false},         // config 15 hybrid 20 ms
	} {
		d, stereo, err := opusDuration(c.pkt)
		if err != nil || d != c.want || stereo != c.stereo {
			t.Errorf("TOC %#x: %v stereo %v %v, want %v stereo %v", c.pkt[0], d, stereo, err, c.want, c.stereo)
		}
	}
	if _, _, err := opusDuration([]byte{0xfb}); err == nil {
		t.Error("code 3 without a count byte accepted")
	}
}

func TestSameOrigin(t *testing.T) {
	for _, c := range []struct {
		site, origin string
		tls          bool
		ok           bool
	}{
		{"same-origin", "null", false, true}, // no-referrer form posts send Origin: null
		{"same-site", "http://example.test:8080", false, false},
		{"cross-site", "", false, false},
		{"", "http://example.test:8080", false, true},
		{"", "http://example.test:9999", false, false},
		{"", "http://example.test:8080", true, false}, // scheme differs
		{"", "null", false, false},
		{"", "", false, true},
	} {
		r := httptest.NewRequest("POST", "http://example.test:8080/api/v1/broadcasts/stop-all", nil)
		if c.site != "" {
			r.Header.Set("Sec-Fetch-Site", c.site)
		}
		if c.origin != "" {
			r.Header.Set("Origin", c.origin)
		}
		if c.tls {
			r.TLS = &tls.ConnectionState{}
		}
		if got := sameOrigin(r); got != c.ok {
			t.Errorf("Sec-Fetch-Site %q Origin %q tls %v: %v, want %v", c.site, c.origin, c.tls, got, c.ok)
		}
	}
	for in, want := range map[string]string{"/app/cameras": "/app/cameras", "//evil.test/": "/app/", "/app//evil.test": "/app/", "https://evil.test/app/": "/app/"} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSelfSignedCertificateKept(t *testing.T) {
	dir := t.TempDir()
	_, first, err := LoadCertificate(dir, "", "")
	if err != nil || !first.Generated || !first.SelfSigned {
		t.Fatalf("first start: %+v %v", first, err)
	}
	_, again, err := LoadCertificate(dir, "", "")
	if err != nil || again.Generated || again.Fingerprint != first.Fingerprint {
		t.Fatalf("second start regenerated: %+v %v", again, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, SelfSignedKey)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi.Mode(), err)
	}
}
