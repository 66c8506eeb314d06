package main

import (
	"fmt"
	"slices"
	"strings"
)

// Status is whether a goal was met by the stored figure.
type Status string

// The three outcomes of a goal row.
const (
	Met         Status = "met"
	NotMet      Status = "NOT met"
	NotMeasured Status = "not measured"
)

// Row is one line of the goal table.
type Row struct {
	ID       string // issue 16's goal number and a letter
	Goal     string // short goal text
	Figure   string // the figure: median [min–max] where the results hold the spread
	Baseline string // the baseline figure, if the goal has one
	Ratio    string // figure ÷ baseline, if the goal has one
	Target   string
	Status   Status
	Key      string // key in bench/results.json
	Date     string // date of the measurement (YYYY-MM-DD), or "–"
	Command  string // the command that produced the figure, or that produces it
	Note     string // why a row is not measured, or a caveat
}

// value is a figure's median with, when the results hold them, its
// minimum and maximum over the runs.
type value struct {
	Median, Min, Max float64
	HasSpread        bool
}

// format prints the value as "median [min–max] unit" with the given
// decimals, or only the median where there is no spread.
func (v value) format(decimals int, unit string) string {
	s := fmt.Sprintf("%.*f", decimals, v.Median)
	if v.HasSpread {
		s += fmt.Sprintf(" [%.*f–%.*f]", decimals, v.Min, decimals, v.Max)
	}
	if unit != "" {
		s += " " + unit
	}
	return s
}

// Commands that produce each key: what a row without a measurement
// prints.
const (
	cmdCamera    = "go run ./bench/camera -runs 3"
	cmdIdle      = "go run ./bench/idle -runs 3 -later 5m"
	cmdFanout    = "go run ./bench/fanout -speakers 1000 -runs 3 -duration 60s"
	cmdMosquitto = "go run ./bench/fanout -broker mosquitto -speakers 1000 -runs 3 -duration 60s"
	cmdSyncLong  = "go run ./bench/sync -speakers 50 -clip 10m -points start,5m,end -runs 3"
	cmdLive      = "go run ./bench/live -browser chromium -runs 3"
)

// Row and figure names written by bench/camera.
const (
	camRow20   = "loalangd 20 cams x 1 viewer"
	camBase20  = "baseline raw RTSP readers 20x1"
	camRow10   = "loalangd 1 cam x 10 viewers"
	camBase10  = "baseline 1 reader + 10 bare SRTP senders"
	camRatio20 = "loalangd/baseline CPU 20x1 (goal"
	// camRatio20Same is the ratio against a second set of raw readers
	// measured in loalangd's own window (bench/camera).
	camRatio20Same = "loalangd/baseline CPU 20x1, same window"
	camRatio10     = "loalangd/baseline CPU 1x10"
	camFirstLoop   = "loopback, listen_ips"
	camFirstLAN    = "LAN"
	camListenIPs   = "listen_ips"
)

// fanoutSpeakers is the fleet size of goal 4.
const fanoutSpeakers = 1000

// Build judges issue 16's goals against the parsed bench/results.json.
// It never fails: a missing key or field gives a row "not measured" with
// the command that produces it.
func Build(all map[string]any) []Row {
	var rows []Row
	rows = append(rows, cameraRows(all)...)
	rows = append(rows, idleRows(all)...)
	rows = append(rows, fanoutRows(all, [3]string{"4a", "4b", "4c"}, "embedded broker", "bare embedded mochi + paho",
		[]string{"fanout_1000", "fanout"}, cmdFanout)...)
	rows = append(rows, fanoutRows(all, [3]string{"4d", "4e", "4f"}, "Mosquitto", "bare Mosquitto + paho",
		[]string{"fanout_mosquitto_1000", "fanout_mosquitto"}, cmdMosquitto)...)
	rows = append(rows, syncRows(all)...)
	rows = append(rows, liveRows(all)...)
	for i := range rows {
		if rows[i].Date == "" {
			rows[i].Date = "–"
		}
		if rows[i].Status == NotMeasured && rows[i].Figure == "" {
			rows[i].Figure = "not measured"
		}
	}
	return rows
}

// atMost judges a figure against an upper bound.
func atMost(x, limit float64) Status {
	if x <= limit {
		return Met
	}
	return NotMet
}

