package uplink

import "time"

// Event kinds besides "audit", "device", "health" and "command".
const (
	// KindState is a snapshot of the village's devices and running
	// broadcasts, sent whenever it changes (StateData).
	KindState = "state"
	// KindDraft is a bulletin a village head submits to the commune for
	// editing and approval (DraftData).
	KindDraft = "draft"
)

// StateData is a "state" event's data.
type StateData struct {
	Devices    []DeviceState      `json:"devices"`
	Broadcasts []RunningBroadcast `json:"broadcasts"`
}

// DeviceState is one device in a state snapshot.
type DeviceState struct {
	ID     string   `json:"id"`
	Kind   string   `json:"kind"`
	Zones  []string `json:"zones"`
	Online bool     `json:"online"`
}

// RunningBroadcast is a broadcast not yet in a final state.
type RunningBroadcast struct {
	ID       string    `json:"id"`
	State    string    `json:"state"`
	Zones    []string  `json:"zones"`
	Priority string    `json:"priority"`
	Origin   string    `json:"origin"`
	Actor    string    `json:"actor,omitempty"`
	Started  time.Time `json:"started,omitzero"`
}

// DraftData is a "draft" event's data: a village head's bulletin for the
// commune's editor and approver. It never plays by itself.
type DraftData struct {
	// ID is unique in the village (the commune keys it by site and id).
	ID      string    `json:"id"`
	Author  string    `json:"author"`
	Title   string    `json:"title"`
	Text    string    `json:"text"`
	Urgency string    `json:"urgency"`
	Zones   []string  `json:"zones,omitempty"`
	Created time.Time `json:"created"`
}
