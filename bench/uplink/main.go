// Command uplink is issue 13's scale benchmark: a province's clustered
// MQTT broker (3 NATS server nodes with MQTT and JetStream, child
// processes on this machine) and 10 villages, each a loalangd child
// process with its embedded broker and 20 simulated speakers
// (firmware-sim/speaker, in this process), their uplinks spread over the
// nodes through cut-able TCP proxies. A province operator publishes signed
// emergency broadcasts. It reports:
//
//   - province publish -> first sample played at every village's speakers,
//     p50 and max over all speakers, per run, and the median and min-max
//     over runs;
//   - the outbox drain after an uplink outage (every village's line cut)
//     with device events generated throughout;
//   - what happens when one broker node is killed (SIGKILL) mid-run: the
//     reconnection of its villages, whether the emergency still played
//     everywhere, and whether any event was lost.
//
// Figures merge into bench/results.json under "uplink".
package main

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/loalang/loalang/bench/fanout/harness"
	"github.com/loalang/loalang/bench/results"
	"github.com/loalang/loalang/firmware-sim/speaker"
	"github.com/loalang/loalang/uplink"
)

const province = "p1"

type options struct {
	villages, speakers, nodes, runs int
	outage, eventEvery, clip        time.Duration
	maxBackoff                      time.Duration
	loalangd, results, key          string
	killNode                        bool
}

func main() {
	if len(os.Args) > 2 && os.Args[1] == "-node" {
		if err := runNode(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "node:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	flag.IntVar(&o.villages, "villages", 10, "villages (loalangd processes)")
	flag.IntVar(&o.speakers, "speakers", 20, "simulated speakers per village")
	flag.IntVar(&o.nodes, "nodes", 3, "broker nodes in the province cluster")
	flag.IntVar(&o.runs, "runs", 3, "emergency broadcasts measured")
	flag.DurationVar(&o.outage, "outage", 10*time.Minute, "uplink outage before the drain is measured")
	flag.DurationVar(&o.eventEvery, "event-every", time.Second, "per village, one speaker goes offline or online this often (two audit-derived events per cycle)")
	flag.DurationVar(&o.clip, "clip", 5*time.Second, "length of the emergency media")
	flag.DurationVar(&o.maxBackoff, "max-backoff", 10*time.Second, "the villages' uplink.max_backoff")
	flag.BoolVar(&o.killNode, "kill-node", true, "kill one broker node during the last phase")
	flag.StringVar(&o.loalangd, "loalangd", "bin/loalangd", "loalangd binary (built from ./cmd/loalangd if missing)")
	flag.StringVar(&o.results, "results", "bench/results.json", "results file to merge into")
	flag.StringVar(&o.key, "key", "uplink", "top-level key of the results")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/uplink:", err)
		os.Exit(1)
	}
}

// village is one loalangd with its speakers and its proxies to the nodes.
type village struct {
	site, commune string
	home          int // index of the node it prefers
	d             *harness.Daemon
	fleet         *harness.Fleet
	rec           string
	proxies       []*proxy
	api           *apiClient
}

// province is the operator's side: it publishes commands and collects
// every village's events, de-duplicated by id.
type provinceDesk struct {
	pc mqtt.Client
	mu sync.Mutex
	// per site: unique event ids, and command reports by command id
	seen     map[string]map[string]bool
	dups     int
	reports  map[string]map[string]uplink.Report // command id -> site -> latest started report
	outOrder int
	lastSeq  map[string]uint64
	arrivals []time.Time // of every unique event
}

func newProvince(addr string) (*provinceDesk, error) {
	p := &provinceDesk{seen: map[string]map[string]bool{}, reports: map[string]map[string]uplink.Report{}, lastSeq: map[string]uint64{}}
	p.pc = mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("province-desk").SetCleanSession(true).SetOrderMatters(true))
	if tok := p.pc.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("province connect: %v", tok.Error())
	}
	tok := p.pc.Subscribe("loalang/v1/"+province+"/+/+/events", 1, func(_ mqtt.Client, m mqtt.Message) {
		var e uplink.Event
		if json.Unmarshal(m.Payload(), &e) != nil {
			return
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		s := p.seen[e.Site]
		if s == nil {
			s = map[string]bool{}
			p.seen[e.Site] = s
		}
		if s[e.ID] {
			p.dups++
			return
		}
		s[e.ID] = true
		p.arrivals = append(p.arrivals, time.Now())
		if e.Seq <= p.lastSeq[e.Site] {
			p.outOrder++
		}
		p.lastSeq[e.Site] = e.Seq
		var r uplink.Report
		if e.Kind == "command" && json.Unmarshal(e.Data, &r) == nil && r.Outcome == uplink.OutcomeStarted {
			if p.reports[r.CommandID] == nil {
				p.reports[r.CommandID] = map[string]uplink.Report{}
			}
			p.reports[r.CommandID][e.Site] = r
		}
	})
	if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("province subscribe: %v", tok.Error())
	}
	return p, nil
}

