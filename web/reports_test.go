package web

import (
	"encoding/csv"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/loalang/loalang/broadcast"
	"github.com/loalang/loalang/device"
	"github.com/loalang/loalang/store"
)

// staticDevices is a fixed presence list: the report reads only which
// zones each speaker is in.
type staticDevices []device.State

func (d staticDevices) List() []device.State { return d }

// TestMonthlyReport writes a month of play-out records (and one from the
// month before) and checks the report's air time by priority and
// language, delivery per zone and speaker, the most-missed list, the
// language filter and the CSV.
func TestMonthlyReport(t *testing.T) {
	rs := newRecordsServer(t)
	rs.devices = staticDevices{
		{Device: device.Device{ID: "spk-1", Zones: []string{"a"}}},
		{Device: device.Device{ID: "spk-2", Zones: []string{"a"}}},
		{Device: device.Device{ID: "spk-3", Zones: []string{"b"}}},
	}
	hanoi, _ := time.LoadLocation("Asia/Ho_Chi_Minh")
	at := func(day, hour int) time.Time { return time.Date(2026, 11, day, hour, 0, 0, 0, hanoi) }
	dev := func(id string, exp, played uint64) broadcast.Delivery {
		return broadcast.Delivery{ID: id, FramesExpected: exp, FramesPlayed: played, FramesLost: exp - played}
	}
	recs := []broadcast.Record{
		// 60 s normal Vietnamese to a and b; spk-2 missed 1000 frames.
		{ID: "b1", State: "done", Zones: []string{"a", "b"}, Priority: "normal", Language: "vi", Created: at(3, 6), Started: at(3, 6), Ended: at(3, 6).Add(60 * time.Second),
			Devices: []broadcast.Delivery{dev("spk-1", 3000, 3000), dev("spk-2", 3000, 2000), dev("spk-3", 3000, 2990)}},
		// 30 s emergency in Khmer to a; spk-2 missed 500.
		{ID: "b2", State: "done", Zones: []string{"a"}, Priority: "emergency", Language: "km", Created: at(10, 20), Started: at(10, 20), Ended: at(10, 20).Add(30 * time.Second),
			Devices: []broadcast.Delivery{dev("spk-1", 1500, 1500), dev("spk-2", 1500, 1000)}},
		// Before the month: 31 October 23:00 in Hanoi.
		{ID: "b0", State: "done", Zones: []string{"a"}, Priority: "normal", Created: time.Date(2026, 10, 31, 23, 0, 0, 0, hanoi), Started: time.Date(2026, 10, 31, 23, 0, 0, 0, hanoi),
			Ended: time.Date(2026, 10, 31, 23, 10, 0, 0, hanoi)},
	}
	for _, r := range recs {
		if err := store.Put(rs.db, store.Broadcasts, r.ID, r); err != nil {
			t.Fatal(err)
		}
	}
	code, body := rs.call("GET", "/api/v1/reports/monthly?month=2026-11", rs.admin, nil)
	if code != 200 {
		t.Fatalf("report: %d %s", code, body)
	}
	var rep MonthlyReport
	json.Unmarshal(body, &rep)
	if rep.Broadcasts != 2 || len(rep.Zones) != 2 {
		t.Fatalf("report: %s", body)
	}
	a, b := rep.Zones[0], rep.Zones[1]
	if a.Zone != "a" || a.AirSeconds != 90 || a.ByPriority["normal"] != 60 || a.ByPriority["emergency"] != 30 || a.ByLanguage["km"] != 30 || a.ByLanguage["vi"] != 60 {
		t.Errorf("zone a: %+v", a)
	}
	if a.FramesExpected != 9000 || a.FramesPlayed != 7500 || b.FramesExpected != 3000 || b.FramesPlayed != 2990 {
		t.Errorf("delivery: a %d/%d b %d/%d", a.FramesPlayed, a.FramesExpected, b.FramesPlayed, b.FramesExpected)
	}
	if len(rep.MostMissed) != 2 || rep.MostMissed[0].ID != "spk-2" || rep.MostMissed[0].Missed != 1500 || rep.MostMissed[1].ID != "spk-3" {
		t.Errorf("most missed: %+v", rep.MostMissed)
	}
	if math.Abs(rep.MostMissed[0].Delivery-3000.0/4500) > 1e-9 {
		t.Errorf("spk-2 delivery %v", rep.MostMissed[0].Delivery)
	}

	// The language filter.
	code, body = rs.call("GET", "/api/v1/reports/monthly?month=2026-11&language=km", rs.admin, nil)
	json.Unmarshal(body, &rep)
	if code != 200 || rep.Broadcasts != 1 || len(rep.Zones) != 1 || rep.Zones[0].AirSeconds != 30 {
		t.Errorf("km only: %d %s", code, body)
	}

	// CSV: a row per zone and per speaker.
	w := rs.request("GET", "/api/v1/reports/monthly?month=2026-11&format=csv", "10.0.0.1:1", rs.admin, "", nil)
	rows, err := csv.NewReader(strings.NewReader(w.Body.String())).ReadAll()
	if err != nil || len(rows) != 1+2+3 || rows[1][0] != "zone" || rows[1][4] != "90.0" || rows[5][1] != "spk-3" {
		t.Fatalf("csv: %v %q", err, w.Body.String())
	}

	// Play-out log export by date range.
	code, body = rs.call("GET", "/api/v1/reports/playout?since=2026-11-01T00:00:00%2B07:00&until=2026-12-01T00:00:00%2B07:00", rs.admin, nil)
	var log []broadcast.Record
	json.Unmarshal(body, &log)
	if code != 200 || len(log) != 2 || log[0].ID != "b1" || log[1].ID != "b2" {
		t.Fatalf("playout export: %d %s", code, body)
	}
	w = rs.request("GET", "/api/v1/reports/playout?format=csv", "10.0.0.1:1", rs.admin, "", nil)
	if rows, _ := csv.NewReader(strings.NewReader(w.Body.String())).ReadAll(); len(rows) != 4 || rows[1][0] != "b0" || rows[3][9] != "km" {
		t.Errorf("playout csv: %q", w.Body.String())
	}
	for _, bad := range []string{"month=11-2026", "month=2026-11&language=fr", "month=2026-11&format=xml"} {
		if code, _ := rs.call("GET", "/api/v1/reports/monthly?"+bad, rs.admin, nil); code != 400 {
			t.Errorf("%s: %d", bad, code)
		}
	}
	if code, _ := rs.call("GET", "/api/v1/reports/monthly", rs.cop, nil); code != 403 {
		t.Errorf("police report: %d", code)
	}
}
