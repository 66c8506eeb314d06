package wire

import (
	"fmt"
	"strings"
)

// Version is the protocol version carried in every topic prefix.
const Version = "v1"

// Topics builds and parses the topic names of one site. All topics live under
// "loalang/v1/<site>/".
type Topics struct {
	prefix string
}

// NewTopics returns the topic scheme of a site. The site must be a single
// topic level: no '/', '+', '#' or NUL, as [MQTT-4.7.1] reserves them.
func NewTopics(site string) (Topics, error) {
	if err := ValidLevel(site); err != nil {
		return Topics{}, fmt.Errorf("site: %w", err)
	}
	return Topics{prefix: SitePrefix(site)}, nil
}

// SitePrefix returns "loalang/v1/<site>/" without checking site; NewTopics
// is the checked way in. The broker uses it to name the prefix of rules it
// is about to refuse.
func SitePrefix(site string) string { return "loalang/" + Version + "/" + site + "/" }

// MustTopics is NewTopics for sites known to be valid, such as ones already
// checked by configuration validation. It panics on an invalid site.
func MustTopics(site string) Topics {
	t, err := NewTopics(site)
	if err != nil {
		panic(err)
	}
	return t
}

// ValidLevel reports whether s can be used as one topic level (a site, device
// id or zone name). Identifiers are restricted to [A-Za-z0-9_-] so that they are
// also safe in file names, URLs and Mosquitto ACL files.
func ValidLevel(s string) error {
	if s == "" {
		return fmt.Errorf("empty identifier")
	}
	if len(s) > 64 {
		return fmt.Errorf("identifier %q longer than 64 bytes", s)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("identifier %q: character %q not allowed (use letters, digits, '-' and '_')", s, r)
		}
	}
	return nil
}

// Prefix returns "loalang/v1/<site>/".
func (t Topics) Prefix() string { return t.prefix }

// All returns "loalang/v1/<site>/#", the filter of every topic of the site
// (the controller's own grant on a broker).
func (t Topics) All() string { return t.prefix + "#" }

// Device topic suffixes, each under dev/<id>/.
const (
	// SufStatus is the retained online/offline status, also the last will.
	SufStatus = "status"
	// SufHeartbeat carries periodic telemetry.
	SufHeartbeat = "heartbeat"
	// SufCmd carries commands from the controller to the device.
	SufCmd = "cmd"
	// SufReply carries the device's answers to commands.
	SufReply = "reply"
	// SufReport carries per-stream delivery reports.
	SufReport = "report"
	// SufClock carries the device's clock-sync requests.
	SufClock = "clock"
	// SufTime carries the controller's clock-sync responses.
	SufTime = "time"
)

// Device returns the topic dev/<id>/<suffix>.
func (t Topics) Device(id, suffix string) string {
	return t.prefix + "dev/" + id + "/" + suffix
}

// DeviceAll returns the filter matching every topic of every device with the
// given suffix, e.g. dev/+/status.
func (t Topics) DeviceAll(suffix string) string {
	return t.prefix + "dev/+/" + suffix
}

// Zone returns zone/<zone>/<kind>, kind being one of ZoneTopicRules'
// suffixes.
func (t Topics) Zone(zone, kind string) string { return t.prefix + "zone/" + zone + "/" + kind }

// ZoneStream returns zone/<zone>/stream, the QoS 1 stream control topic.
func (t Topics) ZoneStream(zone string) string { return t.Zone(zone, ZoneKindStream) }

// ZoneAudio returns zone/<zone>/audio, the QoS 0 audio frame topic.
func (t Topics) ZoneAudio(zone string) string { return t.Zone(zone, ZoneKindAudio) }

// ParseDevice splits a device topic into its device id and suffix. It reports
// false for any topic that is not exactly prefix + dev/<id>/<suffix>.
func (t Topics) ParseDevice(topic string) (id, suffix string, ok bool) {
	rest, found := strings.CutPrefix(topic, t.prefix+"dev/")
	if !found {
		return "", "", false
	}
	id, suffix, found = strings.Cut(rest, "/")
	if !found || ValidLevel(id) != nil || suffix == "" || strings.Contains(suffix, "/") {
		return "", "", false
	}
	return id, suffix, true
}

// ParseZone splits a zone topic into its zone and kind ("stream" or "audio").
func (t Topics) ParseZone(topic string) (zone, kind string, ok bool) {
	rest, found := strings.CutPrefix(topic, t.prefix+"zone/")
	if !found {
		return "", "", false
	}
	zone, kind, found = strings.Cut(rest, "/")
	if !found || ValidLevel(zone) != nil || (kind != ZoneKindStream && kind != ZoneKindAudio) {
		return "", "", false
	}
	return zone, kind, true
}

// PublishSize is the size of an MQTT 3.1.1 PUBLISH packet (§3.3): one byte
// of packet type and flags, the Remaining Length varint (§2.2.3), the
// 2-byte topic length and topic, a 2-byte packet identifier for QoS > 0,
// then the payload.
func PublishSize(topic string, qos byte, payload int) int {
	rl := 2 + len(topic) + payload
	if qos > 0 {
		rl += 2
	}
	n := 1
	for v := rl; ; v >>= 7 {
		n++
		if v < 128 {
			break
		}
	}
	return n + rl
}