func (p *provinceDesk) started(cmd string) map[string]uplink.Report {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]uplink.Report{}
	for k, v := range p.reports[cmd] {
		out[k] = v
	}
	return out
}

func (p *provinceDesk) unique(site string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.seen[site])
}

func run(ctx context.Context, o options) error {
	cmdline := "go run ./bench/uplink " + strings.Join(os.Args[1:], " ")
	fmt.Println("command:", cmdline)
	work, err := os.MkdirTemp("", "bench-uplink-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	bin, err := harness.Binary(ctx, o.loalangd, "./cmd/loalangd", work, "loalangd")
	if err != nil {
		return err
	}
	fmt.Printf("load average before setup: %s\n", results.LoadAverage())
	nodes, err := startCluster(ctx, work, o.nodes)
	defer func() {
		for _, nd := range nodes {
			if nd.child != nil {
				nd.child.Close(5 * time.Second)
			}
		}
	}()
	if err != nil {
		return err
	}
	fmt.Printf("cluster: %d NATS nodes up (MQTT %v)\n", len(nodes), func() []string {
		var s []string
		for _, n := range nodes {
			s = append(s, n.mqtt)
		}
		return s
	}())

	pub, priv, _ := ed25519.GenerateKey(nil)
	media := harness.EncodeWAV(harness.SyntheticSpeech(int(o.clip/time.Millisecond)*48), 48000)
	sum := sha256.Sum256(media)
	mediaURL, closeMedia, err := serveMedia(media)
	if err != nil {
		return err
	}
	defer closeMedia()

	desk, err := newProvince(nodes[0].mqtt)
	if err != nil {
		return err
	}
	defer desk.pc.Disconnect(100)

	var villages []*village
	defer func() {
		for _, v := range villages {
			if v.fleet != nil {
				v.fleet.Close()
			}
			if v.d != nil {
				v.d.Close()
			}
			for _, p := range v.proxies {
				p.Close()
			}
		}
	}()
	for i := range o.villages {
		v := &village{site: fmt.Sprintf("v%02d", i+1), commune: fmt.Sprintf("c%d", i/5+1), home: i % len(nodes)}
		var urls []string
		for k := range nodes {
			nd := nodes[(v.home+k)%len(nodes)]
			p, err := newProxy(nd.mqtt)
			if err != nil {
				return err
			}
			v.proxies = append(v.proxies, p)
			urls = append(urls, p.URL())
		}
		dir := filepath.Join(work, v.site)
		os.MkdirAll(dir, 0o700)
		v.rec = filepath.Join(dir, "rec")
		os.MkdirAll(v.rec, 0o700)
		cfg := harness.VillageConfig(v.site, o.speakers, 2) + fmt.Sprintf(`uplink:
  url: %q
  client_id: %s
  province: %s
  commune: %s
  province_keys: [%q]
  media_allow: ["127.0.0.1/32"]
  max_backoff: %s
`, strings.Join(urls, ","), v.site, province, v.commune, uplink.PublicKeyString(pub), o.maxBackoff)
		if v.d, err = harness.StartDaemon(ctx, bin, dir, cfg); err != nil {
			return fmt.Errorf("village %s: %w", v.site, err)
		}
		villages = append(villages, v)
		// Two speakers per village record (Opus decoding for 200 speakers
		// in this process would be the benchmark's own bottleneck); a
		// village's speakers play a stream at one play-at time, so two
		// stand for all twenty. Every speaker's delivery report still says
		// whether it played.
		if v.fleet, err = harness.StartFleet(v.d.Bundle, func(i int, c *speaker.Config) {
			if i%10 == 0 {
				c.RecordDir, c.KeepPlayed = v.rec, 0
			}
		}); err != nil {
			return err
		}
		if v.api, err = newAPI(v.d.HTTP, dir); err != nil {
			return err
		}
	}
	for _, v := range villages {
		if err := v.fleet.WaitReady(ctx, 120*time.Second); err != nil {
			return fmt.Errorf("village %s: %w", v.site, err)
		}
	}
	if err := waitAll(ctx, villages, 60*time.Second, "uplinks connected", func(s uplink.Status) bool { return s.Connected }); err != nil {
		return err
	}
	fmt.Printf("%d villages x %d speakers up; uplinks connected\n", len(villages), o.speakers)

	sign := func(id string) []byte {
		now := time.Now().UTC()
		env, _ := uplink.Sign(uplink.Command{V: 1, ID: id, Nonce: uplink.NewNonce(), Level: uplink.LevelProvince, Sender: province,
			Issued: now, Expires: now.Add(10 * time.Minute), Target: uplink.Target{Province: province}, Urgency: uplink.UrgencyEmergency,
			Media: &uplink.MediaRef{URL: mediaURL, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(media))}}, priv)
		return env
	}

	// Phase 1: emergency latency, o.runs times.
	var runsOut []map[string]any
	var p50s, maxs []float64
	fmt.Printf("\n%-5s %-16s %10s %10s %10s %8s\n", "run", "load avg", "p50 ms", "max ms", "recorders", "played")
	for r := range o.runs {
		la := results.LoadAverage()
		lat, played, err := emergency(ctx, desk, villages, sign, fmt.Sprintf("storm-%d", r+1), o)
		if err != nil {
			return err
		}
		p50, mx := harness.Percentile(lat, 0.5), harness.Percentile(lat, 1)
		fmt.Printf("%-5d %-16s %10.0f %10.0f %10d %8d\n", r+1, la, p50, mx, len(lat), played)
		p50s, maxs = append(p50s, p50), append(maxs, mx)
		runsOut = append(runsOut, map[string]any{"load_avg": la, "p50_ms": harness.Round(p50, 1), "max_ms": harness.Round(mx, 1), "recording_speakers": len(lat), "speakers_played": played})
	}
	sort.Float64s(p50s)
	sort.Float64s(maxs)
	fmt.Printf("median p50 %.0f ms (min-max %.0f-%.0f), median max %.0f ms (min-max %.0f-%.0f)\n",
		harness.Median(p50s), p50s[0], p50s[len(p50s)-1], harness.Median(maxs), maxs[0], maxs[len(maxs)-1])

	// Phase 2: outage and drain.
	drain, err := outage(ctx, desk, villages, o)
	if err != nil {
		return err
	}

	// Phase 3: a node killed mid-run.
	var kill map[string]any
	if o.killNode && len(nodes) > 1 {
		if kill, err = killMidRun(ctx, desk, villages, nodes, sign, o); err != nil {
			return err
		}
	}

	out := map[string]any{
		"command":  cmdline,
		"broker":   fmt.Sprintf("NATS server %s, %d nodes clustered (routes), MQTT + JetStream, child processes on this machine", natsVersion(), len(nodes)),
		"villages": len(villages), "speakers_per_village": o.speakers,
		"emergency": map[string]any{
			"what":          "province publish (QoS 1) -> first sample played (recording speakers: 2 per village, which play at the village's common play-at time); speakers_played counts every speaker whose delivery report has frames played; media fetched by URL+sha256, decoded and encoded by each village",
			"clip_s":        o.clip.Seconds(),
			"p50_ms_median": harness.Round(harness.Median(p50s), 1), "p50_ms_min": harness.Round(p50s[0], 1), "p50_ms_max": harness.Round(p50s[len(p50s)-1], 1),
			"max_ms_median": harness.Round(harness.Median(maxs), 1), "max_ms_min": harness.Round(maxs[0], 1), "max_ms_max": harness.Round(maxs[len(maxs)-1], 1),
			"runs": runsOut,
		},
		"drain":     drain,
		"node_kill": kill,
	}
	if err := results.Merge(o.results, o.key, out); err != nil {
		return err
	}
	fmt.Printf("\nmerged key %q into %s\n", o.key, o.results)
	return nil
}

