// Package auth holds the domain of users: roles, password hashing, session
// tokens and the failed-login limiter. It knows nothing of HTTP or storage.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
)

// Role is what a user may do.
type Role string

// Roles, DESIGN.md "Security model": least privilege.
const (
	// RoleAdmin provisions devices, users and cameras, and may do everything.
	RoleAdmin Role = "admin"
	// RoleHead is the village head: broadcasts and schedules.
	RoleHead Role = "head"
	// RolePolice is the commune police: the cameras they are allowed to see.
	RolePolice Role = "police"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleAdmin || r == RoleHead || r == RolePolice }

// User is a person who signs in. PasswordHash never leaves the daemon: it is
// tagged out of JSON responses by the web layer's own view type.
type User struct {
	Username     string    `json:"username"`
	Role         Role      `json:"role"`
	PasswordHash string    `json:"password_hash"`
	Cameras      []string  `json:"cameras,omitempty"` // police: camera ids they may view
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
	// SessionEpoch counts password changes: a session is valid only while
	// its Epoch equals it, so changing a password ends every older session
	// at once, without finding them (Session.ValidFor).
	SessionEpoch int `json:"session_epoch,omitempty"`
}

// MayView reports whether u may watch camera id.
func (u User) MayView(camera string) bool {
	return u.Role == RoleAdmin || (u.Role == RolePolice && slices.Contains(u.Cameras, camera))
}

// Errors returned by this package.
var (
	ErrBadPassword  = errors.New("wrong username or password")
	ErrWeakPassword = errors.New("password must be 10–256 characters")
	ErrBadUsername  = errors.New("username must be 1–32 letters, digits, '.', '-' or '_'")
	ErrRateLimited  = errors.New("too many failed logins; try again later")
	ErrBadCameras   = errors.New("cameras must be at most 256 ids of 1–64 letters, digits, '.', '-' or '_'")
)

// MaxUsername is the longest username, in bytes. Login refuses longer
// names before anything is stored or audited.
const MaxUsername = 32

// MaxCameras bounds a police user's camera list.
const MaxCameras = 256

// ValidUsername checks a username: 1–MaxUsername ASCII letters, digits,
// '.', '-' or '_'.
func ValidUsername(name string) error {
	if name == "" || len(name) > MaxUsername {
		return ErrBadUsername
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-_", r)) {
			return ErrBadUsername
		}
	}
	return nil
}

// ValidCameras checks a police user's camera list: at most MaxCameras ids,
// each 1–64 characters from the same set as device and camera ids.
func ValidCameras(ids []string) error {
	if len(ids) > MaxCameras {
		return ErrBadCameras
	}
	for _, id := range ids {
		if id == "" || len(id) > 64 || strings.IndexFunc(id, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(".-_", r))
		}) >= 0 {
			return ErrBadCameras
		}
	}
	return nil
}

// argon2id parameters: RFC 9106 §4's second recommended option, "if much
// less memory is available": t=3 passes, p=4 lanes, m=2^16 KiB (64 MiB),
// a 128-bit salt and a 256-bit tag. (Until issue 16 the code used OWASP's
// smaller 19 MiB, t=2, p=1.)
const (
	argonTime    = 3
	argonMemory  = 64 * 1024
	argonThreads = 4
	argonKeyLen  = 32
)

// hashSlot lets one argon2id computation run at a time in the process, so
// however many sign-ins, user edits and the admin bootstrap coincide, the
// hashing never holds more than one 64 MiB block array. A 2-core mini-PC
// gains nothing from running two at once: each already uses p=4 lanes.
var hashSlot = make(chan struct{}, 1)

// idKey runs argon2.IDKey in the hash slot and then hands its memory back
// to the operating system. Go's heap would otherwise keep the 64 MiB (and
// a heap goal doubled by it) resident until the runtime's forced GC, two
// minutes later, and scavenging returns it only slowly: the daemon then
// idles at 60 MiB instead of under 40 (issue 16). debug.FreeOSMemory runs
// a GC and returns every free page at once; it costs a few milliseconds of
// a daemon's small heap against the hash's hundreds.
func idKey(pw, salt []byte, t, m uint32, p uint8, keyLen uint32) []byte {
	hashSlot <- struct{}{}
	defer func() { <-hashSlot }()
	key := argon2.IDKey(pw, salt, t, m, p, keyLen)
	debug.FreeOSMemory()
	return key
}

// NeedsRehash reports whether hash was made with weaker parameters than
// HashPassword uses now, so that the caller may re-hash the password after
// a successful check.
func NeedsRehash(hash string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return true
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return true
	}
	return m < argonMemory || t < argonTime || p < argonThreads
}

// HashPassword hashes a password with argon2id (RFC 9106) in the PHC string
// format: $argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>. Hashes run one at
// a time in the process (idKey).
func HashPassword(pw string) (string, error) {
	if n := len([]rune(pw)); n < 10 || n > 256 {
		return "", ErrWeakPassword
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	key := idKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

// VerifyPassword checks pw against a hash made by HashPassword, in constant
// time.
func VerifyPassword(hash, pw string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m > 1<<20 || t > 10 || p == 0 {
		return false
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(parts[4])
	want, err2 := enc.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := idKey([]byte(pw), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// dummyHash is the hash an unknown username is checked against, made once
// with the same parameters as real ones.
var dummyHash = sync.OnceValue(func() string {
	h, err := HashPassword(RandomSecret(18))
	if err != nil {
		return ""
	}
	return h
})

// DummyHash returns a hash of a random password that nobody knows, with the
// same argon2id parameters as HashPassword. Checking a password of an
// unknown user against it costs the same as a wrong password of a real
// user, so response times do not tell which usernames exist (OWASP
// Authentication Cheat Sheet, "Authentication Responses").
func DummyHash() string { return dummyHash() }

// RandomSecret returns n random bytes as URL-safe base64: passwords,
// device secrets and session tokens.
func RandomSecret(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		// crypto/rand.Read never fails on Linux (Go 1.24+ documents it panics internally instead).
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// TokenKey is the storage key of a session token: its SHA-256, so a stolen
// store file holds no usable tokens.
func TokenKey(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// Session is a signed-in user's token record.
type Session struct {
	Username string    `json:"username"`
	Expires  time.Time `json:"expires"`
	// CSRF is the per-session anti-CSRF token for cookie sessions.
	CSRF string `json:"csrf,omitempty"`
	// Epoch is the user's SessionEpoch when the session began.
	Epoch int `json:"epoch,omitempty"`
}

// ValidFor reports whether the session still signs in u at now: it has not
// expired, and u's password has not changed since it began.
func (s Session) ValidFor(u User, now time.Time) bool {
	return s.Username == u.Username && now.Before(s.Expires) && s.Epoch == u.SessionEpoch
}