// atLeast judges a figure against a lower bound.
func atLeast(x, limit float64) Status {
	if x >= limit {
		return Met
	}
	return NotMet
}

// get walks nested objects by key.
func get(v any, path ...string) (any, bool) {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

// num is the number at path.
func num(v any, path ...string) (float64, bool) {
	x, ok := get(v, path...)
	if !ok {
		return 0, false
	}
	f, ok := x.(float64)
	return f, ok
}

// str is the string at path, or "".
func str(v any, path ...string) string {
	x, _ := get(v, path...)
	s, _ := x.(string)
	return s
}

// day is the date part of an RFC 3339 time.
func day(s string) string {
	if len(s) >= 10 {
		return s[:10]
	}
	return s
}

// spreadAt reads a {median, min, max} object.
func spreadAt(v any, path ...string) (value, bool) {
	m, ok := num(v, append(path, "median")...)
	if !ok {
		return value{}, false
	}
	lo, ok1 := num(v, append(path, "min")...)
	hi, ok2 := num(v, append(path, "max")...)
	return value{Median: m, Min: lo, Max: hi, HasSpread: ok1 && ok2}, true
}

// withSuffixes reads a median stored in v under field and its spread
// stored beside it: as <field>_min and <field>_max (bench/idle's form), or,
// for a field with a unit such as p99_ms, as p99_min_ms and p99_max_ms
// (bench/sync's form).
func withSuffixes(v any, field string) (value, bool) {
	m, ok := num(v, field)
	if !ok {
		return value{}, false
	}
	lo, ok1 := num(v, field+"_min")
	hi, ok2 := num(v, field+"_max")
	if base, unit, cut := strings.Cut(field, "_"); cut && !(ok1 && ok2) {
		lo, ok1 = num(v, base+"_min_"+unit)
		hi, ok2 = num(v, base+"_max_"+unit)
	}
	return value{Median: m, Min: lo, Max: hi, HasSpread: ok1 && ok2}, true
}

// keyWith is the first key of the object at v, in sorted order, that
// starts with prefix and contains every one of contains.
func keyWith(v any, prefix string, contains ...string) (string, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return "", false
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		all := true
		for _, c := range contains {
			all = all && strings.Contains(k, c)
		}
		if all {
			return k, true
		}
	}
	return "", false
}

// commandOf is the command stored with the results, or def.
func commandOf(entry any, def string) string {
	if c := str(entry, "command"); c != "" {
		return c
	}
	return def
}

func missing(r Row, cmd, why string) Row {
	r.Status, r.Command, r.Note = NotMeasured, cmd, why
	return r
}

