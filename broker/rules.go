// Package broker enforces loalang's MQTT access rules on the embedded mochi-mqtt
// broker and renders the same rules as Mosquitto configuration, so that a device
// sees identical permissions whichever broker the site runs.
package broker

import (
	"fmt"
	"slices"
	"strings"

	"github.com/loalang/loalang/device/wire"
)

// Role says what an account may do on the broker.
type Role int

const (
	// RoleDevice is a loudspeaker, camera or relay board: it publishes under its
	// own dev/<id>/ and reads its own cmd and time topics and its zones.
	RoleDevice Role = iota + 1
	// RoleService is the daemon's own account, which reads and writes everything
	// under the site prefix.
	RoleService
)

// String returns the role's name as used in logs and docs.
func (r Role) String() string {
	switch r {
	case RoleDevice:
		return "device"
	case RoleService:
		return "service"
	default:
		return fmt.Sprintf("role(%d)", int(r))
	}
}

// ServiceUsername is the conventional username of the daemon's service account.
const ServiceUsername = "loalangd"

// ServiceClientID returns the MQTT client id of the daemon's service account
// for a site, "loalangd-<site>". It is predictable on purpose: what keeps
// others from using it is that both brokers bind it to the service account
// (Account.ClientID).
func ServiceClientID(site string) string { return "loalangd-" + site }

// Access is a set of permissions on a topic filter.
type Access uint8

const (
	// AccessRead permits subscribing to, and receiving messages on, a topic.
	AccessRead Access = 1 << iota
	// AccessWrite permits publishing to a topic (including as a last will).
	AccessWrite
	// AccessReadWrite permits both.
	AccessReadWrite = AccessRead | AccessWrite
)

// mosquittoWord returns the access keyword of a Mosquitto ACL "topic" line.
func (a Access) mosquittoWord() string {
	switch a {
	case AccessRead:
		return "read"
	case AccessWrite:
		return "write"
	default:
		return "readwrite"
	}
}

// Grant gives an access set on an MQTT topic filter (MQTT 3.1.1 §4.7). For
// a write grant it also bounds what may be published there.
type Grant struct {
	Filter string
	Access Access
	// Retain permits the retain flag [MQTT-3.3.1-5] on publishes and wills
	// under Filter.
	Retain bool
	// MaxPayload bounds the payload of a publish or will under Filter, in
	// bytes; 0 leaves only the broker's MaxPacketSize.
	MaxPayload int
}

// Account is one broker login: a device or the daemon's service account.
type Account struct {
	// Username is the MQTT CONNECT user name; for a device it is the device id.
	Username string
	// PasswordHash is the secret's hash in Mosquitto's "$7$" PBKDF2-SHA512
	// format, as produced by HashPassword.
	PasswordHash string
	// Role selects the account's permissions.
	Role Role
	// DeviceID names the device's dev/<id>/ subtree; empty means Username.
	DeviceID string
	// ClientID is the only MQTT client identifier the account may connect
	// under; empty means the device id for a device and Username otherwise.
	// Binding the id to one account stops one identity from taking over
	// another's session [MQTT-3.1.4-3].
	ClientID string
	// Zones lists the zones whose stream and audio topics the device reads.
	Zones []string
}

// deviceID returns the id whose dev/<id>/ subtree belongs to the account.
func (a Account) deviceID() string {
	if a.DeviceID != "" {
		return a.DeviceID
	}
	return a.Username
}

// clientID returns the one client id the account may connect under.
func (a Account) clientID() string {
	switch {
	case a.ClientID != "":
		return a.ClientID
	case a.Role == RoleDevice:
		return a.deviceID()
	default:
		return a.Username
	}
}

// Rules is the one access model from which both brokers' enforcement derives.
type Rules struct {
	// Site is the <site> level of the loalang/v1/<site>/ topic prefix.
	Site string
	// Accounts lists every login the broker accepts; anything else is refused.
	Accounts []Account
}

// Prefix returns the site's topic prefix, "loalang/v1/<site>/"
// (wire.SitePrefix).
func (r Rules) Prefix() string { return wire.SitePrefix(r.Site) }

