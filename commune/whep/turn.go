package whep

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"strconv"
	"time"
)

// TURNCredentials mints a time-limited TURN credential under coturn's
// REST-API shared-secret scheme (coturn's use-auth-secret and
// static-auth-secret; draft-uberti-behave-turn-rest-00 §2.2): the username
// is "<expiry unix seconds>:<user>" and the password is the base64 of
// HMAC-SHA1(secret, username). The TURN server recomputes the password
// from the shared secret and refuses the username once its expiry has
// passed (RFC 8489 §9.2 long-term credentials otherwise), so no per-user
// state is kept and nothing is revoked: a credential dies by itself.
func TURNCredentials(secret, user string, ttl time.Duration, now time.Time) (username, password string) {
	username = strconv.FormatInt(now.Add(ttl).Unix(), 10) + ":" + user
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	return username, base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