func cameraRows(all map[string]any) []Row {
	const key = "camera"
	base := []Row{
		{ID: "1a", Goal: "camera relay CPU, 20 × 1080p × 1 viewer (% of a core)", Target: "≤ 1.6× raw RTSP readers", Key: key},
		{ID: "1b", Goal: "camera relay RSS, 20 × 1080p × 1 viewer", Target: "≤ 64 MiB", Key: key},
		{ID: "1c", Goal: "camera relay CPU, 1 camera × 10 viewers (% of a core)", Target: "≤ 1.3× 1 raw reader + 10 bare SRTP senders", Key: key},
		{ID: "2a", Goal: "first decodable frame p95, loopback, listen_ips set", Target: "≤ 150 ms", Key: key},
		{ID: "2b", Goal: "first decodable frame p95, LAN (veth), listen_ips set", Target: "≤ 150 ms", Key: key},
	}
	entry, ok := entryFor(all, key, cmdCamera, base)
	if !ok {
		return base
	}
	summary, _ := get(entry, "summary")
	cpuRatio := func(r *Row, row, baseRow, ratioPrefix string, limit float64) {
		fig, ok := spreadAt(summary, "rows", row, "cpu_pct")
		if !ok {
			*r = missing(*r, cmdCamera, fmt.Sprintf("no row %q in camera.summary", row))
			return
		}
		r.Figure = fig.format(1, "%")
		if b, ok := spreadAt(summary, "rows", baseRow, "cpu_pct"); ok {
			r.Baseline = b.format(1, "%")
		}
		ratio, ok := value{}, false
		if k, found := keyWith(mapAt(summary, "ratios"), ratioPrefix); found {
			ratio, ok = spreadAt(summary, "ratios", k)
		}
		if !ok {
			b, bok := spreadAt(summary, "rows", baseRow, "cpu_pct")
			if !bok || b.Median == 0 {
				*r = missing(*r, cmdCamera, fmt.Sprintf("no baseline row %q in camera.summary", baseRow))
				return
			}
			ratio = value{Median: fig.Median / b.Median}
		}
		r.Ratio = ratio.format(2, "×")
		r.Status = atMost(ratio.Median, limit)
	}
	cpuRatio(&base[0], camRow20, camBase20, camRatio20, 1.6)
	if same, ok := spreadAt(summary, "ratios", camRatio20Same); ok && base[0].Status != NotMeasured {
		base[0].Note = "against readers in loalangd's own window: " + same.format(2, "×")
	}
	if rss, ok := spreadAt(summary, "rows", camRow20, "rss_mib"); ok {
		base[1].Figure, base[1].Status = rss.format(1, "MiB"), atMost(rss.Median, 64)
	} else {
		base[1] = missing(base[1], cmdCamera, fmt.Sprintf("no row %q in camera.summary", camRow20))
	}
	cpuRatio(&base[2], camRow10, camBase10, camRatio10, 1.3)
	firsts := mapAt(summary, "first_frame_ms")
	first := func(r *Row, prefix, why string) {
		k, ok := keyWith(firsts, prefix, camListenIPs)
		if !ok {
			*r = missing(*r, cmdCamera, why)
			return
		}
		p95, ok := spreadAt(firsts, k, "p95")
		if !ok {
			*r = missing(*r, cmdCamera, fmt.Sprintf("no p95 under %q", k))
			return
		}
		r.Figure, r.Status = p95.format(1, "ms"), atMost(p95.Median, 150)
		if failed, ok := spreadAt(firsts, k, "failed"); ok && failed.Max > 0 {
			r.Note = fmt.Sprintf("up to %.0f tries without a frame in 5 s", failed.Max)
		}
	}
	first(&base[3], camFirstLoop, "no loopback listen_ips case in camera.summary.first_frame_ms")
	first(&base[4], camFirstLAN, "no LAN case in camera.summary.first_frame_ms (it needs root)")
	return base
}

// entryFor returns all[key] and stamps every row with its date and stored
// command; without it, it marks every row "not measured" with cmd, the
// command that measures them.
func entryFor(all map[string]any, key, cmd string, rows []Row) (any, bool) {
	entry, ok := all[key]
	for i := range rows {
		if !ok {
			rows[i] = missing(rows[i], cmd, "no key "+key)
			continue
		}
		rows[i].Date, rows[i].Command = day(str(entry, "date")), commandOf(entry, cmd)
	}
	return entry, ok
}

// mapAt is the object at path, or nil.
func mapAt(v any, path ...string) any {
	x, _ := get(v, path...)
	return x
}

func idleRows(all map[string]any) []Row {
	const key = "idle"
	rows := []Row{
		{ID: "3a", Goal: "idle RSS 30 s after start, after 5 sign-ins", Target: "≤ 40 MiB", Key: key},
		{ID: "3b", Goal: "idle RSS 5 min after start", Target: "≤ 40 MiB", Key: key},
	}
	entry, ok := entryFor(all, key, cmdIdle, rows)
	if !ok {
		return rows
	}
	logins, _ := num(entry, "logins")
	check := func(r *Row, field, atField string, wantAt float64) {
		at, _ := num(entry, atField)
		switch {
		case logins < 5:
			*r = missing(*r, cmdIdle, fmt.Sprintf("measured after %.0f sign-ins, the goal needs 5", logins))
		case at < wantAt:
			*r = missing(*r, cmdIdle, fmt.Sprintf("%s is %.0f s, the goal needs %.0f s", atField, at, wantAt))
		default:
			v, ok := withSuffixes(entry, field)
			if !ok {
				*r = missing(*r, cmdIdle, "no "+field)
				return
			}
			r.Figure, r.Status = v.format(1, "MiB"), atMost(v.Median, 40)
			if at != wantAt {
				r.Note = fmt.Sprintf("sampled at %.0f s", at)
			}
		}
	}
	check(&rows[0], "rss_first_mib", "first_sample_s", 30)
	check(&rows[1], "rss_later_mib", "later_sample_s", 300)
	return rows
}

