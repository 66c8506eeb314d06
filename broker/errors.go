package broker

import "errors"

// Sentinel errors returned by this package; compare them with errors.Is.
var (
	// ErrInvalidRules reports a rule set that cannot be enforced safely, such as a
	// username or zone containing MQTT wildcards or ACL-file metacharacters.
	ErrInvalidRules = errors.New("broker: invalid rules")
	// ErrBadHash reports a password hash that is not in Mosquitto's
	// "$7$<iterations>$<salt>$<hash>" PBKDF2-SHA512 format.
	ErrBadHash = errors.New("broker: malformed password hash")
	// ErrClosed reports an operation on a broker that has been closed.
	ErrClosed = errors.New("broker: closed")
	// ErrStarted reports a second Start of the same embedded broker.
	ErrStarted = errors.New("broker: already started")
	// ErrNoDynsecPlugin reports that Mosquitto's dynamic security plugin,
	// which the generated configuration needs to bind client ids to
	// accounts, is not installed where DynsecPluginPaths looks.
	ErrNoDynsecPlugin = errors.New("broker: mosquitto dynamic security plugin not found")
)