// Grants returns the topic filters the account may use. It is the single
// definition of the ACL: Allowed, the embedded broker's hook and the Mosquitto
// ACL file are all computed from it. Every filter is a device/wire topic:
// the broker restates none of the protocol. A site, device id or zone that
// is not a valid topic level (wire.ValidLevel) gets no grant at all.
func (r Rules) Grants(a Account) []Grant {
	topics, err := wire.NewTopics(r.Site)
	if err != nil {
		return nil
	}
	switch a.Role {
	case RoleService:
		return []Grant{{Filter: topics.All(), Access: AccessReadWrite, Retain: true}}
	case RoleDevice:
		// Exactly the topics of the protocol (device/wire), each with its
		// size and retain rule: a device cannot use its subtree as storage.
		id := a.deviceID()
		if wire.ValidLevel(id) != nil {
			return nil
		}
		// The zone grants come first, audio (listed last in
		// wire.ZoneTopicRules) before stream: Mosquitto checks a
		// subscriber's entries in order on every delivery, and zone audio
		// is nearly all that a speaker receives.
		var g []Grant
		for _, z := range a.Zones {
			if wire.ValidLevel(z) != nil {
				continue
			}
			for _, t := range slices.Backward(wire.ZoneTopicRules) {
				if t.Direction == wire.ToDevice {
					g = append(g, Grant{Filter: topics.Zone(z, t.Suffix), Access: AccessRead})
				}
			}
		}
		for _, t := range wire.DeviceTopicRules {
			if t.Direction == wire.FromDevice {
				g = append(g, Grant{Filter: topics.Device(id, t.Suffix), Access: AccessWrite, Retain: t.Retained, MaxPayload: t.MaxPayload})
			} else {
				g = append(g, Grant{Filter: topics.Device(id, t.Suffix), Access: AccessRead})
			}
		}
		return g
	default:
		return nil
	}
}

// Validate reports whether the rules can be enforced identically by both
// brokers: the site, device ids and zones must be topic levels of the
// protocol (wire.ValidLevel), usernames must be plain names (no MQTT
// wildcards, no "/", nothing the Mosquitto configuration files would
// reinterpret), usernames and
// client ids must be unique (one session per identity [MQTT-3.1.4-3]) and
// every account must have a known role.
func (r Rules) Validate() error {
	if err := wire.ValidLevel(r.Site); err != nil {
		return fmt.Errorf("site %q: %w: %w", r.Site, ErrInvalidRules, err)
	}
	seen := make(map[string]bool, len(r.Accounts))
	ids := make(map[string]string, len(r.Accounts))
	for i, a := range r.Accounts {
		if !validName(a.Username) {
			return fmt.Errorf("account %d username %q: %w", i, a.Username, ErrInvalidRules)
		}
		if seen[a.Username] {
			return fmt.Errorf("account %q duplicated: %w", a.Username, ErrInvalidRules)
		}
		seen[a.Username] = true
		id := a.clientID()
		if !validClientID(id) {
			return fmt.Errorf("account %q client id %q: %w", a.Username, id, ErrInvalidRules)
		}
		if other, dup := ids[id]; dup {
			return fmt.Errorf("accounts %q and %q share client id %q: %w", other, a.Username, id, ErrInvalidRules)
		}
		ids[id] = a.Username
		if _, _, _, err := parseHash(a.PasswordHash); err != nil {
			return fmt.Errorf("account %q password hash: %w: %w", a.Username, ErrInvalidRules, err)
		}
		switch a.Role {
		case RoleService:
		case RoleDevice:
			if err := wire.ValidLevel(a.deviceID()); err != nil {
				return fmt.Errorf("account %q device id %q: %w: %w", a.Username, a.deviceID(), ErrInvalidRules, err)
			}
			for _, z := range a.Zones {
				if err := wire.ValidLevel(z); err != nil {
					return fmt.Errorf("account %q zone %q: %w: %w", a.Username, z, ErrInvalidRules, err)
				}
			}
		default:
			return fmt.Errorf("account %q role %v: %w", a.Username, a.Role, ErrInvalidRules)
		}
	}
	return nil
}

// validName accepts 1 to 64 of [A-Za-z0-9._-]. This keeps names out of MQTT
// wildcard syntax (MQTT 3.1.1 §4.7.1), out of the "user:hash" password file
// syntax and free of spaces, which the Mosquitto ACL file cannot quote.
func validName(s string) bool { return validToken(s, 64) }

