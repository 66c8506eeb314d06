// Package audit holds the audit trail's entry and the one list of actions
// it records. Services build entries; the store bounds and keeps them
// (store.AppendAudit), in the same transaction as the change they record
// wherever there is one.
package audit

import "time"

// Action names what an entry records, as "<subject>.<verb>". The names are
// part of the API (/api/v1/audit, CSV exports) and of the uplink's events:
// renaming one is a breaking change.
type Action string

// Entry is one entry of the audit trail: logins, device state changes,
// broadcasts, schedule changes, camera views.
type Entry struct {
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Action Action    `json:"action"`
	Target string    `json:"target,omitempty"`
	// Detail holds action-specific facts; it never contains secrets.
	Detail map[string]any `json:"detail,omitempty"`
}

// Sign-in and accounts.
const (
	Login          Action = "login"
	LoginFailed    Action = "login.failed"
	LoginThrottled Action = "login.throttled"
	Logout         Action = "logout"
	UserCreate     Action = "user.create"
	UserUpdate     Action = "user.update"
	UserDelete     Action = "user.delete"
)

// Devices.
const (
	DeviceOnline    Action = "device.online"
	DeviceOffline   Action = "device.offline"
	DeviceProvision Action = "device.provision"
	DeviceReissue   Action = "device.reissue"
	DeviceVolume    Action = "device.volume"
)

// The media library.
const (
	MediaUpload Action = "media.upload"
	MediaUpdate Action = "media.update"
	MediaDelete Action = "media.delete"
)

// Timetable changes; the trigger's outcomes are ScheduleOutcome's.
const (
	ScheduleCreate   Action = "schedule.create"
	ScheduleUpdate   Action = "schedule.update"
	ScheduleDelete   Action = "schedule.delete"
	ScheduleRelayGap Action = "schedule.relay_gap"
)

// Broadcasts requested by hand; the engine's state changes are
// BroadcastState's.
const (
	BroadcastStop    Action = "broadcast.stop"
	BroadcastStopAll Action = "broadcast.stop_all"
	LiveStart        Action = "live.start"
	LiveEnd          Action = "live.end"
	LiveHangup       Action = "live.hangup"
)

// Cameras.
const (
	CameraCreate Action = "camera.create"
	CameraUpdate Action = "camera.update"
	CameraDelete Action = "camera.delete"
	CameraView   Action = "camera.view"
)

// The uplink: a bulletin the village head submitted to the commune.
const (
	UplinkDraft Action = "uplink.draft"
)

// The store.
const (
	StoreReinit Action = "store.reinit"
)

// BroadcastState is the action recording a broadcast's passage into state
// ("broadcast.playing", "broadcast.done", …).
func BroadcastState(state string) Action { return Action("broadcast." + state) }

// ScheduleOutcome is the action recording a schedule occurrence's outcome
// ("schedule.fired", "schedule.skipped_quiet", …).
func ScheduleOutcome(outcome string) Action { return Action("schedule." + outcome) }
