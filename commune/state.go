package commune

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/uplink"
)

// Village is what the commune knows of one village, built only from its
// uplink events and presence, and kept in the commune's bbolt file.
type Village struct {
	Site string `json:"site"`
	// Presence is "online" or "offline" from the uplink's presence topic
	// (the will says offline), "" before anything was heard.
	Presence   string    `json:"presence"`
	PresenceAt time.Time `json:"presence_at,omitzero"`
	// LastHeard is when the commune last received an event from it, and
	// LastEvent the newest event's own time (the village's clock).
	LastHeard time.Time `json:"last_heard,omitzero"`
	LastEvent time.Time `json:"last_event,omitzero"`
	Events    uint64    `json:"events"`
	// StateSeq and HealthSeq are the seq of the snapshot kept, so that a
	// late copy of an older one never overwrites a newer one.
	StateSeq   uint64                    `json:"state_seq"`
	HealthSeq  uint64                    `json:"health_seq"`
	Devices    []uplink.DeviceState      `json:"devices"`
	Broadcasts []uplink.RunningBroadcast `json:"broadcasts"`
	Alarms     []Alarm                   `json:"alarms"`
	// Delivery sums the per-speaker delivery of every broadcast the
	// village reported ended.
	Delivery Totals `json:"delivery"`
	// Starts keeps when each running broadcast began playing, for air
	// time.
	Starts map[string]time.Time `json:"starts,omitempty"`
}

// Alarm is one of a village's /healthz problems.
type Alarm struct {
	Component string    `json:"component"`
	Reason    string    `json:"reason"`
	Since     time.Time `json:"since,omitzero"`
}

// Totals are delivery and air-time counters.
type Totals struct {
	Broadcasts     int     `json:"broadcasts"`
	AirSeconds     float64 `json:"air_seconds"`
	Speakers       uint64  `json:"speakers"`
	FramesExpected uint64  `json:"frames_expected"`
	FramesPlayed   uint64  `json:"frames_played"`
	FramesLate     uint64  `json:"frames_late"`
	FramesLost     uint64  `json:"frames_lost"`
}

// Ratio is frames played over frames expected, 0 without any.
func (t Totals) Ratio() float64 {
	if t.FramesExpected == 0 {
		return 0
	}
	return float64(t.FramesPlayed) / float64(t.FramesExpected)
}

func (t *Totals) add(o Totals) {
	t.Broadcasts += o.Broadcasts
	t.AirSeconds += o.AirSeconds
	t.Speakers += o.Speakers
	t.FramesExpected += o.FramesExpected
	t.FramesPlayed += o.FramesPlayed
	t.FramesLate += o.FramesLate
	t.FramesLost += o.FramesLost
}

var bMonths = []byte("months") // site/YYYY-MM → Totals

func init() { allBuckets = append(allBuckets, bMonths) }

// maxPayload bounds an event the commune accepts.
const maxPayload = 256 << 10

// onEvent ingests one village event: de-duplicated by id (an event may
// arrive twice, docs/protocol.md), then applied in one transaction with
// the de-duplication mark, so a crash never applies an event twice or
// loses one the broker delivered (paho acknowledges after the handler).
func (s *Server) onEvent(site string, payload []byte) {
	if wire.ValidLevel(site) != nil || len(payload) > maxPayload {
		s.log.Warn("dropped village event", "site", site, "bytes", len(payload))
		return
	}
	var ev uplink.Event
	if err := json.Unmarshal(payload, &ev); err != nil || ev.ID == "" {
		s.log.Warn("dropped malformed village event", "site", site, "err", err)
		return
	}
	if ev.Site != site || ev.Commune != s.cfg.Commune.ID || ev.Province != s.cfg.Commune.Province {
		s.log.Warn("dropped village event for another place", "topic_site", site, "site", ev.Site, "commune", ev.Commune)
		return
	}
	now := s.now().UTC()
	err := s.db.bolt.Update(func(tx *bolt.Tx) error {
		seenKey := site + "/" + ev.ID
		if tx.Bucket(bSeen).Get([]byte(seenKey)) != nil {
			return errDuplicate
		}
		if err := put(tx, bSeen, seenKey, now); err != nil {
			return err
		}
		v := s.village(tx, site)
		v.LastHeard = now
		if ev.Time.After(v.LastEvent) {
			v.LastEvent = ev.Time
		}
		v.Events++
		if err := s.apply(tx, &v, ev); err != nil {
			return err
		}
		return put(tx, bVillages, site, v)
	})
	if errors.Is(err, errDuplicate) {
		return
	}
	if err != nil {
		s.log.Error("village event not stored", "site", site, "id", ev.ID, "err", err)
	}
}