func natsVersion() string { return "v2.15.2" }

// emergency publishes one signed emergency and waits until every speaker
// of every village has a recording of it; it returns each speaker's
// publish -> first sample latency in ms and how many played.
func emergency(ctx context.Context, desk *provinceDesk, villages []*village, sign func(string) []byte, id string, o options) ([]float64, int, error) {
	lat, played, _, err := emergencyResend(ctx, desk, villages, sign(id), id, o, 0)
	return lat, played, err
}

// emergencyResend is emergency with the operator's resend: while some
// village has not reported the command started, the same envelope (same
// nonce: villages that have it refuse it as a replay) is published again
// every resend (0: never). It returns how many times it was resent.
func emergencyResend(ctx context.Context, desk *provinceDesk, villages []*village, env []byte, id string, o options, resend time.Duration) ([]float64, int, int, error) {
	t0 := time.Now()
	resent := 0
	publish := func() error {
		if tok := desk.pc.Publish("loalang/v1/"+province+"/cmd", 1, false, env); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
			return fmt.Errorf("publish: %v", tok.Error())
		}
		return nil
	}
	if err := publish(); err != nil {
		return nil, 0, 0, err
	}
	deadline := time.Now().Add(60*time.Second + 2*o.clip)
	last := time.Now()
	for len(desk.started(id)) < len(villages) {
		if time.Now().After(deadline) {
			return nil, 0, resent, fmt.Errorf("%s: only %d of %d villages started it", id, len(desk.started(id)), len(villages))
		}
		if resend > 0 && time.Since(last) > resend {
			if err := publish(); err == nil {
				resent++
			}
			last = time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
	started := desk.started(id)
	var lat []float64
	played := 0
	for _, v := range villages {
		b, err := v.d.WaitFinal(ctx, started[v.site].BroadcastID, o.clip, 60*time.Second+2*o.clip)
		if err != nil {
			return nil, 0, resent, fmt.Errorf("%s %s: %w", v.site, id, err)
		}
		if len(b.StreamIDs) == 0 {
			return nil, 0, resent, fmt.Errorf("%s %s: broadcast %s (%s) lists no stream", v.site, id, b.ID, b.State)
		}
		// The speakers write their recordings' sidecars as the stream ends.
		for _, dv := range b.Devices {
			if dv.FramesPlayed > 0 {
				played++
			}
		}
		wait := time.Now().Add(10 * time.Second)
		for i, s := range v.fleet.Speakers {
			if i%10 != 0 {
				continue
			}
			var first int64
			for first == 0 && time.Now().Before(wait) {
				for _, sid := range b.StreamIDs {
					raw, err := os.ReadFile(filepath.Join(v.rec, fmt.Sprintf("%s-%d.json", s.ID(), sid)))
					var sc speaker.Sidecar
					if err != nil || json.Unmarshal(raw, &sc) != nil || sc.Played == 0 {
						continue
					}
					if first == 0 || sc.FirstSampleUnixNS < first {
						first = sc.FirstSampleUnixNS
					}
				}
				if first == 0 {
					time.Sleep(100 * time.Millisecond)
				}
			}
			if first > 0 {
				lat = append(lat, float64(first-t0.UnixNano())/1e6)
			}
		}
	}
	return lat, played, resent, nil
}

func waitAll(ctx context.Context, villages []*village, within time.Duration, what string, cond func(uplink.Status) bool) error {
	deadline := time.Now().Add(within)
	for {
		ok := 0
		for _, v := range villages {
			if s, err := v.api.status(); err == nil && cond(s) {
				ok++
			}
		}
		if ok == len(villages) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d of %d after %s", what, ok, len(villages), within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// churn makes events: in each village one speaker goes offline or comes
// back every period (device.offline / device.online audit entries, which
// the uplink forwards as device events), until stop is closed.
func churn(villages []*village, every time.Duration, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for _, v := range villages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(every)
			defer t.Stop()
			i := 0
			for {
				select {
				case <-stop:
					for _, s := range v.fleet.Speakers {
						s.SetOnline(true)
					}
					return
				case <-t.C:
				}
				s := v.fleet.Speakers[(i/2)%len(v.fleet.Speakers)]
				s.SetOnline(i%2 == 1)
				i++
			}
		}()
	}
	return &wg
}

// outage cuts every village's uplink for o.outage while events are made,
// restores it and measures the drain.
func outage(ctx context.Context, desk *provinceDesk, villages []*village, o options) (map[string]any, error) {
	fmt.Printf("\noutage: every uplink cut for %s, one speaker offline/online every %s per village; load avg %s\n", o.outage, o.eventEvery, results.LoadAverage())
	stop := make(chan struct{})
	wg := churn(villages, o.eventEvery, stop)
	for _, v := range villages {
		for _, p := range v.proxies {
			p.SetUp(false)
		}
	}
	select {
	case <-ctx.Done():
		close(stop)
		return nil, ctx.Err()
	case <-time.After(o.outage):
	}
	close(stop)
	wg.Wait()
	// Let the last presence changes reach the outboxes.
	time.Sleep(3 * time.Second)
	backlog := 0
	for _, v := range villages {
		s, err := v.api.status()
		if err != nil {
			return nil, err
		}
		backlog += s.Outbox.Depth
	}
	la := results.LoadAverage()
	desk.mu.Lock()
	mark := len(desk.arrivals)
	desk.mu.Unlock()
	restore := time.Now()
	for _, v := range villages {
		for _, p := range v.proxies {
			p.SetUp(true)
		}
	}
	if err := waitAll(ctx, villages, 2*o.maxBackoff+30*time.Second, "reconnected", func(s uplink.Status) bool { return s.Connected }); err != nil {
		return nil, err
	}
	reconnected := time.Since(restore)
	if err := waitAll(ctx, villages, 5*time.Minute, "outboxes drained", func(s uplink.Status) bool { return s.Outbox.Depth == 0 }); err != nil {
		return nil, err
	}
	drained := time.Since(restore)
	lost, dropped := 0, uint64(0)
	time.Sleep(2 * time.Second)
	for _, v := range villages {
		s, _ := v.api.status()
		dropped += s.Outbox.Dropped
		// Not lost: received, or still pending in the village's outbox.
		if got := desk.unique(v.site) + s.Outbox.Depth; uint64(got) < s.Outbox.Appended {
			lost += int(s.Outbox.Appended) - got
		}
	}
	desk.mu.Lock()
	dups, ooo := desk.dups, desk.outOrder
	desk.mu.Unlock()
	// The drain rate as the province saw it: the backlog's events over the
	// time from the first to the last arrival after the line came back.
	desk.mu.Lock()
	after := append([]time.Time(nil), desk.arrivals[mark:]...)
	desk.mu.Unlock()
	rate, window := 0.0, 0.0
	if len(after) > 1 {
		window = after[len(after)-1].Sub(after[0]).Seconds()
		rate = float64(len(after)-1) / window
	}
	fmt.Printf("%-10s %-8s %-12s %-12s %-10s %-12s %-6s %-5s %-8s\n", "outage", "backlog", "reconnect s", "drained s", "window s", "drain ev/s", "lost", "dups", "out-of-order")
	fmt.Printf("%-10s %-8d %-12.1f %-12.1f %-10.2f %-12.0f %-6d %-5d %-8d\n", o.outage, backlog, reconnected.Seconds(), drained.Seconds(), window, rate, lost, dups, ooo)
	return map[string]any{
		"outage_s": o.outage.Seconds(), "event_every_s": o.eventEvery.Seconds(), "load_avg": la,
		"backlog_events": backlog, "received_after_restore": len(after), "arrival_window_s": harness.Round(window, 3), "reconnect_s": harness.Round(reconnected.Seconds(), 2), "drained_s": harness.Round(drained.Seconds(), 2),
		"drain_events_per_s": harness.Round(rate, 0), "lost": lost, "dropped": dropped, "duplicates_at_receiver": dups, "out_of_order": ooo,
		"max_backoff_s": o.maxBackoff.Seconds(),
		"note":          "drain rate = events received by the province after the line came back / (last arrival - first arrival), all villages draining at once; reconnect_s and drained_s are polled every 100 ms from the villages' GET /api/v1/uplink; duplicates are counted before de-duplication by id",
	}, nil
}

// killMidRun publishes an emergency and SIGKILLs one node 300 ms later
// (the node its villages 2, 5, 8... prefer), with events being made, then
// checks every village played and nothing was lost.
func killMidRun(ctx context.Context, desk *provinceDesk, villages []*village, nodes []*node, sign func(string) []byte, o options) (map[string]any, error) {
	victim := nodes[1]
	var affected []*village
	for _, v := range villages {
		if v.home == 1 {
			affected = append(affected, v)
		}
	}
	fmt.Printf("\nnode kill: SIGKILL %s 300 ms after the emergency's publish; %d villages prefer it; load avg %s\n", victim.name, len(affected), results.LoadAverage())
	stop := make(chan struct{})
	wg := churn(villages, o.eventEvery, stop)
	time.Sleep(3 * time.Second)
	go func() { time.Sleep(300 * time.Millisecond); victim.kill() }()
	killedAt := time.Now().Add(300 * time.Millisecond)
	lat, played, resent, err := emergencyResend(ctx, desk, villages, sign("storm-kill"), "storm-kill", o, 10*time.Second)
	result := map[string]any{"killed": victim.name, "villages_on_it": len(affected), "operator_resends": resent,
		"resend_note": "the operator re-publishes the same envelope every 10 s until every village reported it started; villages that have it refuse the copy as a replay"}
	if err != nil {
		result["emergency_error"] = err.Error()
		fmt.Println("emergency during the kill:", err)
	} else {
		result["emergency_p50_ms"] = harness.Round(harness.Percentile(lat, 0.5), 1)
		result["emergency_max_ms"] = harness.Round(harness.Percentile(lat, 1), 1)
		result["speakers_played"] = played
		fmt.Printf("emergency during the kill: %d speakers played, p50 %.0f ms, max %.0f ms, %d resends\n", played, harness.Percentile(lat, 0.5), harness.Percentile(lat, 1), resent)
	}
	if err := waitAll(ctx, villages, 2*o.maxBackoff+60*time.Second, "reconnected after the kill", func(s uplink.Status) bool { return s.Connected }); err != nil {
		result["reconnect_error"] = err.Error()
	} else {
		result["all_reconnected_s_after_kill"] = harness.Round(time.Since(killedAt).Seconds(), 1)
	}
	time.Sleep(5 * time.Second)
	close(stop)
	wg.Wait()
	time.Sleep(3 * time.Second)
	if err := waitAll(ctx, villages, 2*time.Minute, "drained after the kill", func(s uplink.Status) bool { return s.Outbox.Depth == 0 }); err != nil {
		result["drain_error"] = err.Error()
	}
	time.Sleep(2 * time.Second)
	lost := 0
	for _, v := range villages {
		s, _ := v.api.status()
		// Not lost: received, or still pending in the village's outbox.
		if got := desk.unique(v.site) + s.Outbox.Depth; uint64(got) < s.Outbox.Appended {
			lost += int(s.Outbox.Appended) - got
		}
	}
	result["events_lost"] = lost
	for _, v := range affected {
		s, err := v.api.status()
		line := fmt.Sprintf("%s: connected %v, outbox %d, connects %d, last error %q (%v)", v.site, s.Connected, s.Outbox.Depth, s.Connects, s.LastError, err)
		fmt.Println("  " + line)
		result["village_"+v.site] = line
	}
	fmt.Printf("after the kill: all reconnected %v s after it, events lost %d\n", result["all_reconnected_s_after_kill"], lost)
	return result, nil
}
