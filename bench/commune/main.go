// Command commune is issue 14's commune broadcast benchmark: a real
// Mosquitto as the commune's broker, the commune role server in this
// process, and villages that are loalangd child processes with simulated
// speakers (firmware-sim/speaker, in this process). Each run an editor
// drafts a recording for every village and the approver approves it; the
// figure is the approver's click (the approve request sent) -> the first
// sample played in each village (a recording speaker's first sample),
// p50 and max over villages, and the click -> every village's "played"
// report at the commune.
//
//	go run ./bench/commune -villages 5 -speakers 20 -runs 3
//
// Figures merge into bench/results.json under "commune_broadcast".
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/loalang/loalang/bench/fanout/harness"
	"github.com/loalang/loalang/bench/results"
	"github.com/loalang/loalang/commune"
	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/firmware-sim/speaker"
	"github.com/loalang/loalang/uplink"
)

type options struct {
	villages, speakers, runs int
	clip                     time.Duration
	loalangd, results, key   string
}

func main() {
	var o options
	flag.IntVar(&o.villages, "villages", 5, "villages (loalangd processes)")
	flag.IntVar(&o.speakers, "speakers", 20, "simulated speakers per village")
	flag.IntVar(&o.runs, "runs", 3, "approved broadcasts measured")
	flag.DurationVar(&o.clip, "clip", 3*time.Second, "length of the recording")
	flag.StringVar(&o.loalangd, "loalangd", "bin/loalangd", "loalangd binary (built from ./cmd/loalangd if missing)")
	flag.StringVar(&o.results, "results", "bench/results.json", "results file to merge into")
	flag.StringVar(&o.key, "key", "commune_broadcast", "top-level key of the results")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench commune:", err)
		os.Exit(1)
	}
}

type village struct {
	site  string
	d     *harness.Daemon
	fleet *harness.Fleet
	rec   string
}

// staff is a signed-in commune user.
type staff struct {
	base, token string
}

