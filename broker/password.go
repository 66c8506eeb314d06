package broker

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
)

// Parameters of Mosquitto 2.x's default password hash, "sha512-pbkdf2", as
// written by mosquitto_passwd: "$7$<iterations>$<base64 salt>$<base64 hash>"
// with a 12-byte salt, a 64-byte PBKDF2-HMAC-SHA512 (RFC 8018 §5.2) output and
// standard padded base64 (RFC 4648 §4).
const (
	hashPrefix     = "$7$"
	saltLen        = 12
	keyLen         = sha512.Size
	hashIterations = 101
	// maxIterations bounds the work a malformed or hostile hash can demand.
	maxIterations = 10_000_000
)

// HashPassword hashes secret in the Mosquitto 2.x "$7$" PBKDF2-SHA512 format so
// that one stored hash serves both the embedded broker and Mosquitto's
// password_file. It uses Mosquitto's default of 101 iterations, which is
// enough because device secrets are random 128-bit tokens, not human passwords
// (see docs/security.md).
func HashPassword(secret string) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: read salt: %w", err)
	}
	key, err := pbkdf2.Key(sha512.New, secret, salt, hashIterations, keyLen)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return hashPrefix + strconv.Itoa(hashIterations) + "$" +
		base64.StdEncoding.EncodeToString(salt) + "$" +
		base64.StdEncoding.EncodeToString(key), nil
}

// VerifyPassword reports whether secret matches hash, comparing the derived keys
// in constant time. A malformed hash never matches.
func VerifyPassword(hash, secret string) bool {
	iter, salt, want, err := parseHash(hash)
	if err != nil {
		return false
	}
	got, err := pbkdf2.Key(sha512.New, secret, salt, iter, len(want))
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(got, want) == 1
}

// parseHash splits a "$7$" hash into its iteration count, salt and key.
func parseHash(hash string) (iter int, salt, key []byte, err error) {
	rest, ok := strings.CutPrefix(hash, hashPrefix)
	if !ok {
		return 0, nil, nil, ErrBadHash
	}
	parts := strings.Split(rest, "$")
	if len(parts) != 3 {
		return 0, nil, nil, ErrBadHash
	}
	iter, err = strconv.Atoi(parts[0])
	if err != nil || iter < 1 || iter > maxIterations {
		return 0, nil, nil, ErrBadHash
	}
	salt, err = base64.StdEncoding.DecodeString(parts[1])
	if err != nil || len(salt) == 0 {
		return 0, nil, nil, ErrBadHash
	}
	key, err = base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(key) != keyLen {
		return 0, nil, nil, ErrBadHash
	}
	return iter, salt, key, nil
}
