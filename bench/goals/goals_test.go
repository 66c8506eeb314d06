package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// fixture is a small results file in the shapes the benchmarks write.
// Goal 1's 20 × 1 ratio is 1.7 (NOT met; the same-window ratio, 1.4, is a
// note only), its 1 × 10 ratio 1.2 (met).
const fixture = `{
  "camera": {
    "date": "2026-12-01T10:00:00Z",
    "command": "go run ./bench/camera -runs 3",
    "summary": {
      "rows": {
        "loalangd 20 cams x 1 viewer": {"cpu_pct": {"median": 17, "min": 16, "max": 18}, "rss_mib": {"median": 63.9, "min": 60, "max": 70}},
        "baseline raw RTSP readers 20x1": {"cpu_pct": {"median": 10, "min": 9, "max": 11}},
        "loalangd 1 cam x 10 viewers": {"cpu_pct": {"median": 12, "min": 11, "max": 13}},
        "baseline 1 reader + 10 bare SRTP senders": {"cpu_pct": {"median": 10, "min": 10, "max": 10}}
      },
      "ratios": {
        "loalangd/baseline CPU 20x1 (goal <= 1.6)": {"median": 1.7, "min": 1.5, "max": 1.9},
        "loalangd/baseline CPU 20x1, same window": {"median": 1.4, "min": 1.3, "max": 1.5},
        "loalangd/baseline CPU 1x10 (goal <= 1.3)": {"median": 1.2, "min": 1.1, "max": 1.3}
      },
      "first_frame_ms": {
        "loopback, listen_ips [127.0.0.1]": {"p95": {"median": 150, "min": 100, "max": 160}, "failed": {"median": 0, "min": 0, "max": 0}},
        "loopback, default (every address)": {"p95": {"median": 300, "min": 250, "max": 350}}
      }
    }
  },
  "idle": {
    "date": "2026-12-01T11:00:00Z",
    "logins": 5, "first_sample_s": 30, "later_sample_s": 60,
    "rss_first_mib": 41, "rss_first_mib_min": 40, "rss_first_mib_max": 42,
    "rss_later_mib": 30, "rss_later_mib_min": 29, "rss_later_mib_max": 31
  },
  "fanout": {
    "date": "2026-12-02T09:00:00Z",
    "sizes": [
      {"speakers": 200, "loalang": {"delivery_pct": 50, "cpu_pct_of_one_core": 99, "latency_p99_ms": 9}, "baseline": {"cpu_pct_of_one_core": 1}},
      {"speakers": 1000, "loalang": {"delivery_pct": 99.95, "cpu_pct_of_one_core": 33, "latency_p99_ms": 80},
       "baseline": {"delivery_pct": 100, "cpu_pct_of_one_core": 30, "latency_p99_ms": 40}, "ratios": {"cpu": 1.1, "latency_p99": 2,
         "cpu_rounds": {"each": [1.05, 1.12, 1.08], "median": 1.08, "min": 1.05, "max": 1.12}}}
    ]
  },
  "fanout_1000": {
    "date": "2026-12-01T09:00:00Z",
    "sizes": [{"speakers": 1000, "loalang": {"delivery_pct": 99.8, "cpu_pct_of_one_core": 40, "latency_p99_ms": 100},
       "baseline": {"cpu_pct_of_one_core": 20}, "ratios": {"cpu": 2}}]
  },
  "sync_long": {
    "date": "2026-12-03T09:00:00Z", "clip_s": 600, "speakers": 50,
    "median": [
      {"point": "start", "p99_ms": 0.4, "p99_min_ms": 0.3, "p99_max_ms": 2.8},
      {"point": "5m", "p99_ms": 2.5, "p99_min_ms": 2.1, "p99_max_ms": 3}
    ]
  },
  "live_chromium": {
    "date": "2026-12-03T12:00:00Z", "runs": 3, "live_delay_ms": 250,
    "send_to_playback": {"p50_ms": 210},
    "playout_delay": {"p50_ms": 250, "p99_ms": 250, "max_ms": 250},
    "late_pct": 1,
    "spread": {"send_to_playback": {"p50_ms": {"median": 210, "min": 190, "max": 230}}}
  }
}`

func build(t *testing.T, raw string) map[string]Row {
	t.Helper()
	var all map[string]any
	if err := json.Unmarshal([]byte(raw), &all); err != nil {
		t.Fatal(err)
	}
	byID := map[string]Row{}
	for _, r := range Build(all) {
		if _, dup := byID[r.ID]; dup {
			t.Errorf("row %s appears twice", r.ID)
		}
		byID[r.ID] = r
	}
	return byID
}