func (s staff) call(method, path string, body []byte, out any) error {
	req, _ := http.NewRequest(method, s.base+path, bytes.NewReader(body))
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

func jsonBody(v any) []byte { b, _ := json.Marshal(v); return b }

func signIn(base, user, pw string) (staff, error) {
	var out struct{ Token string }
	err := staff{base: base}.call("POST", "/api/v1/commune/login", jsonBody(map[string]string{"username": user, "password": pw}), &out)
	return staff{base: base, token: out.Token}, err
}

func run(ctx context.Context, o options) error {
	cmdline := "go run ./bench/commune " + strings.Join(os.Args[1:], " ")
	fmt.Println("command:", cmdline)
	work, err := os.MkdirTemp("", "bench-commune-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin, err := harness.Binary(ctx, o.loalangd, "./cmd/loalangd", work, "loalangd")
	if err != nil {
		return err
	}
	fmt.Printf("load average before setup: %s\n", results.LoadAverage())

	// The commune's Mosquitto.
	addr, err := harness.FreeAddr()
	if err != nil {
		return err
	}
	conf, err := harness.BareMosquittoConf(work, addr)
	if err != nil {
		return err
	}
	mosq, err := harness.StartMosquitto(ctx, conf, addr, filepath.Join(work, "mosquitto.log"))
	if err != nil {
		return err
	}
	defer mosq.Close(5 * time.Second)

	// The commune server.
	keyPath := filepath.Join(work, "commune.key")
	pub, err := uplink.Keygen(keyPath)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var sites []string
	for i := range o.villages {
		sites = append(sites, fmt.Sprintf("thon-%02d", i+1))
	}
	cfg := config.Default()
	cfg.Role = config.RoleCommune
	cfg.DataDir = filepath.Join(work, "commune")
	cfg.HTTP.Addr = ln.Addr().String()
	cfg.Commune = config.Commune{Province: "hanoi", ID: "xa-1", MQTTURL: "tcp://" + addr, ClientID: "commune-xa-1",
		SigningKeyFile: keyPath, PublicURL: "http://" + ln.Addr().String(), Villages: sites, ResendEvery: 10 * time.Second}
	if err := cfg.Validate(); err != nil {
		return err
	}
	srv, err := commune.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	defer srv.Close()
	hs := &http.Server{Handler: srv.Handler()}
	go hs.Serve(ln)
	defer hs.Close()
	base := "http://" + ln.Addr().String()
	pw, _ := os.ReadFile(filepath.Join(cfg.DataDir, commune.AdminPassFile))
	admin, err := signIn(base, "admin", strings.TrimSpace(string(pw)))
	if err != nil {
		return err
	}
	for _, u := range [][3]string{{"bientap", "editor-pass-1", "editor"}, {"duyet", "approver-pass-1", "approver"}} {
		if err := admin.call("POST", "/api/v1/commune/users", jsonBody(map[string]string{"username": u[0], "password": u[1], "role": u[2]}), nil); err != nil {
			return err
		}
	}
	editor, err := signIn(base, "bientap", "editor-pass-1")
	if err != nil {
		return err
	}
	approver, err := signIn(base, "duyet", "approver-pass-1")
	if err != nil {
		return err
	}

	// The villages.
	var villages []*village
	defer func() {
		for _, v := range villages {
			if v.fleet != nil {
				v.fleet.Close()
			}
			v.d.Close()
		}
	}()
	for _, site := range sites {
		v := &village{site: site}
		dir := filepath.Join(work, site)
		v.rec = filepath.Join(dir, "rec")
		os.MkdirAll(v.rec, 0o700)
		y := harness.VillageConfig(site, o.speakers, 2) + fmt.Sprintf(`uplink:
  url: tcp://%s
  client_id: %s
  province: hanoi
  commune: xa-1
  commune_keys: [%q]
  media_allow: ["127.0.0.1/32"]
  max_backoff: 5s
`, addr, site, pub)
		if v.d, err = harness.StartDaemon(ctx, bin, dir, y); err != nil {
			return fmt.Errorf("village %s: %w", site, err)
		}
		villages = append(villages, v)
		// Two speakers per village record (a village's speakers play at one
		// play-at time); every speaker's delivery report still counts.
		if v.fleet, err = harness.StartFleet(v.d.Bundle, func(i int, c *speaker.Config) {
			if i%10 == 0 {
				c.RecordDir, c.KeepPlayed = v.rec, 0
			}
		}); err != nil {
			return err
		}
	}
	for _, v := range villages {
		if err := v.fleet.WaitReady(ctx, 120*time.Second); err != nil {
			return fmt.Errorf("village %s: %w", v.site, err)
		}
	}
	if err := waitCommune(ctx, editor, o, 120*time.Second); err != nil {
		return err
	}
	fmt.Printf("%d villages x %d speakers online at the commune\n", len(villages), o.speakers)

	media := harness.EncodeWAV(harness.SyntheticSpeech(int(o.clip/time.Millisecond)*48), 48000)
	var m commune.Media
	if err := editor.call("POST", "/api/v1/commune/media", media, &m); err != nil {
		return err
	}

	fmt.Printf("\n%-4s %-16s %12s %12s %14s %16s\n", "run", "load avg", "p50 ms", "max ms", "played report", "speakers played")
	var p50s, maxs, reps []float64
	var runsOut []map[string]any
	for r := range o.runs {
		la := results.LoadAverage()
		var d commune.Draft
		if err := editor.call("POST", "/api/v1/commune/drafts", jsonBody(map[string]any{"title": fmt.Sprintf("run %d", r+1), "media_sha256": m.SHA256,
			"villages": sites, "urgency": "routine", "expires_in": "30m"}), &d); err != nil {
			return err
		}
		t0 := time.Now()
		if err := approver.call("POST", "/api/v1/commune/drafts/"+d.ID+"/approve", nil, nil); err != nil {
			return err
		}
		var view commune.DraftView
		deadline := time.Now().Add(120*time.Second + 2*o.clip)
		for {
			if err := editor.call("GET", "/api/v1/commune/drafts/"+d.ID, nil, &view); err != nil {
				return err
			}
			if view.Summary.Played == len(villages) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("run %d: %d of %d villages reported played", r+1, view.Summary.Played, len(villages))
			}
			time.Sleep(100 * time.Millisecond)
		}
		report := time.Since(t0)
		var lat []float64
		for _, v := range villages {
			var bid string
			for _, x := range view.Deliveries {
				if x.Site == v.site {
					bid = x.BroadcastID
				}
			}
			b, err := v.d.WaitFinal(ctx, bid, o.clip, 30*time.Second)
			if err != nil {
				return fmt.Errorf("%s: %w", v.site, err)
			}
			first := firstSample(v, b.StreamIDs)
			if first == 0 {
				return fmt.Errorf("%s: no recording speaker played run %d", v.site, r+1)
			}
			lat = append(lat, float64(first-t0.UnixNano())/1e6)
		}
		sort.Float64s(lat)
		p50, mx := harness.Median(lat), lat[len(lat)-1]
		p50s, maxs, reps = append(p50s, p50), append(maxs, mx), append(reps, float64(report.Milliseconds()))
		fmt.Printf("%-4d %-16s %12.0f %12.0f %11d ms %10d of %d\n", r+1, la, p50, mx, report.Milliseconds(), view.Summary.SpeakersPlayed, view.Summary.Speakers)
		runsOut = append(runsOut, map[string]any{"load_avg": la, "p50_ms": harness.Round(p50, 1), "max_ms": harness.Round(mx, 1),
			"played_report_ms": report.Milliseconds(), "speakers_played": view.Summary.SpeakersPlayed, "speakers": view.Summary.Speakers})
	}
	sort.Float64s(p50s)
	sort.Float64s(maxs)
	sort.Float64s(reps)
	fmt.Printf("\nmedian p50 %.0f ms (min-max %.0f-%.0f), median max %.0f ms (min-max %.0f-%.0f), median click->all played reports %.0f ms (min-max %.0f-%.0f)\n",
		harness.Median(p50s), p50s[0], p50s[len(p50s)-1], harness.Median(maxs), maxs[0], maxs[len(maxs)-1], harness.Median(reps), reps[0], reps[len(reps)-1])
	out := map[string]any{
		"command":  cmdline,
		"what":     "approver's approve request -> first sample played in each village (recording speakers, 2 per village); the commune signs, publishes at QoS 1 to each village's command topic on a real Mosquitto; each village fetches the recording from the commune by URL+sha256, decodes, encodes and plays",
		"villages": len(villages), "speakers_per_village": o.speakers, "clip_s": o.clip.Seconds(),
		"p50_ms_median": harness.Round(harness.Median(p50s), 1), "p50_ms_min": harness.Round(p50s[0], 1), "p50_ms_max": harness.Round(p50s[len(p50s)-1], 1),
		"max_ms_median": harness.Round(harness.Median(maxs), 1), "max_ms_min": harness.Round(maxs[0], 1), "max_ms_max": harness.Round(maxs[len(maxs)-1], 1),
		"played_report_ms_median": harness.Round(harness.Median(reps), 1),
		"runs":                    runsOut,
	}
	if err := results.Merge(o.results, o.key, out); err != nil {
		return err
	}
	fmt.Printf("merged key %q into %s\n", o.key, o.results)
	return nil
}

// waitCommune waits until the commune sees every village online with all
// its speakers.
func waitCommune(ctx context.Context, s staff, o options, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		var out struct{ Villages []commune.VillageView }
		if err := s.call("GET", "/api/v1/commune/villages", nil, &out); err == nil {
			ok := 0
			for _, v := range out.Villages {
				if v.Presence == "online" && v.Online == o.speakers {
					ok++
				}
			}
			if ok == o.villages {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%d of %d villages fully online at the commune after %s", ok, o.villages, within)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// firstSample is the earliest first sample of the village's recording
// speakers for the streams, from their sidecars (0: none yet).
func firstSample(v *village, streams []uint32) int64 {
	var first int64
	wait := time.Now().Add(10 * time.Second)
	for first == 0 && time.Now().Before(wait) {
		for i, s := range v.fleet.Speakers {
			if i%10 != 0 {
				continue
			}
			for _, sid := range streams {
				raw, err := os.ReadFile(filepath.Join(v.rec, fmt.Sprintf("%s-%d.json", s.ID(), sid)))
				var sc speaker.Sidecar
				if err != nil || json.Unmarshal(raw, &sc) != nil || sc.Played == 0 {
					continue
				}
				if first == 0 || sc.FirstSampleUnixNS < first {
					first = sc.FirstSampleUnixNS
				}
			}
		}
		if first == 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	return first
}
