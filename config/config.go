// Package config loads loalangd's configuration in layers: defaults, then a
// YAML file read strictly, then LOALANG_* environment variables, then flags
// (applied by the caller), then validation. Every error names the file, the
// key and the reason.
package config

import (
	"time"
)

// Config is the whole daemon configuration. The yaml tags are the key names
// in the file; the environment variable of a scalar key is LOALANG_ followed
// by its path in upper case with '.' replaced by '_' (mqtt.url is
// LOALANG_MQTT_URL).
type Config struct {
	// Role is "village" (the default, empty too) or "commune": the same
	// binary runs the commune office's server (commune.go, docs/commune.md).
	Role string `yaml:"role"`
	// Commune configures role: commune (commune.go).
	Commune Commune `yaml:"commune"`
	// CommuneCameras configures the police camera path of role: commune
	// (commune_cameras.go, docs/commune-cameras.md).
	CommuneCameras CommuneCameras `yaml:"commune_cameras"`
	// Site names this installation; it is one MQTT topic level.
	Site string `yaml:"site"`
	// DataDir holds the bbolt store, media, certificates and generated secrets.
	DataDir   string    `yaml:"data_dir"`
	HTTP      HTTP      `yaml:"http"`
	MQTT      MQTT      `yaml:"mqtt"`
	Broadcast Broadcast `yaml:"broadcast"`
	Schedule  Schedule  `yaml:"schedule"`
	Sound     Sound     `yaml:"sound"`
	WebRTC    WebRTC    `yaml:"webrtc"`
	Auth      Auth      `yaml:"auth"`
	Audit     Audit     `yaml:"audit"`
	Metrics   Metrics   `yaml:"metrics"`
	Debug     Debug     `yaml:"debug"`
	Zones     []Zone    `yaml:"zones"`
	Devices   []Device  `yaml:"devices"`
	Cameras   []Camera  `yaml:"cameras"`
	// RelayBoards lists Modbus RTU relay boards; protocol v1 drives at most one.
	RelayBoards []RelayBoard `yaml:"relay_boards"`
	// Uplink is the connection to the commune and province (uplink.go).
	Uplink Uplink `yaml:"uplink"`
}