func TestBuildJudgesEachGoal(t *testing.T) {
	rows := build(t, fixture)
	want := map[string]Status{
		"1a": NotMet,      // ratio 1.7 > 1.6
		"1b": Met,         // 63.9 MiB ≤ 64
		"1c": Met,         // 1.2 ≤ 1.3
		"2a": Met,         // p95 150 ms ≤ 150, the bound included
		"2b": NotMeasured, // no LAN case
		"3a": NotMet,      // 41 MiB > 40
		"3b": NotMeasured, // sampled at 60 s, not 5 min
		"4a": Met,         // from "fanout", newer than "fanout_1000": 99.95 %
		"4b": Met,         // 1.1 ≤ 1.1
		"4c": Met,         // reported
		"4d": NotMeasured, // no Mosquitto key
		"4e": NotMeasured,
		"4f": NotMeasured,
		"5a": Met,         // median 0.4 ms, though one run was 2.8
		"5b": NotMet,      // 2.5 ms
		"5c": NotMeasured, // no "end" point
		"6a": NotMet,      // 210 ms > 200
		"6b": NotMet,      // the delay sits at the 250 ms ceiling
	}
	if len(rows) != len(want) {
		t.Errorf("got %d rows, want %d", len(rows), len(want))
	}
	for id, st := range want {
		r, ok := rows[id]
		if !ok {
			t.Errorf("no row %s", id)
			continue
		}
		if r.Status != st {
			t.Errorf("row %s (%s): status %q, want %q (figure %q, ratio %q, note %q)", id, r.Goal, r.Status, st, r.Figure, r.Ratio, r.Note)
		}
	}

	if r := rows["1a"]; r.Figure != "17.0 [16.0–18.0] %" || r.Baseline != "10.0 [9.0–11.0] %" || r.Ratio != "1.70 [1.50–1.90] ×" ||
		r.Date != "2026-12-01" || r.Key != "camera" || r.Command != "go run ./bench/camera -runs 3" ||
		r.Note != "against readers in loalangd's own window: 1.40 [1.30–1.50] ×" {
		t.Errorf("row 1a = %+v", r)
	}
	if r := rows["4b"]; r.Key != "fanout" || r.Ratio != "1.10 ×" || r.Date != "2026-12-02" ||
		r.Note != "per round, against the baseline run beside it: 1.08 [1.05–1.12] ×" {
		t.Errorf("row 4b should come from the newer 1,000-speaker size under fanout: %+v", r)
	}
	if r := rows["4d"]; r.Command != cmdMosquitto || r.Figure != "not measured" || r.Date != "–" {
		t.Errorf("row 4d = %+v, want the command that measures it", r)
	}
	if r := rows["5a"]; r.Figure != "0.40 [0.30–2.80] ms" {
		t.Errorf("row 5a figure %q, want the median with the runs' spread", r.Figure)
	}
	if r := rows["6a"]; r.Figure != "210.0 [190.0–230.0] ms" {
		t.Errorf("row 6a figure %q", r.Figure)
	}
}

func TestBuildRatioAboveGoalOne(t *testing.T) {
	for _, c := range []struct {
		ratio float64
		want  Status
	}{{1.7, NotMet}, {1.6, Met}, {1.2, Met}} {
		raw := strings.Replace(fixture, `"median": 1.7, "min": 1.5`, `"median": `+jsonNum(c.ratio)+`, "min": 1.5`, 1)
		if got := build(t, raw)["1a"].Status; got != c.want {
			t.Errorf("20 × 1 CPU ratio %v: %q, want %q", c.ratio, got, c.want)
		}
	}
}

// TestBuildRatioFromRows checks that without a stored ratio the builder
// divides the two rows' medians.
func TestBuildRatioFromRows(t *testing.T) {
	raw := strings.Replace(fixture, `"loalangd/baseline CPU 20x1 (goal <= 1.6)"`, `"renamed"`, 1)
	r := build(t, raw)["1a"]
	if r.Status != NotMet || r.Ratio != "1.70 ×" {
		t.Errorf("ratio from rows 17 / 10: %+v", r)
	}
}

func TestBuildEmpty(t *testing.T) {
	rows := build(t, `{}`)
	for id, r := range rows {
		if r.Status != NotMeasured || r.Command == "" || r.Figure != "not measured" {
			t.Errorf("row %s with no results: %+v", id, r)
		}
	}
	if len(rows) != 18 {
		t.Errorf("%d rows, want 18", len(rows))
	}
}

func TestMarkdown(t *testing.T) {
	rows := Build(map[string]any{})
	var b bytes.Buffer
	if err := writeMarkdown(&b, rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != len(rows)+2 {
		t.Fatalf("%d lines, want header, rule and %d rows", len(lines), len(rows))
	}
	cols := strings.Count(lines[0], "|")
	for _, l := range lines {
		if strings.Count(strings.ReplaceAll(l, `\|`, ""), "|") != cols {
			t.Errorf("line with a different number of cells: %s", l)
		}
	}
	if !strings.Contains(b.String(), "`"+cmdLive+"`") {
		t.Errorf("no command in the Markdown table:\n%s", b.String())
	}
}

func jsonNum(f float64) string {
	b, _ := json.Marshal(f)
	return string(b)
}
