package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/loalang/loalang/device/wire"
)

// Roles a loalangd process can run as (the top-level "role" key).
const (
	// RoleVillage is the village hall's edge controller, the default.
	RoleVillage = "village"
	// RoleCommune is the commune office's server (docs/commune.md).
	RoleCommune = "commune"
)

// Commune configures the commune role: its identity in the uplink's
// topics, its Mosquitto, its signing key and the address villages fetch
// recordings from (docs/commune.md).
type Commune struct {
	// Province and ID are the topic levels loalang/v1/<province>/<id>/...
	Province string `yaml:"province"`
	ID       string `yaml:"id"`
	// MQTTURL is the commune's Mosquitto (tcp:// or ssl://), where the
	// villages' uplinks publish their events.
	MQTTURL string `yaml:"mqtt_url"`
	// CAFile is the PEM bundle the broker's certificate chains to (ssl://).
	CAFile string `yaml:"ca_file"`
	// Username, PasswordFile and ClientID are the commune's credentials on
	// its broker; the ACL should let ClientID read every village's events
	// and write the commune's command topics.
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	ClientID     string `yaml:"client_id"`
	// SigningKeyFile is the commune's Ed25519 private key (PKCS #8 PEM,
	// `loalang uplink keygen`); its public key is every village's
	// uplink.commune_keys.
	SigningKeyFile string `yaml:"signing_key_file"`
	// PublicURL is the commune's HTTP(S) base URL as villages reach it; the
	// URLs of recordings in commands start with it.
	PublicURL string `yaml:"public_url"`
	// Villages lists the commune's villages (their uplink site ids), shown
	// even before they first report.
	Villages []string `yaml:"villages"`
	// ResendEvery is how often an unanswered command is published again;
	// 0 means 30s.
	ResendEvery time.Duration `yaml:"resend_every"`
	// MaxUploadBytes bounds a recording upload; 0 means 20 MiB.
	MaxUploadBytes int64 `yaml:"max_upload_bytes"`
}

// validateCommune checks a role: commune configuration: the village's
// sections (devices, zones, broadcast) are not used.
func (c *Config) validateCommune() error {
	bad := func(key, format string, args ...any) error {
		return &Error{Key: key, Reason: fmt.Sprintf(format, args...)}
	}
	if c.DataDir == "" {
		return bad("data_dir", "must not be empty")
	}
	if err := hostPort(c.HTTP.Addr); err != nil {
		return bad("http.addr", "%v", err)
	}
	if (c.HTTP.CertFile == "") != (c.HTTP.KeyFile == "") {
		return bad("http.cert_file", "cert_file and key_file go together")
	}
	m := c.Commune
	if err := wire.ValidLevel(m.Province); err != nil {
		return bad("commune.province", "%v", err)
	}
	if err := wire.ValidLevel(m.ID); err != nil {
		return bad("commune.id", "%v", err)
	}
	p, err := url.Parse(m.MQTTURL)
	if err != nil || p.Host == "" {
		return bad("commune.mqtt_url", "%q is not a broker URL (tcp://host:port or ssl://host:port)", m.MQTTURL)
	}
	switch p.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts":
	default:
		return bad("commune.mqtt_url", "scheme %q: use tcp, mqtt, ssl, tls or mqtts", p.Scheme)
	}
	if m.ClientID == "" {
		return bad("commune.client_id", "must not be empty")
	}
	if m.SigningKeyFile == "" {
		return bad("commune.signing_key_file", "must name the commune's Ed25519 key (loalang uplink keygen -out FILE)")
	}
	u, err := url.Parse(m.PublicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.HasSuffix(m.PublicURL, "/") {
		return bad("commune.public_url", "%q is not an http(s) base URL without a trailing slash", m.PublicURL)
	}
	for i, v := range m.Villages {
		if err := wire.ValidLevel(v); err != nil {
			return bad(fmt.Sprintf("commune.villages[%d]", i), "%v", err)
		}
	}
	if m.ResendEvery < 0 {
		return bad("commune.resend_every", "must not be negative")
	}
	if m.MaxUploadBytes < 0 {
		return bad("commune.max_upload_bytes", "must not be negative")
	}
	return validateWebRTC(c.WebRTC) // the commune's live speech (WHIP)
}