var errDuplicate = errors.New("duplicate")

// village reads a village's record, or a new one.
func (s *Server) village(tx *bolt.Tx, site string) Village {
	var v Village
	if err := get(tx, bVillages, site, &v); err != nil {
		v = Village{Site: site}
	}
	return v
}

// apply updates v (and the month and delivery buckets) with one event.
func (s *Server) apply(tx *bolt.Tx, v *Village, ev uplink.Event) error {
	switch ev.Kind {
	case uplink.KindState:
		if ev.Seq < v.StateSeq {
			return nil
		}
		var st uplink.StateData
		if err := json.Unmarshal(ev.Data, &st); err != nil {
			return nil
		}
		v.StateSeq, v.Devices, v.Broadcasts = ev.Seq, st.Devices, st.Broadcasts
	case "health":
		if ev.Seq < v.HealthSeq {
			return nil
		}
		var h struct{ Problems []Alarm }
		if err := json.Unmarshal(ev.Data, &h); err != nil {
			return nil
		}
		v.HealthSeq, v.Alarms = ev.Seq, h.Problems
	case "device":
		// A speaker's change between two snapshots: applied to the list.
		var e struct{ Action, Target string }
		if json.Unmarshal(ev.Data, &e) == nil {
			for i := range v.Devices {
				if v.Devices[i].ID == e.Target {
					v.Devices[i].Online = e.Action == "device.online"
				}
			}
		}
	case "audit":
		return s.applyAudit(tx, v, ev)
	case "command":
		return s.applyReport(tx, v.Site, ev)
	case uplink.KindDraft:
		return s.applyDraft(tx, v.Site, ev)
	}
	return nil
}

// applyAudit counts a village's broadcasts for the delivery and the
// monthly report: the first non-final state starts the air time, the
// final state's delivery summary ends it.
func (s *Server) applyAudit(tx *bolt.Tx, v *Village, ev uplink.Event) error {
	var e struct {
		Time   time.Time
		Action string
		Target string
		Detail struct {
			Delivery *struct {
				Speakers       uint64 `json:"speakers"`
				FramesExpected uint64 `json:"frames_expected"`
				FramesPlayed   uint64 `json:"frames_played"`
				FramesLate     uint64 `json:"frames_late"`
				FramesLost     uint64 `json:"frames_lost"`
			} `json:"delivery"`
		}
	}
	if json.Unmarshal(ev.Data, &e) != nil || !strings.HasPrefix(e.Action, "broadcast.") || e.Target == "" {
		return nil
	}
	state := strings.TrimPrefix(e.Action, "broadcast.")
	if state == "playing" {
		if v.Starts == nil {
			v.Starts = map[string]time.Time{}
		}
		if _, ok := v.Starts[e.Target]; !ok {
			v.Starts[e.Target] = e.Time
		}
		return nil
	}
	if e.Detail.Delivery == nil {
		return nil
	}
	d := e.Detail.Delivery
	t := Totals{Broadcasts: 1, Speakers: d.Speakers, FramesExpected: d.FramesExpected, FramesPlayed: d.FramesPlayed, FramesLate: d.FramesLate, FramesLost: d.FramesLost}
	if at, ok := v.Starts[e.Target]; ok && e.Time.After(at) {
		t.AirSeconds = e.Time.Sub(at).Seconds()
	}
	delete(v.Starts, e.Target)
	v.Delivery.add(t)
	loc := s.loc()
	key := v.Site + "/" + e.Time.In(loc).Format("2006-01")
	var m Totals
	get(tx, bMonths, key, &m)
	m.add(t)
	return put(tx, bMonths, key, m)
}

// loc is the commune's time zone for months (Asia/Ho_Chi_Minh by default).
func (s *Server) loc() *time.Location {
	if l, err := time.LoadLocation(s.cfg.Schedule.TimeZone); err == nil {
		return l
	}
	return time.UTC
}

// onPresence records a village's uplink presence.
func (s *Server) onPresence(site, payload string) {
	if wire.ValidLevel(site) != nil || (payload != "online" && payload != "offline") {
		return
	}
	err := s.db.bolt.Update(func(tx *bolt.Tx) error {
		v := s.village(tx, site)
		v.Presence, v.PresenceAt = payload, s.now().UTC()
		return put(tx, bVillages, site, v)
	})
	if err != nil {
		s.log.Error("village presence not stored", "site", site, "err", err)
	}
	if payload == "online" {
		s.kickResend()
	}
}

