package config

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/internal/egress"
)

// Uplink configures the connection to the commune's or province's MQTT
// broker (docs/uplink.md). An empty URL turns the uplink off.
type Uplink struct {
	// URL is the upstream broker: tcp://host:port, or ssl://host:port for
	// TLS (mqtts:// and tls:// are accepted too). A comma-separated list
	// names the nodes of a clustered broker, tried in order on each
	// connection attempt.
	URL string `yaml:"url"`
	// CAFile is a PEM bundle the broker's certificate must chain to; empty
	// uses the system roots.
	CAFile string `yaml:"ca_file"`
	// Username and PasswordFile are this village's credentials upstream;
	// ClientID is the client id bound to them by the broker's ACL.
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	ClientID     string `yaml:"client_id"`
	// Province and Commune are the topic levels above site
	// (loalang/v1/<province>/<commune>/<site>/...).
	Province string `yaml:"province"`
	Commune  string `yaml:"commune"`
	// CommuneKeys and ProvinceKeys are the Ed25519 public keys (base64 of
	// the 32 raw bytes, RFC 8032 §5.1.5) whose signed broadcast commands
	// are played, at the commune's and province's level.
	CommuneKeys  []string `yaml:"commune_keys"`
	ProvinceKeys []string `yaml:"province_keys"`
	// OutboxMax bounds the outbox in entries; 0 means 100000. Policy when
	// full: docs/uplink.md.
	OutboxMax int `yaml:"outbox_max"`
	// MaxBackoff caps the jittered reconnect wait; 0 means 60s.
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// MediaMaxBytes bounds a fetched media file; 0 means
	// broadcast.max_upload_bytes.
	MediaMaxBytes int64 `yaml:"media_max_bytes"`
	// MediaAllow lists CIDRs a media URL may resolve to although they are
	// loopback or private (the commune's LAN server); public addresses are
	// always allowed.
	MediaAllow []string `yaml:"media_allow"`
	// CommuneCameras lists the camera ids the commune's police may view
	// through the uplink (docs/commune-cameras.md); ["*"] shares every
	// camera, empty shares none.
	CommuneCameras []string `yaml:"commune_cameras"`
}

// validate checks the uplink section when it is on.
func (u *Uplink) validate() error {
	bad := func(key, format string, args ...any) error {
		return &Error{Key: "uplink." + key, Reason: fmt.Sprintf(format, args...)}
	}
	if u.URL == "" {
		return nil
	}
	for _, one := range strings.Split(u.URL, ",") {
		p, err := url.Parse(strings.TrimSpace(one))
		if err != nil || p.Host == "" {
			return bad("url", "%q is not a broker URL (tcp://host:port or ssl://host:port)", one)
		}
		switch p.Scheme {
		case "tcp", "mqtt", "ssl", "tls", "mqtts":
		default:
			return bad("url", "scheme %q: use tcp, mqtt, ssl, tls or mqtts", p.Scheme)
		}
	}
	if u.ClientID == "" {
		return bad("client_id", "must not be empty when uplink.url is set")
	}
	if err := wire.ValidLevel(u.Province); err != nil {
		return bad("province", "%v", err)
	}
	if err := wire.ValidLevel(u.Commune); err != nil {
		return bad("commune", "%v", err)
	}
	if len(u.CommuneKeys)+len(u.ProvinceKeys) == 0 {
		return bad("province_keys", "at least one commune or province public key is needed to accept commands")
	}
	for name, keys := range map[string][]string{"commune_keys": u.CommuneKeys, "province_keys": u.ProvinceKeys} {
		for i, k := range keys {
			raw, err := base64.StdEncoding.DecodeString(k)
			if err != nil || len(raw) != ed25519.PublicKeySize {
				return bad(fmt.Sprintf("%s[%d]", name, i), "not the base64 of a 32-byte Ed25519 public key")
			}
		}
	}
	if u.OutboxMax < 0 {
		return bad("outbox_max", "must not be negative")
	}
	if u.MaxBackoff < 0 {
		return bad("max_backoff", "must not be negative")
	}
	if _, err := egress.ParsePolicy("uplink.media_allow", u.MediaAllow); err != nil {
		return &Error{Key: "uplink.media_allow", Reason: err.Error()}
	}
	return nil
}