// validToken accepts 1 to maxLen of [A-Za-z0-9._-].
func validToken(s string, maxLen int) bool {
	if len(s) == 0 || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// validClientID accepts 1 to 128 of [A-Za-z0-9._-]: room for
// ServiceClientID of a 64-byte site, and nothing the Mosquitto
// configuration would have to quote.
func validClientID(s string) bool { return validToken(s, 128) }

// ClientIDAllowed reports whether username may connect under clientID: only
// its own (Account.ClientID). Unknown usernames are denied.
func (r Rules) ClientIDAllowed(username, clientID string) bool {
	for _, a := range r.Accounts {
		if a.Username == username {
			return username != "" && clientID == a.clientID()
		}
	}
	return false
}

// PublishAllowed reports whether username may publish (or leave as its will)
// a payload of size bytes on topic, retained or not: Allowed for writing,
// within the grant's MaxPayload, and retained only where the grant permits.
func (r Rules) PublishAllowed(username, topic string, size int, retain bool) bool {
	if username == "" {
		return false
	}
	for _, a := range r.Accounts {
		if a.Username == username {
			return writeRuleOf(r.Grants(a), topic).permits(size, retain)
		}
	}
	return false
}

// writeRule is what the write grants covering one topic permit together.
type writeRule struct {
	ok         bool
	retain     bool
	maxPayload int // 0: unbounded by the grants
}

// permits reports whether a publish of size bytes, retained or not, fits.
func (w writeRule) permits(size int, retain bool) bool {
	return w.ok && (!retain || w.retain) && (w.maxPayload == 0 || size <= w.maxPayload)
}

// writeRuleOf combines the write grants covering topic, most permissive
// first: any grant covering it allows the publish, and the largest limit wins.
func writeRuleOf(grants []Grant, topic string) writeRule {
	var w writeRule
	if !grantsAllow(grants, topic, true) {
		return w
	}
	w.ok = true
	bounded := true
	for _, g := range grants {
		if g.Access&AccessWrite == 0 || !covers(g.Filter, topic) {
			continue
		}
		w.retain = w.retain || g.Retain
		if g.MaxPayload == 0 {
			bounded = false
		}
		w.maxPayload = max(w.maxPayload, g.MaxPayload)
	}
	if !bounded {
		w.maxPayload = 0
	}
	return w
}

// Allowed reports whether username may publish to topic (write) or subscribe to
// and receive topic (read, where topic may be a filter with + and #). A read is
// allowed only if every topic the filter could match is granted, so a device's
// "loalang/v1/<site>/#" subscription is refused outright. Unknown and empty
// usernames are denied. Allowed is pure and is the single source of truth both
// brokers are tested against.
func (r Rules) Allowed(username, topic string, write bool) bool {
	if username == "" {
		return false
	}
	for _, a := range r.Accounts {
		if a.Username == username {
			return grantsAllow(r.Grants(a), topic, write)
		}
	}
	return false
}

// grantsAllow applies a grant list to one publish or subscribe.
func grantsAllow(grants []Grant, topic string, write bool) bool {
	if topic == "" {
		return false
	}
	need := AccessRead
	if write {
		// [MQTT-3.3.2-2] a PUBLISH topic name must not contain wildcards.
		if strings.ContainsAny(topic, "+#") {
			return false
		}
		need = AccessWrite
	}
	for _, g := range grants {
		if g.Access&need != 0 && covers(g.Filter, topic) {
			return true
		}
	}
	return false
}

// covers reports whether every topic matched by filter is also matched by grant,
// using the matching rules of MQTT 3.1.1 §4.7.1: "#" matches its parent level
// and everything below, "+" exactly one level. For a filter without wildcards
// this is ordinary topic matching. Topics starting with "$" are never matched by
// a grant starting with a wildcard [MQTT-4.7.2-1].
func covers(grant, filter string) bool {
	if strings.HasPrefix(filter, "$") && (strings.HasPrefix(grant, "+") || strings.HasPrefix(grant, "#")) {
		return false
	}
	// Walk both level by level without allocating: this runs for every
	// delivery the embedded broker makes.
	g, f := grant, filter
	for {
		gl, gRest, gMore := strings.Cut(g, "/")
		if gl == "#" {
			return true
		}
		fl, fRest, fMore := strings.Cut(f, "/")
		switch {
		case gl == "+":
			if fl == "#" {
				return false
			}
		case fl != gl:
			return false
		}
		if !gMore || !fMore {
			// Both must end here, except that "a/#" also matches its parent "a".
			return gMore == fMore || (gMore && gRest == "#")
		}
		g, f = gRest, fRest
	}
}