// fanoutRows judges goal 4 for one broker. The figures come from the most
// recent of keys that holds a 1,000-speaker size: `make bench` with
// BENCH_LONG=1 writes it into "fanout" or "fanout_mosquitto", the
// published run sits under "fanout_1000" and "fanout_mosquitto_1000".
func fanoutRows(all map[string]any, ids [3]string, broker, baseline string, keys []string, defCmd string) []Row {
	rows := []Row{
		{ID: ids[0], Goal: fmt.Sprintf("fan-out 1,000 speakers, %s: frames played", broker), Target: "≥ 99.9 %"},
		{ID: ids[1], Goal: fmt.Sprintf("fan-out 1,000 speakers, %s: loalangd CPU (%% of a core)", broker), Target: "≤ 1.1× " + baseline},
		{ID: ids[2], Goal: fmt.Sprintf("fan-out 1,000 speakers, %s: p99 receipt latency", broker), Target: "reported"},
	}
	var entry, size any
	var key, date string
	for _, k := range keys {
		e, ok := all[k]
		if !ok {
			continue
		}
		sizes, _ := mapAt(e, "sizes").([]any)
		for _, s := range sizes {
			if n, _ := num(s, "speakers"); n == fanoutSpeakers {
				if d := str(e, "date"); size == nil || d > date {
					entry, size, key, date = e, s, k, d
				}
			}
		}
	}
	if size == nil {
		for i := range rows {
			rows[i].Key = keys[0]
			rows[i] = missing(rows[i], defCmd, fmt.Sprintf("no 1,000-speaker size under %s", strings.Join(keys, " or ")))
		}
		return rows
	}
	cmd := commandOf(entry, defCmd)
	for i := range rows {
		rows[i].Key, rows[i].Date, rows[i].Command = key, day(date), cmd
	}
	if errs, _ := mapAt(size, "errors").([]any); len(errs) > 0 {
		for i := range rows {
			rows[i].Note = fmt.Sprintf("%d errors in the runs", len(errs))
		}
	}
	if d, ok := num(size, "loalang", "delivery_pct"); ok {
		rows[0].Figure, rows[0].Status = value{Median: d}.format(2, "%"), atLeast(d, 99.9)
		if b, ok := num(size, "baseline", "delivery_pct"); ok {
			rows[0].Baseline = value{Median: b}.format(2, "%")
		}
	} else {
		rows[0] = missing(rows[0], defCmd, "no loalang.delivery_pct")
	}
	cpu, ok := num(size, "loalang", "cpu_pct_of_one_core")
	bcpu, bok := num(size, "baseline", "cpu_pct_of_one_core")
	switch {
	case !ok || !bok || bcpu == 0:
		rows[1] = missing(rows[1], defCmd, "no loalang and baseline cpu_pct_of_one_core")
	default:
		ratio, rok := num(size, "ratios", "cpu")
		if !rok {
			ratio = cpu / bcpu
		}
		rows[1].Figure, rows[1].Baseline = value{Median: cpu}.format(1, "%"), value{Median: bcpu}.format(1, "%")
		rows[1].Ratio, rows[1].Status = value{Median: ratio}.format(2, "×"), atMost(ratio, 1.1)
		if rounds, ok := spreadAt(size, "ratios", "cpu_rounds"); ok {
			rows[1].Note = strings.TrimPrefix(rows[1].Note+"; per round, against the baseline run beside it: "+rounds.format(2, "×"), "; ")
		}
	}
	if p99, ok := num(size, "loalang", "latency_p99_ms"); ok {
		rows[2].Figure, rows[2].Status = value{Median: p99}.format(1, "ms"), Met
		if b, ok := num(size, "baseline", "latency_p99_ms"); ok {
			rows[2].Baseline = value{Median: b}.format(1, "ms")
			if r, ok := num(size, "ratios", "latency_p99"); ok {
				rows[2].Ratio = value{Median: r}.format(2, "×")
			}
		}
	} else {
		rows[2] = missing(rows[2], defCmd, "no loalang.latency_p99_ms")
	}
	return rows
}

