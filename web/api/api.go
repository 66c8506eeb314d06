// Package api holds the JSON types of loalangd's HTTP API (/api/v1), shared
// by the server (package web) and its clients (cmd/loalang), so that the two
// cannot drift apart. It imports only the standard library and domain
// packages, so a client does not link the server.
//
// Types the server takes from elsewhere (the audit event of the store, the
// media item of the library, the schedule view) are mirrored here, and
// api_test.go checks that every field a mirror declares exists in its
// source with the same JSON name.
package api

import (
	"time"

	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/broadcast"
	"github.com/loalang/loalang/broadcast/schedule"
	"github.com/loalang/loalang/health"
)

// Error is the body of every non-2xx answer. Field names the request field
// at fault, when there is one.
type Error struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// LoginRequest is the body of POST /api/v1/login.
type LoginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// LoginResponse is the answer of POST /api/v1/login: a bearer token.
type LoginResponse struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
}

// User is a user as the API shows it: never the password hash.
type User struct {
	Username  string    `json:"username"`
	Role      auth.Role `json:"role"`
	Cameras   []string  `json:"cameras,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// UserRequest is the body of POST /api/v1/users.
type UserRequest struct {
	Username string    `json:"username"`
	Password string    `json:"password"`
	Role     auth.Role `json:"role"`
	Cameras  []string  `json:"cameras"`
}

// UserUpdate is the body of PUT /api/v1/users/{username}: an absent field
// keeps its value; a password resets it and ends the user's sessions.
type UserUpdate struct {
	Password *string    `json:"password,omitempty"`
	Role     *auth.Role `json:"role,omitempty"`
	Cameras  *[]string  `json:"cameras,omitempty"`
}

// PasswordChange is the body of PUT /api/v1/me/password.
type PasswordChange struct {
	Old string `json:"old_password"`
	New string `json:"new_password"`
}

// Device is a device as GET /api/v1/devices shows it.
type Device struct {
	ID        string     `json:"id"`
	Kind      string     `json:"kind"`
	Name      string     `json:"name"`
	Zones     []string   `json:"zones"`
	Online    bool       `json:"online"`
	LastSeen  *time.Time `json:"last_seen"`
	Firmware  string     `json:"firmware"`
	Volume    int        `json:"volume"`
	UptimeS   int64      `json:"uptime_s"`
	SignalDBm int        `json:"signal_dbm"`
	Lat       float64    `json:"lat"`
	Lon       float64    `json:"lon"`
}

// PingResponse is the answer of POST /api/v1/devices/{id}/ping.
type PingResponse struct {
	ID    string  `json:"id"`
	RTTMS float64 `json:"rtt_ms"`
}

// VolumeRequest is the body of POST /api/v1/devices/{id}/volume (0–100).
type VolumeRequest struct {
	Volume int `json:"volume"`
}

// VolumeResponse is its answer: the volume the device reports.
type VolumeResponse struct {
	ID     string `json:"id"`
	Volume int    `json:"volume"`
}

// Camera is a camera as the API shows it. URL is the redacted main stream
// URL, for admins only.
type Camera struct {
	ID        string  `json:"id"`
	Name      string  `json:"name"`
	URL       string  `json:"url,omitempty"`
	HasSecret bool    `json:"has_secret,omitempty"`
	OnDemand  bool    `json:"on_demand"`
	Substream bool    `json:"substream"`
	State     string  `json:"state"`
	Reason    string  `json:"reason,omitempty"`
	Codec     string  `json:"codec,omitempty"`
	Width     int     `json:"width,omitempty"`
	Height    int     `json:"height,omitempty"`
	FPS       float64 `json:"fps"`
	Bitrate   float64 `json:"bitrate"`
	Viewers   int     `json:"viewers"`
}

// CameraRequest is the body of POST and PUT /api/v1/cameras; on PUT an
// absent field keeps its value. Username and password are write-only.
type CameraRequest struct {
	ID           string  `json:"id"`
	Name         *string `json:"name"`
	URL          *string `json:"url"`
	SubstreamURL *string `json:"substream_url"`
	Username     *string `json:"username"`
	Password     *string `json:"password"`
	OnDemand     *bool   `json:"on_demand"`
}

// Hall is the answer of GET /api/v1/hall: the sound card and the relay
// board.
type Hall struct {
	Sink struct {
		Configured bool   `json:"configured"`
		OK         bool   `json:"ok"`
		Reason     string `json:"reason,omitempty"`
		Playing    bool   `json:"playing"`
	} `json:"sink"`
	Board struct {
		Configured bool            `json:"configured"`
		Port       string          `json:"port,omitempty"`
		OK         bool            `json:"ok"`
		Alarm      bool            `json:"alarm"`
		Reason     string          `json:"reason,omitempty"`
		Since      time.Time       `json:"since,omitzero"`
		Faults     uint64          `json:"faults"`
		Coils      map[string]bool `json:"coils,omitempty"`
	} `json:"board"`
}

// AuditEvent is one entry of GET /api/v1/audit (store.Event).
type AuditEvent struct {
	Time   time.Time      `json:"time"`
	Actor  string         `json:"actor"`
	Action string         `json:"action"`
	Target string         `json:"target,omitempty"`
	Detail map[string]any `json:"detail,omitempty"`
}

// Media is a stored media item (media.Info), as POST and GET
// /api/v1/media show it.
type Media struct {
	ID           string  `json:"id"`
	SourceName   string  `json:"source_name"`
	SourceSHA256 string  `json:"source_sha256"`
	Codec        string  `json:"codec"`
	SampleRate   int     `json:"sample_rate"`
	Bitrate      int     `json:"bitrate"`
	DurationMS   int64   `json:"duration_ms"`
	LoudnessLUFS float64 `json:"loudness_lufs"`
	GainDB       float64 `json:"gain_db"`
}

// BroadcastRequest is the body of POST /api/v1/broadcasts: exactly one of
// MediaID and Text.
type BroadcastRequest struct {
	MediaID  string   `json:"media_id,omitempty"`
	Text     string   `json:"text,omitempty"`
	Zones    []string `json:"zones"`
	Priority string   `json:"priority,omitempty"`
	Volume   int      `json:"volume,omitempty"`
}

// Broadcast is a broadcast with its per-device delivery.
type Broadcast = broadcast.Broadcast

// StopAllResponse is the answer of POST /api/v1/broadcasts/stop-all.
type StopAllResponse struct {
	Stopped int `json:"stopped"`
}

// Schedule is a schedule as /api/v1/schedules shows and takes it
// (web.ScheduleView).
type Schedule struct {
	ID        string         `json:"id"`
	Name      string         `json:"name"`
	At        string         `json:"at,omitempty"`
	RRule     string         `json:"rrule,omitempty"`
	Cron      string         `json:"cron,omitempty"`
	TimeZone  string         `json:"time_zone,omitempty"`
	From      string         `json:"from,omitempty"`
	Until     string         `json:"until,omitempty"`
	Zones     []string       `json:"zones"`
	Source    ScheduleSource `json:"source"`
	Priority  string         `json:"priority,omitempty"`
	Volume    int            `json:"volume"`
	Repeat    int            `json:"repeat,omitempty"`
	Chime     bool           `json:"chime,omitempty"`
	Enabled   *bool          `json:"enabled,omitempty"`
	Version   int            `json:"version,omitempty"`
	CreatedBy string         `json:"created_by,omitempty"`
	CreatedAt string         `json:"created_at,omitempty"`
	UpdatedAt string         `json:"updated_at,omitempty"`
	Next      string         `json:"next,omitempty"`
}

// ScheduleSource is what a schedule plays (web.SourceView); Duration is a
// Go duration string for relays.
type ScheduleSource struct {
	Kind     string `json:"kind"`
	MediaID  string `json:"media_id,omitempty"`
	Text     string `json:"text,omitempty"`
	URL      string `json:"url,omitempty"`
	Duration string `json:"duration,omitempty"`
}

// ScheduleNext is the answer of GET /api/v1/schedules/{id}/next.
type ScheduleNext struct {
	ID       string   `json:"id"`
	Enabled  bool     `json:"enabled"`
	TimeZone string   `json:"time_zone"`
	Next     []string `json:"next"`
}

// Firing is one entry of GET /api/v1/schedules/{id}/firings.
type Firing = schedule.Firing

// Health is the body of GET /healthz when a part is down (503); a healthy
// daemon answers 200 with the text "ok".
type Health struct {
	Status   string           `json:"status"`
	Problems []health.Problem `json:"problems"`
}

// UplinkDraft is the body of POST /api/v1/uplink/drafts: a bulletin a
// village head submits to the commune. It goes up as a "draft" event and
// never plays by itself; the commune's editor and approver decide.
type UplinkDraft struct {
	Title   string   `json:"title"`
	Text    string   `json:"text"`
	Urgency string   `json:"urgency"`
	Zones   []string `json:"zones,omitempty"`
}

// SubmittedDraft is one entry of GET /api/v1/uplink/drafts: a draft this
// village submitted and how far it got. Status is "queued" (in the
// uplink's outbox), "sent" (the upstream broker acknowledged it at Sent)
// or "dropped" (the full outbox dropped it unsent). The commune's
// decision is not known here.
type SubmittedDraft struct {
	ID        string    `json:"id"`
	Title     string    `json:"title"`
	Text      string    `json:"text"`
	Urgency   string    `json:"urgency"`
	Zones     []string  `json:"zones,omitempty"`
	Author    string    `json:"author"`
	Submitted time.Time `json:"submitted"`
	Status    string    `json:"status"`
	Sent      time.Time `json:"sent,omitzero"`
}
