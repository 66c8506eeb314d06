package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/internal/egress"
)

// Validate checks values and cross-references. The returned *Error names the
// key; its File is filled in by Load.
func (c *Config) Validate() error {
	bad := func(key, format string, args ...any) error {
		return &Error{Key: key, Reason: fmt.Sprintf(format, args...)}
	}
	switch c.Role {
	case "", RoleVillage:
	case RoleCommune:
		return c.validateCommune()
	default:
		return bad("role", "%q is not village or commune", c.Role)
	}
	if err := wire.ValidLevel(c.Site); err != nil {
		return bad("site", "%v", err)
	}
	if c.DataDir == "" {
		return bad("data_dir", "must not be empty")
	}
	if err := hostPort(c.HTTP.Addr); err != nil {
		return bad("http.addr", "%v", err)
	}
	if c.HTTP.TLSAddr != "" {
		if err := hostPort(c.HTTP.TLSAddr); err != nil {
			return bad("http.tls_addr", "%v", err)
		}
	}
	if (c.HTTP.CertFile == "") != (c.HTTP.KeyFile == "") {
		return bad("http.cert_file", "cert_file and key_file go together")
	}
	if c.MQTT.URL == "" {
		if err := hostPort(c.MQTT.Listen); err != nil {
			return bad("mqtt.listen", "%v", err)
		}
	} else {
		u, err := url.Parse(c.MQTT.URL)
		if err != nil || (u.Scheme != "tcp" && u.Scheme != "mqtt" && u.Scheme != "ssl" && u.Scheme != "tls") || u.Host == "" {
			return bad("mqtt.url", "%q is not a broker URL such as tcp://127.0.0.1:1883", c.MQTT.URL)
		}
		if c.MQTT.PasswordFile == "" {
			return bad("mqtt.password_file", "required with an external broker (see `loalangd mosquitto-config`)")
		}
	}
	if c.Debug.PprofAddr != "" {
		if err := loopback(c.Debug.PprofAddr); err != nil {
			return bad("debug.pprof_addr", "%v", err)
		}
	}
	if c.MQTT.OfflineAfter < time.Second {
		return bad("mqtt.offline_after", "must be at least 1s")
	}
	b := c.Broadcast
	switch {
	case b.BitrateBPS < 6000 || b.BitrateBPS > 128000:
		return bad("broadcast.bitrate_bps", "%d outside 6000–128000 (Opus, RFC 6716 §2.1.1)", b.BitrateBPS)
	case b.PacketsPerFrame < 1 || b.PacketsPerFrame > wire.MaxPacketsPerFrame:
		return bad("broadcast.packets_per_frame", "%d outside 1–%d", b.PacketsPerFrame, wire.MaxPacketsPerFrame)
	case b.PlayoutDelay < 0 || b.PlayoutDelay > 10*time.Second:
		return bad("broadcast.playout_delay", "%v outside 0–10s", b.PlayoutDelay)
	case b.LiveDelay < 0 || b.LiveDelay > 10*time.Second:
		return bad("broadcast.live_delay", "%v outside 0–10s", b.LiveDelay)
	case b.MaxDuration < time.Second:
		return bad("broadcast.max_duration", "must be at least 1s")
	case b.LoudnessLUFS < -40 || b.LoudnessLUFS > -5:
		return bad("broadcast.loudness_lufs", "%v outside -40–-5", b.LoudnessLUFS)
	case b.MaxUploadBytes < 1024:
		return bad("broadcast.max_upload_bytes", "must be at least 1024")
	case b.MaxMediaLength < time.Second:
		return bad("broadcast.max_media_length", "must be at least 1s")
	case b.PreemptPolicy != "resume" && b.PreemptPolicy != "interrupt":
		return bad("broadcast.preempt_policy", "%q is not resume or interrupt", b.PreemptPolicy)
	case b.TTSConcurrency < 1 || b.TTSConcurrency > 16:
		return bad("broadcast.tts_concurrency", "%d outside 1–16", b.TTSConcurrency)
	case b.TTSQueue < 0 || b.TTSQueue > 1000:
		return bad("broadcast.tts_queue", "%d outside 0–1000", b.TTSQueue)
	case b.UploadQueue < 1 || b.UploadQueue > 100:
		return bad("broadcast.upload_queue", "%d outside 1–100", b.UploadQueue)
	}
	if c.Schedule.MinInterval < time.Second {
		return bad("schedule.min_interval", "must be at least 1s")
	}
	if _, err := egress.ParsePolicy("schedule.relay_allow", c.Schedule.RelayAllow); err != nil {
		return &Error{Key: "schedule.relay_allow", Reason: strings.TrimPrefix(err.Error(), "schedule.relay_allow")}
	}
	if _, err := time.LoadLocation(c.Schedule.TimeZone); err != nil {
		return bad("schedule.time_zone", "unknown time zone %q", c.Schedule.TimeZone)
	}
	if (c.Schedule.QuietFrom == "") != (c.Schedule.QuietTo == "") {
		return bad("schedule.quiet_from", "quiet_from and quiet_to go together")
	}
	for _, k := range []struct{ key, v string }{{"schedule.quiet_from", c.Schedule.QuietFrom}, {"schedule.quiet_to", c.Schedule.QuietTo}} {
		if k.v != "" {
			if _, err := time.Parse("15:04", k.v); err != nil {
				return bad(k.key, "%q is not a time of day such as 22:00", k.v)
			}
		}
	}
	if err := validateWebRTC(c.WebRTC); err != nil {
		return err
	}
	if c.Auth.LoginBurst < 1 {
		return bad("auth.login_burst", "must be at least 1")
	}
	if c.Audit.RetentionDays < AuditMinRetentionDays {
		return bad("audit.retention_days", "%d is less than %d: the audit trail holds the play-out log, a legal record kept for 12 months", c.Audit.RetentionDays, AuditMinRetentionDays)
	}
	if c.Audit.MaxBytes < 1<<20 {
		return bad("audit.max_bytes", "must be at least 1048576 (1 MiB)")
	}
	if c.Audit.PlayoutMaxBytes < 1<<20 {
		return bad("audit.playout_max_bytes", "must be at least 1048576 (1 MiB)")
	}
	zones := map[string]Zone{}
	for i, z := range c.Zones {
		key := fmt.Sprintf("zones[%d].id", i)
		if err := wire.ValidLevel(z.ID); err != nil {
			return bad(key, "%v", err)
		}
		if _, dup := zones[z.ID]; dup {
			return bad(key, "duplicate zone %q", z.ID)
		}
		zones[z.ID] = z
	}
	ids := map[string]bool{}
	checkID := func(key, id string) error {
		if err := wire.ValidLevel(id); err != nil {
			return bad(key, "%v", err)
		}
		if ids[id] || id == c.MQTT.Username {
			return bad(key, "duplicate id %q", id)
		}
		ids[id] = true
		return nil
	}
	for i, d := range c.Devices {
		if err := checkID(fmt.Sprintf("devices[%d].id", i), d.ID); err != nil {
			return err
		}
		if d.Kind != wire.KindSpeaker {
			return bad(fmt.Sprintf("devices[%d].kind", i), "%q is not a device kind over MQTT (speaker); cameras and relay boards have their own sections", d.Kind)
		}
		if len(d.Zones) == 0 {
			return bad(fmt.Sprintf("devices[%d].zones", i), "a speaker needs at least one zone")
		}
		for _, z := range d.Zones {
			zc, ok := zones[z]
			if !ok {
				return bad(fmt.Sprintf("devices[%d].zones", i), "unknown zone %q", z)
			}
			if zc.Wired {
				return bad(fmt.Sprintf("devices[%d].zones", i), "zone %q is wired (relay board), not for IP speakers", z)
			}
		}
		if err := latLon(d.Lat, d.Lon); err != nil {
			return bad(fmt.Sprintf("devices[%d].lat", i), "%v", err)
		}
	}
	for i, cam := range c.Cameras {
		if err := checkID(fmt.Sprintf("cameras[%d].id", i), cam.ID); err != nil {
			return err
		}
		for _, u := range []struct{ key, v string }{{"url", cam.URL}, {"substream_url", cam.SubstreamURL}} {
			if u.v == "" && u.key == "substream_url" {
				continue
			}
			pu, err := url.Parse(u.v)
			if err != nil || (pu.Scheme != "rtsp" && pu.Scheme != "rtsps") || pu.Host == "" {
				// The value may hold credentials: never echo it.
				return bad(fmt.Sprintf("cameras[%d].%s", i, u.key), "not an rtsp:// URL")
			}
		}
	}
	if len(c.RelayBoards) > 1 {
		return bad("relay_boards", "at most one relay board is supported")
	}
	for i, rb := range c.RelayBoards {
		if err := checkID(fmt.Sprintf("relay_boards[%d].id", i), rb.ID); err != nil {
			return err
		}
		if rb.Port == "" {
			return bad(fmt.Sprintf("relay_boards[%d].port", i), "must name a serial device")
		}
		if rb.SlaveID < 1 || rb.SlaveID > 247 {
			return bad(fmt.Sprintf("relay_boards[%d].slave_id", i), "%d outside 1–247 (Modbus over Serial Line §2.2)", rb.SlaveID)
		}
		for z, coil := range rb.ZoneCoils {
			if zc, ok := zones[z]; !ok || !zc.Wired {
				return bad(fmt.Sprintf("relay_boards[%d].zone_coils.%s", i, z), "not a wired zone")
			}
			if coil < 0 || coil > 0xFFFF || coil == rb.AmpCoil {
				return bad(fmt.Sprintf("relay_boards[%d].zone_coils.%s", i, z), "coil %d invalid or the amplifier's", coil)
			}
		}
	}
	if err := c.Uplink.validate(); err != nil {
		return err
	}
	return nil
}

func hostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if strings.ContainsAny(host, " /") || port == "" {
		return fmt.Errorf("%q is not host:port", addr)
	}
	return nil
}

// loopback accepts host:port whose host is a loopback address or
// "localhost".
func loopback(addr string) error {
	if err := hostPort(addr); err != nil {
		return err
	}
	host, _, _ := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%q is not a loopback address (127.0.0.1 or [::1]): profiles are for this box only", addr)
	}
	return nil
}

func latLon(lat, lon float64) error {
	if lat < -90 || lat > 90 || lon < -180 || lon > 180 {
		return fmt.Errorf("lat/lon %v,%v out of range", lat, lon)
	}
	return nil
}

// WiredZones returns the ids of zones fed by the relay board.
func (c *Config) WiredZones() []string {
	var out []string
	for _, z := range c.Zones {
		if z.Wired {
			out = append(out, z.ID)
		}
	}
	return out
}

// validateWebRTC checks the webrtc section's ICE settings, which serve the
// village's camera relay and live speech and the commune's live speech.
func validateWebRTC(w WebRTC) error {
	if w.UDPPort < 0 || w.UDPPort > 65535 {
		return &Error{Key: "webrtc.udp_port", Reason: fmt.Sprintf("%d is not a port", w.UDPPort)}
	}
	if key, reason := validICEAddrs(w); key != "" {
		return &Error{Key: key, Reason: reason}
	}
	return nil
}