// HTTP configures the web server.
type HTTP struct {
	// Addr is the listen address of the API and web app; port 0 picks a free port.
	Addr string `yaml:"addr"`
	// TLS enables HTTPS: with CertFile and KeyFile, or a self-signed
	// certificate generated into the data dir when both are empty.
	TLS      bool   `yaml:"tls"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// TLSAddr, when set, adds a second listener serving HTTPS with the same
	// certificate (e.g. the LAN address for phones, whose microphone needs a
	// secure context, while Addr stays plain HTTP on localhost).
	TLSAddr string `yaml:"tls_addr"`
}

// MQTT selects the broker.
type MQTT struct {
	// Listen is the address of the embedded broker, used when URL is empty.
	Listen string `yaml:"listen"`
	// URL points at an external broker (tcp://host:port); empty means embedded.
	URL string `yaml:"url"`
	// Username and PasswordFile are the daemon's credentials on an external
	// broker. With the embedded broker they are generated.
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	// PublicURL is the broker address written into the provisioning bundle
	// for devices; it defaults to the bound address.
	PublicURL string `yaml:"public_url"`
	// OfflineAfter marks a device offline when neither status nor heartbeat
	// arrived for this long, in addition to its last will.
	OfflineAfter time.Duration `yaml:"offline_after"`
}

// Broadcast configures the media pipeline and streaming.
type Broadcast struct {
	BitrateBPS      int           `yaml:"bitrate_bps"`
	PacketsPerFrame int           `yaml:"packets_per_frame"`
	PlayoutDelay    time.Duration `yaml:"playout_delay"`
	LiveDelay       time.Duration `yaml:"live_delay"`
	MaxDuration     time.Duration `yaml:"max_duration"`
	LoudnessLUFS    float64       `yaml:"loudness_lufs"`
	MaxUploadBytes  int64         `yaml:"max_upload_bytes"`
	MaxMediaLength  time.Duration `yaml:"max_media_length"`
	// PreemptPolicy is what happens to a broadcast cut by a higher priority:
	// resume or interrupt.
	PreemptPolicy string `yaml:"preempt_policy"`
	// TTSVoice is the espeak-ng voice for typed text.
	TTSVoice string `yaml:"tts_voice"`
	// TTSConcurrency bounds the espeak-ng processes running at once; each
	// takes a core for up to half a minute on 4,000 characters.
	TTSConcurrency int `yaml:"tts_concurrency"`
	// TTSQueue bounds the text-to-speech requests waiting for a free
	// espeak-ng slot; more are refused with 503 and Retry-After.
	TTSQueue int `yaml:"tts_queue"`
	// UploadQueue bounds the media uploads in flight (streaming to a
	// temporary file or waiting for the one decoder); more are refused
	// with 503 and Retry-After before their body is read.
	UploadQueue int `yaml:"upload_queue"`
}

// Schedule configures the timetable runner.
type Schedule struct {
	TimeZone string `yaml:"time_zone"`
	// Grace is how late a missed firing may still play after downtime.
	Grace time.Duration `yaml:"grace"`
	// QuietFrom and QuietTo bound quiet hours ("22:00", "05:00"); empty disables them.
	QuietFrom string `yaml:"quiet_from"`
	QuietTo   string `yaml:"quiet_to"`
	// MinInterval is the shortest gap allowed between two occurrences of a
	// recurring schedule (docs/scheduling.md); at least 1s.
	MinInterval time.Duration `yaml:"min_interval"`
	// RelayAllow lists CIDRs a relay upstream may be in although they are
	// loopback, link-local or private (e.g. the village LAN's radio
	// encoder, "192.168.1.20/32"). Public addresses are always allowed.
	RelayAllow []string `yaml:"relay_allow"`
}

// Sound configures the hall's sound card sink.
type Sound struct {
	Enabled bool `yaml:"enabled"`
	// OutputLatency is subtracted from play-at times so the amplifier's sound
	// lines up with the IP speakers.
	OutputLatency time.Duration `yaml:"output_latency"`
}

// WebRTC configures ICE for camera viewing and live speech.
type WebRTC struct {
	UDPPort            int      `yaml:"udp_port"`
	TCP                bool     `yaml:"tcp"`
	LoopbackCandidates bool     `yaml:"loopback_candidates"`
	ICEServers         []string `yaml:"ice_servers"`
	NAT1To1IPs         []string `yaml:"nat_1to1_ips"`
	MaxViewers         int      `yaml:"max_viewers"`
	MaxViewersPerCam   int      `yaml:"max_viewers_per_camera"`
	// Camera relay tuning (cameras wiring): IdleClose is how long an
	// on-demand camera keeps streaming after its last viewer left (0 means
	// the relay's default, 15 s); TURNUsername and TURNPasswordFile are the
	// credentials for turn:/turns: entries of ICEServers (RFC 8489 §9.2),
	// the secret kept out of the config file like mqtt.password_file.
	IdleClose        time.Duration `yaml:"idle_close"`
	TURNUsername     string        `yaml:"turn_username"`
	TURNPasswordFile string        `yaml:"turn_password_file"`

	// ListenIPs are the IPv4 addresses the ICE UDP port listens on; WHEP
	// and WHIP answers carry exactly these as host candidates. Empty means
	// every address (docs/cameras.md, "ICE addresses").
	ListenIPs []string `yaml:"listen_ips"`
}

// Auth configures user sessions.
type Auth struct {
	TokenTTL time.Duration `yaml:"token_ttl"`
	// LoginBurst failed logins per user or address are allowed before
	// LoginEvery throttles them.
	LoginBurst int           `yaml:"login_burst"`
	LoginEvery time.Duration `yaml:"login_every"`
}

// Audit configures the audit trail's retention (docs/security.md).
type Audit struct {
	// RetentionDays is how long entries are kept. At least 366: the trail
	// holds the play-out log, a legal record kept for 12 months.
	RetentionDays int `yaml:"retention_days"`
	// MaxBytes bounds the trail in the store. From 90% of it /healthz
	// reports the "audit" component; above it the oldest entries older than
	// 12 months are deleted, never younger ones.
	MaxBytes int64 `yaml:"max_bytes"`
	// PlayoutMaxBytes bounds the play-out log (one record per broadcast,
	// with each speaker's delivery) under the same rule: kept for
	// retention_days, oldest past 12 months dropped above the bound, never
	// younger ones (docs/operations-records.md).
	PlayoutMaxBytes int64 `yaml:"playout_max_bytes"`
}

// Metrics configures how Prometheus scrapes /metrics.
type Metrics struct {
	// TokenFile names a file holding a read-only bearer token that may
	// scrape /metrics and nothing else; empty: only an admin session may.
	// The token is never logged; it is compared in constant time.
	TokenFile string `yaml:"token_file"`
}

// AuditMinRetentionDays is the shortest audit retention: 12 months, a leap
// year included.
const AuditMinRetentionDays = 366

// Debug configures diagnostics for operators.
type Debug struct {
	// PprofAddr, when set, serves Go's net/http/pprof profiles (heap,
	// goroutines, CPU) on a listener of its own. It must be a loopback
	// address (127.0.0.1:6060, [::1]:0): profiles show internals, so they
	// are reached only from the box itself, e.g. over SSH. Empty is off.
	PprofAddr string `yaml:"pprof_addr"`
}

// Zone is a broadcast zone: IP speakers subscribe to it, or a wired line on
// the hall's relay board.
type Zone struct {
	ID   string `yaml:"id"`
	Name string `yaml:"name"`
	// Wired marks a zone fed by the hall amplifier through a relay.
	Wired bool `yaml:"wired"`
}

// Device is a provisioned IP device (speaker).
type Device struct {
	ID    string   `yaml:"id"`
	Kind  string   `yaml:"kind"`
	Name  string   `yaml:"name"`
	Zones []string `yaml:"zones"`
	Lat   float64  `yaml:"lat"`
	Lon   float64  `yaml:"lon"`
}

// Camera is an RTSP camera.
type Camera struct {
	ID   string `yaml:"id"`
	Name string `yaml:"name"`
	// URL is the RTSP URL; it may carry credentials, which are never logged.
	URL          string  `yaml:"url"`
	SubstreamURL string  `yaml:"substream_url"`
	OnDemand     *bool   `yaml:"on_demand"`
	Lat          float64 `yaml:"lat"`
	Lon          float64 `yaml:"lon"`
}

// RelayBoard is a Modbus RTU relay board on a serial port.
type RelayBoard struct {
	ID      string  `yaml:"id"`
	Name    string  `yaml:"name"`
	Port    string  `yaml:"port"`
	Baud    int     `yaml:"baud"`
	SlaveID int     `yaml:"slave_id"`
	AmpCoil int     `yaml:"amp_coil"`
	Lat     float64 `yaml:"lat"`
	Lon     float64 `yaml:"lon"`
	// ZoneCoils maps wired zone ids to coil numbers.
	ZoneCoils map[string]int `yaml:"zone_coils"`
	Warmup    time.Duration  `yaml:"warmup"`
	Tail      time.Duration  `yaml:"tail"`
	IdleOff   time.Duration  `yaml:"idle_off"`
}

// Default returns the configuration used where the file says nothing.
func Default() Config {
	return Config{
		Site:    "village",
		DataDir: "/var/lib/loalang",
		HTTP:    HTTP{Addr: "127.0.0.1:8080"},
		MQTT:    MQTT{Listen: "127.0.0.1:1883", Username: "loalangd", OfflineAfter: 90 * time.Second},
		Broadcast: Broadcast{
			BitrateBPS:      24000,
			PacketsPerFrame: 4,
			PlayoutDelay:    500 * time.Millisecond,
			LiveDelay:       250 * time.Millisecond,
			MaxDuration:     30 * time.Minute,
			LoudnessLUFS:    -16,
			MaxUploadBytes:  20 << 20,
			MaxMediaLength:  15 * time.Minute,
			PreemptPolicy:   "resume",
			TTSVoice:        "vi",
			TTSConcurrency:  1,
			TTSQueue:        4,
			UploadQueue:     4,
		},
		Schedule: Schedule{TimeZone: "Asia/Ho_Chi_Minh", Grace: 5 * time.Minute, MinInterval: 5 * time.Minute},
		Sound:    Sound{Enabled: false, OutputLatency: 100 * time.Millisecond},
		WebRTC:   WebRTC{UDPPort: 8189, MaxViewers: 50, MaxViewersPerCam: 10},
		Auth:     Auth{TokenTTL: 12 * time.Hour, LoginBurst: 5, LoginEvery: 10 * time.Second},
		Audit:    Audit{RetentionDays: 400, MaxBytes: 512 << 20, PlayoutMaxBytes: 256 << 20},
	}
}
