package whep

import (
	"testing"
	"time"
)

// TestTURNCredentials pins coturn's REST-API scheme: username
// "<expiry unix>:<user>", password base64(HMAC-SHA1(secret, username)); the
// vector was computed independently (Python's hmac). TestNATCameraPath
// proves coturn accepts such credentials.
func TestTURNCredentials(t *testing.T) {
	now := time.Unix(1796240000, 0).Add(-4 * time.Hour)
	u, p := TURNCredentials("north-wind-secret-0123", "police:cong-an-1", 4*time.Hour, now)
	if u != "1796240000:police:cong-an-1" || p != "VtDROYCxNzJ9PcR0SphaoXX+sJw=" {
		t.Fatalf("got %q %q", u, p)
	}
}