// validICEAddrs checks webrtc.listen_ips (literal IPv4 addresses, not
// 0.0.0.0, no duplicates) and webrtc.nat_1to1_ips ("external" or
// "external/local" IPv4 entries, one form only). It returns the bad key.
func validICEAddrs(w WebRTC) (key, reason string) {
	seen := map[netip.Addr]bool{}
	for i, s := range w.ListenIPs {
		key := fmt.Sprintf("webrtc.listen_ips[%d]", i)
		a, err := netip.ParseAddr(s)
		switch {
		case err != nil || !a.Is4():
			return key, fmt.Sprintf("%q is not an IPv4 address (ICE runs on UDP4)", s)
		case a.IsUnspecified():
			return key, "0.0.0.0 is what an empty list means; list the addresses viewers reach"
		case seen[a]:
			return key, fmt.Sprintf("%s is listed twice", s)
		}
		seen[a] = true
	}
	paired := 0
	for i, s := range w.NAT1To1IPs {
		key := fmt.Sprintf("webrtc.nat_1to1_ips[%d]", i)
		ext, local, ok := strings.Cut(s, "/")
		if a, err := netip.ParseAddr(ext); err != nil || !a.Is4() {
			return key, fmt.Sprintf("%q is not an IPv4 address or external/local pair", s)
		}
		if ok {
			paired++
			if a, err := netip.ParseAddr(local); err != nil || !a.Is4() {
				return key, fmt.Sprintf("local address %q of %q is not IPv4", local, s)
			}
		}
	}
	if paired > 0 && paired < len(w.NAT1To1IPs) {
		return "webrtc.nat_1to1_ips", "mixes \"external\" and \"external/local\" entries: use one form"
	}
	return "", ""
}
