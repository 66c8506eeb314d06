package config

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// CommuneCameras configures the police camera path across carrier NAT at
// the commune office (docs/commune-cameras.md): WHEP offers forwarded to
// the villages over the uplink broker, media through the commune's TURN
// server (coturn). Empty TURNURLs turns the camera path off.
type CommuneCameras struct {
	// TURNURLs are the TURN server's turn: URLs (RFC 7065) as both the
	// villages and the police reach them, e.g.
	// turn:turn.xa-1.example:3478?transport=udp.
	TURNURLs []string `yaml:"turn_urls"`
	// TURNSecretFile holds coturn's static-auth-secret (use-auth-secret):
	// credentials are minted from it per viewer and per village request.
	TURNSecretFile string `yaml:"turn_secret_file"`
	// TURNTTL is a credential's life, which bounds one viewing session;
	// 0 means 4h.
	TURNTTL time.Duration `yaml:"turn_ttl"`
	// Timeout bounds the wait for a village's answer; 0 means 15s.
	Timeout time.Duration `yaml:"timeout"`
	// RelayOnly makes police browsers offer only TURN relay candidates,
	// so no police LAN address is sent to a village.
	RelayOnly bool `yaml:"relay_only"`
}

// Validate checks the section and reads the TURN secret; an error names
// the key. It returns "" and nil when the camera path is off.
func (c CommuneCameras) Validate() (secret string, err error) {
	bad := func(key, format string, args ...any) error {
		return &Error{Key: "commune_cameras." + key, Reason: fmt.Sprintf(format, args...)}
	}
	if len(c.TURNURLs) == 0 {
		return "", nil
	}
	for i, raw := range c.TURNURLs {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "turn" && u.Scheme != "turns") || u.Opaque == "" {
			return "", bad(fmt.Sprintf("turn_urls[%d]", i), "%q is not a turn: or turns: URL (RFC 7065)", raw)
		}
	}
	if c.TURNSecretFile == "" {
		return "", bad("turn_secret_file", "must name the file with coturn's static-auth-secret")
	}
	raw, err := os.ReadFile(c.TURNSecretFile)
	if err != nil {
		return "", bad("turn_secret_file", "%v", err)
	}
	secret = strings.TrimSpace(string(raw))
	if len(secret) < 16 {
		return "", bad("turn_secret_file", "the secret is shorter than 16 characters")
	}
	if c.TURNTTL < 0 || c.Timeout < 0 {
		return "", bad("turn_ttl", "durations must not be negative")
	}
	return secret, nil
}
