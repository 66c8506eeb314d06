// Package uplink connects a village's loalangd to its commune's and
// province's MQTT broker (docs/uplink.md): upward, a durable outbox of
// events in bbolt, sent at QoS 1 in order and removed only after the
// broker's PUBACK; downward, broadcast commands signed with Ed25519 (RFC
// 8032), verified, checked for replay, expiry and target, then played at
// the priority of their sender's level. Topics and payloads are specified
// byte by byte in docs/protocol.md ("Uplink").
package uplink

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/loalang/loalang/device/wire"
)

// Version is the topic version level.
const Version = "v1"

// Topics builds the uplink's topic names for one village. Every level is
// checked with wire.ValidLevel, so none contains '/', '+', '#' or NUL
// (MQTT 3.1.1 §4.7).
type Topics struct {
	Province, Commune, Site string
}

// NewTopics checks the levels and returns the village's topics.
func NewTopics(province, commune, site string) (Topics, error) {
	for name, v := range map[string]string{"province": province, "commune": commune, "site": site} {
		if err := wire.ValidLevel(v); err != nil {
			return Topics{}, fmt.Errorf("uplink topic %s: %w", name, err)
		}
	}
	return Topics{province, commune, site}, nil
}

func (t Topics) base() string { return "loalang/" + Version + "/" + t.Province }

// Events is where the village publishes its outbox:
// loalang/v1/<province>/<commune>/<site>/events.
func (t Topics) Events() string { return t.base() + "/" + t.Commune + "/" + t.Site + "/events" }

// Presence carries "online" when the uplink connects and the will
// "offline" when it is lost; never retained.
func (t Topics) Presence() string { return t.base() + "/" + t.Commune + "/" + t.Site + "/presence" }

// CommandTopics are the three topics a village subscribes to for commands:
// the province's, the commune's and its own. The target inside the signed
// command decides; the topic only routes.
func (t Topics) CommandTopics() []string {
	return []string{
		t.base() + "/cmd",
		t.base() + "/" + t.Commune + "/cmd",
		t.base() + "/" + t.Commune + "/" + t.Site + "/cmd",
	}
}

// Live is the topic of one live-speech session's audio chunks, published
// by the commune at QoS 0: loalang/v1/<province>/<commune>/live/<session>.
// session must be a valid topic level (wire.ValidLevel).
func (t Topics) Live(session string) string {
	return t.base() + "/" + t.Commune + "/live/" + session
}

// LiveFilter matches every live session of the village's commune; a
// village subscribes to it once, at connect (MQTT 3.1.1 §4.7.1.3).
func (t Topics) LiveFilter() string { return t.base() + "/" + t.Commune + "/live/+" }

// LiveSession returns the session level of a live topic, or "" when the
// topic is not one of this commune's live topics.
func (t Topics) LiveSession(topic string) string {
	prefix := t.base() + "/" + t.Commune + "/live/"
	s, ok := strings.CutPrefix(topic, prefix)
	if !ok || wire.ValidLevel(s) != nil {
		return ""
	}
	return s
}

// Sender levels: who signed a command.
const (
	LevelProvince = "province"
	LevelCommune  = "commune"
)

// Urgencies of a command.
const (
	UrgencyEmergency = "emergency"
	UrgencyRoutine   = "routine"
)

// Command is a broadcast request from above. It travels as the exact
// bytes of its JSON inside a signed Envelope.
type Command struct {
	// V is the command format version, 1.
	V int `json:"v"`
	// ID names the command for reports; Nonce (16 random bytes, hex) makes
	// it unique for replay checks.
	ID    string `json:"id"`
	Nonce string `json:"nonce"`
	// Level is the sender's level (province or commune) and Sender its id.
	Level  string `json:"level"`
	Sender string `json:"sender"`
	// Issued and Expires bound when the command may play.
	Issued  time.Time `json:"issued"`
	Expires time.Time `json:"expires"`
	Target  Target    `json:"target"`
	// Urgency is emergency or routine.
	Urgency string `json:"urgency"`
	// Exactly one of Media, Text and Live.
	Media *MediaRef `json:"media,omitempty"`
	Text  string    `json:"text,omitempty"`
	Live  *LiveRef  `json:"live,omitempty"`
}

// LiveRef names a live-speech session whose audio follows as signed
// chunks on Topics.Live(Session) (docs/protocol.md, "Live speech").
type LiveRef struct {
	Session string `json:"session"`
}

