package playout

import (
	"slices"
	"sort"
	"time"

	"github.com/loalang/loalang/broadcast"
	"github.com/loalang/loalang/device/wire"
)

// The monthly report per zone and speaker (docs/reports.md), computed from
// the play-out log, never from the engine's memory.

// ZoneReport is one zone's month.
type ZoneReport struct {
	Zone       string `json:"zone"`
	Broadcasts int    `json:"broadcasts"`
	// AirSeconds is the time the zone was on air (start to end of each
	// broadcast sent to it); ByPriority and ByLanguage split it.
	AirSeconds     float64            `json:"air_seconds"`
	ByPriority     map[string]float64 `json:"by_priority"`
	ByLanguage     map[string]float64 `json:"by_language"`
	FramesExpected uint64             `json:"frames_expected"`
	FramesPlayed   uint64             `json:"frames_played"`
	// Delivery is frames played / expected, from the speakers' reports
	// (1 when nothing was expected).
	Delivery float64 `json:"delivery"`
}

// SpeakerReport is one speaker's month, from its delivery reports.
type SpeakerReport struct {
	ID             string   `json:"id"`
	Zones          []string `json:"zones"`
	Broadcasts     int      `json:"broadcasts"`
	FramesExpected uint64   `json:"frames_expected"`
	FramesPlayed   uint64   `json:"frames_played"`
	FramesLate     uint64   `json:"frames_late"`
	FramesLost     uint64   `json:"frames_lost"`
	// Missed is frames expected but not played.
	Missed   uint64  `json:"missed"`
	Delivery float64 `json:"delivery"`
}

// MonthlyReport is GET /api/v1/reports/monthly.
type MonthlyReport struct {
	Month    string `json:"month"`
	TimeZone string `json:"time_zone"`
	// Language filters the report; "" is every language.
	Language   string          `json:"language,omitempty"`
	From       time.Time       `json:"from"`
	Until      time.Time       `json:"until"`
	Broadcasts int             `json:"broadcasts"`
	Zones      []ZoneReport    `json:"zones"`
	Speakers   []SpeakerReport `json:"speakers"`
	// MostMissed are the speakers that missed the most frames (up to 5,
	// only those that missed any), worst first.
	MostMissed []SpeakerReport `json:"most_missed"`
}

func ratio(played, expected uint64) float64 {
	if expected == 0 {
		return 1
	}
	return float64(played) / float64(expected)
}

// AirTime is how long a broadcast was on air: start to end, or to now
// while it plays; zero if it never started.
func AirTime(b broadcast.Record, now time.Time) time.Duration {
	if b.Started.IsZero() {
		return 0
	}
	end := b.Ended
	if end.IsZero() {
		end = now
	}
	return max(end.Sub(b.Started), 0)
}

// Monthly computes the report from records (as Range returns them, with
// their language set). devZones gives each speaker's zones: a speaker's
// frames count in the broadcast's zones it belongs to. now ends the air
// time of broadcasts still playing.
func Monthly(recs []broadcast.Record, devZones map[string][]string, now time.Time) MonthlyReport {
	zones := map[string]*ZoneReport{}
	speakers := map[string]*SpeakerReport{}
	var rep MonthlyReport
	for _, b := range recs {
		bl := b.Language
		rep.Broadcasts++
		air := AirTime(b, now).Seconds()
		prio := string(b.Priority)
		if prio == "" {
			prio = wire.PriorityNormal
		}
		for _, z := range b.Zones {
			zr := zones[z]
			if zr == nil {
				zr = &ZoneReport{Zone: z, ByPriority: map[string]float64{}, ByLanguage: map[string]float64{}}
				zones[z] = zr
			}
			zr.Broadcasts++
			zr.AirSeconds += air
			zr.ByPriority[prio] += air
			zr.ByLanguage[bl] += air
		}
		for _, d := range b.Devices {
			sr := speakers[d.ID]
			if sr == nil {
				sr = &SpeakerReport{ID: d.ID, Zones: devZones[d.ID]}
				if sr.Zones == nil {
					sr.Zones = []string{}
				}
				speakers[d.ID] = sr
			}
			sr.Broadcasts++
			sr.FramesExpected += d.FramesExpected
			sr.FramesPlayed += d.FramesPlayed
			sr.FramesLate += d.FramesLate
			sr.FramesLost += d.FramesLost
			for _, z := range b.Zones {
				if slices.Contains(devZones[d.ID], z) {
					zones[z].FramesExpected += d.FramesExpected
					zones[z].FramesPlayed += d.FramesPlayed
				}
			}
		}
	}
	rep.Zones = []ZoneReport{}
	for _, zr := range zones {
		zr.Delivery = ratio(zr.FramesPlayed, zr.FramesExpected)
		rep.Zones = append(rep.Zones, *zr)
	}
	sort.Slice(rep.Zones, func(i, j int) bool { return rep.Zones[i].Zone < rep.Zones[j].Zone })
	rep.Speakers = []SpeakerReport{}
	for _, sr := range speakers {
		if sr.FramesExpected > sr.FramesPlayed {
			sr.Missed = sr.FramesExpected - sr.FramesPlayed
		}
		sr.Delivery = ratio(sr.FramesPlayed, sr.FramesExpected)
		rep.Speakers = append(rep.Speakers, *sr)
	}
	sort.Slice(rep.Speakers, func(i, j int) bool { return rep.Speakers[i].ID < rep.Speakers[j].ID })
	rep.MostMissed = []SpeakerReport{}
	for _, sr := range rep.Speakers {
		if sr.Missed > 0 {
			rep.MostMissed = append(rep.MostMissed, sr)
		}
	}
	sort.SliceStable(rep.MostMissed, func(i, j int) bool { return rep.MostMissed[i].Missed > rep.MostMissed[j].Missed })
	rep.MostMissed = rep.MostMissed[:min(5, len(rep.MostMissed))]
	return rep
}