// ZoneView is one zone's speakers.
type ZoneView struct {
	Zone     string `json:"zone"`
	Speakers int    `json:"speakers"`
	Online   int    `json:"online"`
}

// VillageView is a village as GET /api/v1/commune/villages answers it.
type VillageView struct {
	Village
	Speakers      int        `json:"speakers"`
	Online        int        `json:"online"`
	Zones         []ZoneView `json:"zones"`
	DeliveryRatio float64    `json:"delivery_ratio"`
	// Known is false for a configured village never heard from.
	Known bool `json:"known"`
}

func viewOf(v Village, known bool) VillageView {
	out := VillageView{Village: v, Known: known, DeliveryRatio: v.Delivery.Ratio(), Zones: []ZoneView{}}
	out.Starts = nil
	zones := map[string]*ZoneView{}
	for _, d := range v.Devices {
		if d.Kind != "" && d.Kind != "speaker" {
			continue
		}
		out.Speakers++
		if d.Online {
			out.Online++
		}
		for _, z := range d.Zones {
			zv := zones[z]
			if zv == nil {
				zv = &ZoneView{Zone: z}
				zones[z] = zv
			}
			zv.Speakers++
			if d.Online {
				zv.Online++
			}
		}
	}
	for _, zv := range zones {
		out.Zones = append(out.Zones, *zv)
	}
	sort.Slice(out.Zones, func(i, j int) bool { return out.Zones[i].Zone < out.Zones[j].Zone })
	if out.Devices == nil {
		out.Devices = []uplink.DeviceState{}
	}
	if out.Broadcasts == nil {
		out.Broadcasts = []uplink.RunningBroadcast{}
	}
	if out.Alarms == nil {
		out.Alarms = []Alarm{}
	}
	return out
}

// Villages returns every village heard from or configured, by site.
func (s *Server) Villages() ([]VillageView, error) {
	var out []VillageView
	err := s.db.bolt.View(func(tx *bolt.Tx) error {
		vs, err := list[Village](tx, bVillages, "")
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, v := range vs {
			seen[v.Site] = true
			out = append(out, viewOf(v, true))
		}
		for _, site := range s.cfg.Commune.Villages {
			if !seen[site] {
				out = append(out, viewOf(Village{Site: site}, false))
			}
		}
		return nil
	})
	slices.SortFunc(out, func(a, b VillageView) int { return strings.Compare(a.Site, b.Site) })
	return out, err
}

func (s *Server) listVillages(w http.ResponseWriter, r *http.Request) {
	vs, err := s.Villages()
	if err != nil {
		httpError(w, http.StatusInternalServerError, fmt.Sprintf("read villages: %v", err))
		return
	}
	if vs == nil {
		vs = []VillageView{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"commune": s.cfg.Commune.ID, "province": s.cfg.Commune.Province,
		"broker_connected": s.mqtt.connected.Load(), "villages": vs})
}

// seenKeep is how long an event id is remembered for de-duplication: far
// longer than any resend (a village resends what the broker did not
// acknowledge, on its next connection).
const seenKeep = 30 * 24 * time.Hour

// prune forgets event ids older than seenKeep and expired sessions, so the
// commune's file stays bounded; it runs hourly.
func (s *Server) prune() {
	now := s.now()
	err := s.db.bolt.Update(func(tx *bolt.Tx) error {
		for _, b := range []struct {
			bucket  []byte
			expired func(v []byte) bool
		}{
			{bSeen, func(v []byte) bool { var at time.Time; return json.Unmarshal(v, &at) == nil && now.Sub(at) > seenKeep }},
			{bSessions, func(v []byte) bool {
				var sess struct{ Expires time.Time }
				return json.Unmarshal(v, &sess) == nil && now.After(sess.Expires)
			}},
		} {
			var old [][]byte
			c := tx.Bucket(b.bucket).Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if b.expired(v) {
					old = append(old, slices.Clone(k))
				}
			}
			for _, k := range old {
				if err := tx.Bucket(b.bucket).Delete(k); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		s.log.Error("prune the commune store", "err", err)
		err = fmt.Errorf("prune old event ids and sessions: %w", err)
	}
	s.health.Set("commune-prune", err)
}