// Target says which villages and zones must play a command.
type Target struct {
	Province string `json:"province"`
	// Commune, when set, limits the command to one commune.
	Commune string `json:"commune,omitempty"`
	// Villages, when set, limits it to these sites of the commune.
	Villages []string `json:"villages,omitempty"`
	// Zones, when set, limits it to these zones (unknown ones are ignored);
	// empty means every zone.
	Zones []string `json:"zones,omitempty"`
}

// MediaRef is a media file to fetch: its URL, its SHA-256 (hex) and its
// size in bytes.
type MediaRef struct {
	URL    string `json:"url"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Envelope is what travels on a command topic: the command's bytes and a
// signature over them (docs/protocol.md, "Signed commands").
type Envelope struct {
	// Cmd is the base64 (RFC 4648 §4) of the command's JSON bytes.
	Cmd string `json:"cmd"`
	// Sig is the base64 of the Ed25519 signature over SigningInput(cmd).
	Sig string `json:"sig"`
}

// signContext separates these signatures from any other use of the keys.
const signContext = "loalang-uplink-command-v1\n"

// SigningInput is the canonical encoding a signature covers: the context
// string followed by the command's bytes exactly as carried (base64-decoded
// Envelope.Cmd). Signing bytes, not a re-serialised structure, means the
// verifier never has to reproduce a JSON encoding.
func SigningInput(cmd []byte) []byte { return append([]byte(signContext), cmd...) }

// Limits on commands.
const (
	// MaxLifetime bounds Expires-Issued, and so how long a nonce is kept.
	MaxLifetime = 24 * time.Hour
	// MaxSkew is how far in the future Issued may be (clock error).
	MaxSkew = 5 * time.Minute
	// MaxEnvelope bounds an envelope's bytes.
	MaxEnvelope = 64 << 10
	maxText     = 4000
	maxSession  = 64
)

// NewNonce returns 16 random bytes in hex.
func NewNonce() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Sign encodes c and signs it with key.
func Sign(c Command, key ed25519.PrivateKey) ([]byte, error) {
	if c.V == 0 {
		c.V = 1
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("sign command: %w", err)
	}
	sig := ed25519.Sign(key, SigningInput(raw))
	return json.Marshal(Envelope{Cmd: base64.StdEncoding.EncodeToString(raw), Sig: base64.StdEncoding.EncodeToString(sig)})
}

// check validates a command's fields, not its signature or time.
func (c Command) check() error {
	switch {
	case c.V != 1:
		return fmt.Errorf("%w: version %d", ErrMalformed, c.V)
	case c.ID == "" || len(c.ID) > 128:
		return fmt.Errorf("%w: id", ErrMalformed)
	case len(c.Nonce) != 32:
		return fmt.Errorf("%w: nonce must be 32 hex digits", ErrMalformed)
	case c.Level != LevelProvince && c.Level != LevelCommune:
		return fmt.Errorf("%w: level %q", ErrMalformed, c.Level)
	case c.Issued.IsZero() || c.Expires.IsZero() || !c.Expires.After(c.Issued):
		return fmt.Errorf("%w: issued and expires", ErrMalformed)
	case c.Expires.Sub(c.Issued) > MaxLifetime:
		return fmt.Errorf("%w: lifetime %s exceeds %s", ErrMalformed, c.Expires.Sub(c.Issued), MaxLifetime)
	case c.Urgency != UrgencyEmergency && c.Urgency != UrgencyRoutine:
		return fmt.Errorf("%w: urgency %q", ErrMalformed, c.Urgency)
	case c.contents() != 1:
		return fmt.Errorf("%w: exactly one of media, text and live", ErrMalformed)
	case c.Live != nil && wire.ValidLevel(c.Live.Session) != nil:
		return fmt.Errorf("%w: live.session must be a topic level", ErrMalformed)
	case c.Live != nil && len(c.Live.Session) > maxSession:
		return fmt.Errorf("%w: live.session longer than %d bytes", ErrMalformed, maxSession)
	case len(c.Text) > maxText:
		return fmt.Errorf("%w: text longer than %d bytes", ErrMalformed, maxText)
	case c.Target.Province == "":
		return fmt.Errorf("%w: target.province", ErrMalformed)
	case c.Level == LevelCommune && c.Target.Commune == "":
		return fmt.Errorf("%w: a commune's command targets its commune", ErrMalformed)
	}
	if _, err := hex.DecodeString(c.Nonce); err != nil {
		return fmt.Errorf("%w: nonce must be hex", ErrMalformed)
	}
	if c.Media != nil {
		if sum, err := hex.DecodeString(c.Media.SHA256); err != nil || len(sum) != 32 {
			return fmt.Errorf("%w: media.sha256 must be 64 hex digits", ErrMalformed)
		}
		if c.Media.Size <= 0 || !(strings.HasPrefix(c.Media.URL, "http://") || strings.HasPrefix(c.Media.URL, "https://")) {
			return fmt.Errorf("%w: media needs an http(s) url and a size", ErrMalformed)
		}
	}
	return nil
}

// contents counts the command's content kinds (media, text, live).
func (c Command) contents() int {
	n := 0
	if c.Media != nil {
		n++
	}
	if c.Text != "" {
		n++
	}
	if c.Live != nil {
		n++
	}
	return n
}

// Keys are the trusted public keys per level.
type Keys struct {
	Province []ed25519.PublicKey
	Commune  []ed25519.PublicKey
}

// ParseKeys decodes base64 public keys (config uplink.*_keys).
func ParseKeys(province, commune []string) (Keys, error) {
	var k Keys
	for _, s := range province {
		p, err := ParsePublicKey(s)
		if err != nil {
			return Keys{}, err
		}
		k.Province = append(k.Province, p)
	}
	for _, s := range commune {
		p, err := ParsePublicKey(s)
		if err != nil {
			return Keys{}, err
		}
		k.Commune = append(k.Commune, p)
	}
	return k, nil
}

// Open decodes an envelope and verifies its signature with the keys of
// the level the command claims; it returns the command only if one of
// them signed it. It does not check time, nonce or target (see Check).
func Open(raw []byte, keys Keys) (Command, error) {
	if len(raw) > MaxEnvelope {
		return Command{}, fmt.Errorf("%w: envelope of %d bytes", ErrMalformed, len(raw))
	}
	var env Envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return Command{}, fmt.Errorf("%w: envelope: %v", ErrMalformed, err)
	}
	cmdRaw, err := base64.StdEncoding.DecodeString(env.Cmd)
	if err != nil {
		return Command{}, fmt.Errorf("%w: cmd is not base64", ErrMalformed)
	}
	sig, err := base64.StdEncoding.DecodeString(env.Sig)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return Command{}, fmt.Errorf("%w: sig is not a base64 Ed25519 signature", ErrBadSignature)
	}
	var c Command
	if err := json.Unmarshal(cmdRaw, &c); err != nil {
		return Command{}, fmt.Errorf("%w: cmd: %v", ErrMalformed, err)
	}
	trusted := keys.Commune
	if c.Level == LevelProvince {
		trusted = keys.Province
	}
	input := SigningInput(cmdRaw)
	if !slices.ContainsFunc(trusted, func(k ed25519.PublicKey) bool { return ed25519.Verify(k, input, sig) }) {
		// The same command may carry its id even if forged: reported so.
		return c, fmt.Errorf("%w: no trusted %s key signed command %q", ErrBadSignature, c.Level, c.ID)
	}
	if err := c.check(); err != nil {
		return c, err
	}
	return c, nil
}

// Check refuses a verified command that is expired, not yet valid or for
// someone else. now is the village's clock.
func (c Command) Check(now time.Time, t Topics) error {
	if !now.Before(c.Expires) {
		return fmt.Errorf("%w: expired at %s", ErrExpired, c.Expires.UTC().Format(time.RFC3339))
	}
	if c.Issued.After(now.Add(MaxSkew)) {
		return fmt.Errorf("%w: issued %s is in the future", ErrExpired, c.Issued.UTC().Format(time.RFC3339))
	}
	if c.Target.Province != t.Province {
		return fmt.Errorf("%w: province %q", ErrNotForUs, c.Target.Province)
	}
	if c.Level == LevelCommune && c.Sender != t.Commune {
		return fmt.Errorf("%w: commune %q may not command commune %q", ErrNotForUs, c.Sender, t.Commune)
	}
	if c.Target.Commune != "" && c.Target.Commune != t.Commune {
		return fmt.Errorf("%w: commune %q", ErrNotForUs, c.Target.Commune)
	}
	if len(c.Target.Villages) > 0 && !slices.Contains(c.Target.Villages, t.Site) {
		return fmt.Errorf("%w: villages %q", ErrNotForUs, c.Target.Villages)
	}
	return nil
}

// Priority maps the command to a local broadcast priority: an emergency
// from either level is wire.PriorityEmergency, which pre-empts everything
// local; a routine command plays at wire.PriorityPriority, above the
// village's own normal announcements.
func (c Command) Priority() string {
	if c.Urgency == UrgencyEmergency {
		return wire.PriorityEmergency
	}
	return wire.PriorityPriority
}

// NonceKey is the nonce store's key: level, sender and nonce, so two
// senders' nonces never collide.
func (c Command) NonceKey() string { return c.Level + "/" + c.Sender + "/" + c.Nonce }
