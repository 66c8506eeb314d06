// Package device is the domain of the village's IP devices: what is
// provisioned, which zones they are in, whether they are online (presence
// from retained status, last wills and heartbeats) and commands with
// request ids and expiry.
package device

import (
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/loalang/loalang/device/wire"
)

// Device is a provisioned device.
type Device struct {
	ID    string   `json:"id"`
	Kind  string   `json:"kind"`
	Name  string   `json:"name"`
	Zones []string `json:"zones"`
	Lat   float64  `json:"lat"`
	Lon   float64  `json:"lon"`
}

// State is a device with its live presence and telemetry.
type State struct {
	Device
	Online    bool      `json:"online"`
	LastSeen  time.Time `json:"last_seen,omitzero"`
	Firmware  string    `json:"firmware"`
	Volume    int       `json:"volume"`
	UptimeS   int64     `json:"uptime_s"`
	SignalDBm int       `json:"signal_dbm"`
}

// Change is a presence transition, for the audit trail and metrics.
type Change struct {
	ID     string
	Kind   string
	Online bool
	At     time.Time
	// Reason is "status", "will" or "silent" (no message for OfflineAfter).
	Reason string
}

// Registry tracks presence. It is safe for concurrent use; OnChange is
// called without the lock held, in the order transitions happen.
type Registry struct {
	offlineAfter time.Duration
	now          func() time.Time
	onChange     func(Change)

	mu     sync.Mutex
	states map[string]*State
	zones  map[string]bool
}

// NewRegistry returns a registry of the given devices and zones, all
// offline until they speak.
func NewRegistry(devices []Device, zones []string, offlineAfter time.Duration, now func() time.Time, onChange func(Change)) *Registry {
	r := &Registry{offlineAfter: offlineAfter, now: now, onChange: onChange, states: map[string]*State{}, zones: map[string]bool{}}
	for _, z := range zones {
		r.zones[z] = true
	}
	for _, d := range devices {
		r.states[d.ID] = &State{Device: d}
	}
	return r
}

func (r *Registry) transition(s *State, online bool, reason string) *Change {
	if s.Online == online {
		return nil
	}
	s.Online = online
	return &Change{ID: s.ID, Kind: s.Kind, Online: online, At: r.now(), Reason: reason}
}

func (r *Registry) update(id string, fn func(s *State) *Change) bool {
	r.mu.Lock()
	s, ok := r.states[id]
	var c *Change
	if ok {
		c = fn(s)
	}
	r.mu.Unlock()
	if c != nil && r.onChange != nil {
		r.onChange(*c)
	}
	return ok
}

// HandleStatus applies a retained status or last will. It reports false for
// an unknown device.
func (r *Registry) HandleStatus(id string, st wire.Status) bool {
	return r.update(id, func(s *State) *Change {
		online := st.State == wire.StateOnline
		reason := "status"
		if online {
			s.LastSeen = r.now()
			if st.Firmware != "" {
				s.Firmware = st.Firmware
			}
		} else if st.TS == 0 {
			reason = "will"
		}
		return r.transition(s, online, reason)
	})
}

// HandleHeartbeat applies telemetry; a heartbeat also proves presence.
func (r *Registry) HandleHeartbeat(id string, hb wire.Heartbeat) bool {
	return r.update(id, func(s *State) *Change {
		s.LastSeen = r.now()
		s.Firmware, s.Volume, s.UptimeS, s.SignalDBm = hb.Firmware, hb.Volume, hb.UptimeS, hb.SignalDBm
		return r.transition(s, true, "heartbeat")
	})
}

// Sweep marks devices offline that have been silent for OfflineAfter, for
// brokers that lose a last will (or a device whose link is half-open).
func (r *Registry) Sweep() {
	r.mu.Lock()
	var changes []Change
	now := r.now()
	for _, s := range r.states {
		if s.Online && now.Sub(s.LastSeen) > r.offlineAfter {
			if c := r.transition(s, false, "silent"); c != nil {
				changes = append(changes, *c)
			}
		}
	}
	r.mu.Unlock()
	for _, c := range changes {
		if r.onChange != nil {
			r.onChange(c)
		}
	}
}

// List returns every device's state, by id.
func (r *Registry) List() []State {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]State, 0, len(r.states))
	for _, s := range r.states {
		c := *s
		c.Zones = slices.Clone(s.Zones)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Get returns one device's state.
func (r *Registry) Get(id string) (State, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.states[id]
	if !ok {
		return State{}, false
	}
	return *s, true
}

// Online reports whether a device is online.
func (r *Registry) Online(id string) bool {
	s, ok := r.Get(id)
	return ok && s.Online
}

// ZoneExists reports whether zone is configured.
func (r *Registry) ZoneExists(zone string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.zones[zone]
}

// Members returns the ids of speakers in any of zones, sorted.
func (r *Registry) Members(zones []string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for id, s := range r.states {
		for _, z := range s.Zones {
			if slices.Contains(zones, z) {
				out = append(out, id)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

// CountOnline returns the number of online devices per kind.
func (r *Registry) CountOnline() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for _, s := range r.states {
		if _, ok := out[s.Kind]; !ok {
			out[s.Kind] = 0
		}
		if s.Online {
			out[s.Kind]++
		}
	}
	return out
}
