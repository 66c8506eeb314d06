package web

import (
	"crypto/tls"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

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
