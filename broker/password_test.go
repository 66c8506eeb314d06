package broker

import (
	"strings"
	"testing"
)

// mosquittoPasswdHash was written by `mosquitto_passwd -c -b pw alice s3cret`
// (Mosquitto 2.0.11), pinning the format to the real tool's output.
const mosquittoPasswdHash = "$7$101$L5TvBmnhaFcv7V0q$gyhV0ViJd+I4U8J1b4p0PRCrxbyxEYqTxJXbI2maO2uKKE3dLmzNzIele5tpkI7uUmffosX4FOdEGsHjJYgLqw=="

func TestPasswordRoundTrip(t *testing.T) {
	h, err := HashPassword("tok-3q2+7w==")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(h, "$")
	// "", "7", iterations, salt, hash
	if len(parts) != 5 || parts[1] != "7" || parts[2] != "101" || len(parts[3]) != 16 || len(parts[4]) != 88 {
		t.Fatalf("hash %q is not in mosquitto's $7$101$<16 b64>$<88 b64> shape", h)
	}
	if !VerifyPassword(h, "tok-3q2+7w==") {
		t.Fatal("hash does not verify its own secret")
	}
	if VerifyPassword(h, "tok-3q2+7w=") || VerifyPassword(h, "") {
		t.Fatal("hash verifies a wrong secret")
	}
	h2, err := HashPassword("tok-3q2+7w==")
	if err != nil {
		t.Fatal(err)
	}
	if h2 == h {
		t.Fatal("two hashes of one secret are equal: salt is not random")
	}
}

func TestVerifyMosquittoPasswdHash(t *testing.T) {
	if !VerifyPassword(mosquittoPasswdHash, "s3cret") {
		t.Fatal("hash written by mosquitto_passwd does not verify")
	}
	if VerifyPassword(mosquittoPasswdHash, "s3creT") {
		t.Fatal("mosquitto_passwd hash verifies a wrong secret")
	}
}

func TestVerifyMalformedHash(t *testing.T) {
	for _, h := range []string{
		"",
		"s3cret",
		"$6$abc$def",
		"$7$0$L5TvBmnhaFcv7V0q$" + strings.Repeat("A", 88),
		"$7$999999999$L5TvBmnhaFcv7V0q$" + strings.Repeat("A", 88),
		"$7$101$!!!!$" + strings.Repeat("A", 88),
		"$7$101$L5TvBmnhaFcv7V0q$QUJD",
		"$7$101$L5TvBmnhaFcv7V0q",
	} {
		if VerifyPassword(h, "s3cret") {
			t.Errorf("malformed hash %q verified", h)
		}
	}
}

func FuzzVerifyPassword(f *testing.F) {
	f.Add(mosquittoPasswdHash, "s3cret")
	f.Add("$7$1$AA==$", "")
	f.Fuzz(func(t *testing.T, hash, secret string) {
		if VerifyPassword(hash, secret) {
			if _, _, _, err := parseHash(hash); err != nil {
				t.Fatalf("unparseable hash %q verified", hash)
			}
		}
	})
}
