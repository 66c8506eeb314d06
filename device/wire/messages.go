package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// MaxJSONPayload bounds every JSON payload on the wire. Anything larger is
// rejected before it is parsed, so a misbehaving device cannot make the
// controller allocate without limit.
const MaxJSONPayload = 8 << 10

// ErrMalformed marks a payload that does not decode or fails validation.
var ErrMalformed = errors.New("malformed payload")

// Device kinds.
const (
	KindSpeaker = "speaker"
	KindCamera  = "camera"
	KindRelay   = "relay"
)

// Presence states carried in Status.State.
const (
	StateOnline  = "online"
	StateOffline = "offline"
)

// Status is the retained presence message on dev/<id>/status. The device
// publishes State "online" on connect and registers the same topic with
// State "offline" as its last will ([MQTT-3.1.2-8]), so the broker reports
// an unclean disconnect on the device's behalf.
type Status struct {
	State    string `json:"state"`
	Kind     string `json:"kind"`
	Firmware string `json:"firmware,omitempty"`
	// TS is the device's Unix time in milliseconds when it published; 0 in a will.
	TS int64 `json:"ts,omitempty"`
}

// Validate checks the fields a controller relies on.
func (s Status) Validate() error {
	if s.State != StateOnline && s.State != StateOffline {
		return fmt.Errorf("status: state %q is not online or offline", s.State)
	}
	if s.Kind == "" {
		return fmt.Errorf("status: missing kind")
	}
	return nil
}

// Heartbeat is the periodic telemetry on dev/<id>/heartbeat.
type Heartbeat struct {
	Firmware string `json:"firmware"`
	// Volume is the output volume in percent, 0–100.
	Volume int `json:"volume"`
	// UptimeS is seconds since the device booted.
	UptimeS int64 `json:"uptime_s"`
	// SignalDBm is the received signal strength of the uplink (Wi-Fi or 4G), in dBm.
	SignalDBm int   `json:"signal_dbm"`
	TS        int64 `json:"ts,omitempty"`
}

// Validate checks ranges.
func (h Heartbeat) Validate() error {
	if h.Volume < 0 || h.Volume > 100 {
		return fmt.Errorf("heartbeat: volume %d outside 0–100", h.Volume)
	}
	if h.UptimeS < 0 {
		return fmt.Errorf("heartbeat: negative uptime")
	}
	if h.SignalDBm > 0 || h.SignalDBm < -150 {
		return fmt.Errorf("heartbeat: signal %d dBm outside -150–0", h.SignalDBm)
	}
	return nil
}

// Command operations understood by protocol v1 firmware.
const (
	OpPing      = "ping"
	OpSetVolume = "set_volume"
	OpReboot    = "reboot"
)

// Command is a request on dev/<id>/cmd. It is published at QoS 1 and never
// retained, so a rebooting device does not execute it twice. A device must
// ignore a command whose Expires has passed on its own clock.
type Command struct {
	ID string `json:"id"`
	Op string `json:"op"`
	// Expires is the Unix time in milliseconds after which the command is void.
	Expires int64 `json:"expires"`
	// Volume is the target volume for set_volume.
	Volume *int `json:"volume,omitempty"`
}

// Expired reports whether the command is void at now.
func (c Command) Expired(now time.Time) bool { return now.UnixMilli() > c.Expires }

// Validate checks that the command is well formed.
func (c Command) Validate() error {
	if c.ID == "" || len(c.ID) > 64 {
		return fmt.Errorf("command: id must be 1–64 bytes")
	}
	switch c.Op {
	case OpPing, OpReboot:
	case OpSetVolume:
		if c.Volume == nil || *c.Volume < 0 || *c.Volume > 100 {
			return fmt.Errorf("command: set_volume needs volume 0–100")
		}
	default:
		return fmt.Errorf("command: unknown op %q", c.Op)
	}
	if c.Expires <= 0 {
		return fmt.Errorf("command: missing expires")
	}
	return nil
}

// Reply answers a Command on dev/<id>/reply.
type Reply struct {
	ID    string `json:"id"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Volume reports the volume after the command, where relevant.
	Volume *int  `json:"volume,omitempty"`
	TS     int64 `json:"ts,omitempty"`
}

// Validate checks that the reply names a request.
func (r Reply) Validate() error {
	if r.ID == "" || len(r.ID) > 64 {
		return fmt.Errorf("reply: id must be 1–64 bytes")
	}
	if !r.OK && r.Error == "" {
		return fmt.Errorf("reply: failure without error text")
	}
	return nil
}

// Decode parses a JSON payload into v and validates it. It is the one entry
// point for untrusted device payloads: size-bounded, and every failure wraps
// ErrMalformed.
func Decode[T interface{ Validate() error }](payload []byte) (T, error) {
	var v T
	if len(payload) > MaxJSONPayload {
		return v, fmt.Errorf("%w: %d bytes exceeds %d", ErrMalformed, len(payload), MaxJSONPayload)
	}
	if err := json.Unmarshal(payload, &v); err != nil {
		return v, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := v.Validate(); err != nil {
		return v, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return v, nil
}

// Encode marshals a payload. Payload types contain no values json.Marshal can
// reject, so an error here is a programming mistake and is returned as such.
func Encode(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	return b, nil
}