func syncRows(all map[string]any) []Row {
	const key = "sync_long"
	points := []struct{ id, point, label string }{{"5a", "start", "start"}, {"5b", "5m", "5 min"}, {"5c", "end", "end"}}
	var rows []Row
	entry, ok := all[key]
	clip, _ := num(entry, "clip_s")
	speakers, _ := num(entry, "speakers")
	medians, _ := mapAt(entry, "median").([]any)
	for _, p := range points {
		r := Row{ID: p.id, Goal: "sync skew p99, 50 speakers, 10-min programme, at " + p.label, Target: "≤ 2 ms", Key: key}
		switch {
		case !ok:
			r = missing(r, cmdSyncLong, "no key "+key)
		case clip < 600 || speakers < 50:
			r = missing(r, cmdSyncLong, fmt.Sprintf("measured with %.0f speakers over %.0f s, the goal needs 50 over 600 s", speakers, clip))
		default:
			r.Date, r.Command = day(str(entry, "date")), commandOf(entry, cmdSyncLong)
			r = missing(r, r.Command, "no point "+p.point)
			for _, m := range medians {
				if str(m, "point") != p.point {
					continue
				}
				v, found := withSuffixes(m, "p99_ms")
				if !found {
					break
				}
				r.Note = ""
				r.Figure, r.Status = v.format(2, "ms"), atMost(v.Median, 2)
			}
		}
		rows = append(rows, r)
	}
	return rows
}

// liveRows judges goal 6. Mouth to ear is Chromium's RTP send to the
// speakers' play time (send_to_playback). Whether the play-out delay
// adapts is judged by a proxy: a fixed delay puts every packet at the
// live_delay_ms ceiling, so an adaptive one has its median below it.
func liveRows(all map[string]any) []Row {
	const key = "live_chromium"
	rows := []Row{
		{ID: "6a", Goal: "live speech mouth to ear, headless Chromium RTP send → played, p50", Target: "≤ 200 ms", Key: key},
		{ID: "6b", Goal: "live play-out delay adapts to the jitter (p50 / p99 / max)", Target: "p50 below the live_delay ceiling", Key: key},
	}
	entry, ok := entryFor(all, key, cmdLive, rows)
	if !ok {
		return rows
	}
	runs := "1 run"
	if n, ok := num(entry, "runs"); ok {
		runs = fmt.Sprintf("%.0f runs", n)
	}
	if p50, ok := scalar(entry, "send_to_playback", "p50_ms"); ok {
		rows[0].Figure, rows[0].Status = p50.format(1, "ms"), atMost(p50.Median, 200)
		rows[0].Note = runs
	} else {
		rows[0] = missing(rows[0], cmdLive, "no send_to_playback.p50_ms")
	}
	p50, ok1 := scalar(entry, "playout_delay", "p50_ms")
	p99, ok2 := scalar(entry, "playout_delay", "p99_ms")
	mx, ok3 := scalar(entry, "playout_delay", "max_ms")
	ceiling, ok4 := num(entry, "live_delay_ms")
	if !ok1 || !ok2 || !ok3 || !ok4 {
		rows[1] = missing(rows[1], cmdLive, "no playout_delay or live_delay_ms")
		return rows
	}
	rows[1].Figure = fmt.Sprintf("%s / %.0f / %.0f ms", p50.format(0, ""), p99.Median, mx.Median)
	rows[1].Target = fmt.Sprintf("p50 below the %.0f ms ceiling", ceiling)
	if p50.Median < ceiling {
		rows[1].Status = Met
	} else {
		rows[1].Status = NotMet
	}
	if late, ok := scalar(entry, "late_pct"); ok {
		rows[1].Note = "late at the speakers " + late.format(1, "%")
	}
	return rows
}

// scalar reads a figure stored as a median at path in entry, with its
// spread under spread.<path> where the results hold it (older results
// hold one run and no spread).
func scalar(entry any, path ...string) (value, bool) {
	if v, ok := spreadAt(entry, append([]string{"spread"}, path...)...); ok {
		return v, true
	}
	m, ok := num(entry, path...)
	return value{Median: m}, ok
}
