// Command live measures live-speech latency through loalangd: a WHIP
// client (pion, standing in for the phone's browser, so its RTP send time
// is on the same clock, or headless Chromium with -browser chromium) sends
// 20 ms Opus packets of a tone to POST /api/v1/live/whip; speakers of
// firmware-sim and an MQTT probe subscribe to the zone. Per packet it
// reports
//
//   - send -> delivery: RTP send to the frame's arrival at a zone
//     subscriber (what a speaker receives; excludes the play-out delay);
//   - send -> playback: RTP send to the packet's play time at the speakers
//     (PlayAt + live play-out delay), i.e. what a listener hears.
//
// The baseline is an API ping's round trip to a speaker over the same
// broker, in the same process.
//
//	go run -tags nolibopusfile ./bench/live [-runs 3] [-browser pion|chromium] [-seconds 10] [-speakers 20]
//
// It does -runs complete runs (default 3), each with a fresh daemon,
// speakers and sender, and reads /proc/loadavg before each. It prints one
// line per run, then a table of median [min-max] over the runs, the load
// averages and the command. Results are merged into bench/results.json
// under "live" (pion) or "live_chromium" (Chromium):
//
//   - the top-level figures (send_to_delivery, send_to_playback,
//     playout_delay, baseline_ping_round_trip,
//     send_to_delivery_packet_N_of_frame, late_pct, timeline_jumps,
//     packets_sent) are the medians over the runs, each quantile taken
//     separately, under the field names a single run used to have;
//   - "spread" holds {median, min, max} over the runs for each of them:
//     spread.late_pct, spread.timeline_jumps, spread.packets_sent, and
//     spread.send_to_delivery.p50_ms (and p99_ms, max_ms, packets) for the
//     latency figures;
//   - "per_run" holds each run's full figures, "runs" their number,
//     "load_average_before" the load averages read before each run, and
//     "command" the command line.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	bmedia "github.com/loalang/loalang/broadcast/media"
	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/daemon"
	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/firmware-sim/speaker"
	"github.com/loalang/loalang/internal/audiotest"
)

func main() {
	seconds := flag.Int("seconds", 10, "seconds of live speech")
	nSpeakers := flag.Int("speakers", 20, "simulated speakers in the zone")
	runs := flag.Int("runs", 3, "complete runs (each a fresh daemon, speakers and sender); figures are the median over runs")
	resultsPath := flag.String("results", "bench/results.json", "results file to merge into")
	browser := flag.String("browser", "pion", "sender: pion (a pion WHIP client) or chromium (headless Chromium with a fake microphone, run in a network namespace with only lo)")
	flag.Parse()
	if *browser != "pion" && *browser != "chromium" {
		fmt.Fprintf(os.Stderr, "bench/live: -browser %q: want pion or chromium\n", *browser)
		os.Exit(2)
	}
	if *browser == "chromium" {
		reexecInNetns() // returns only inside the namespace (or where namespaces are not allowed)
	}
	if err := run(max(1, *runs), *seconds, *nSpeakers, *resultsPath, *browser); err != nil {
		fmt.Fprintln(os.Stderr, "bench/live:", err)
		os.Exit(1)
	}
}

type stats struct {
	Packets int     `json:"packets"`
	P50     float64 `json:"p50_ms"`
	P99     float64 `json:"p99_ms"`
	Max     float64 `json:"max_ms"`
}

func summarise(d []time.Duration) stats {
	if len(d) == 0 {
		return stats{}
	}
	slices.Sort(d)
	ms := func(x time.Duration) float64 { return float64(x.Microseconds()) / 1000 }
	q := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
	return stats{Packets: len(d), P50: ms(q(0.5)), P99: ms(q(0.99)), Max: ms(d[len(d)-1])}
}

// probeID is the device the benchmark's MQTT probe connects as.
const probeID = "bench-probe"

// oneRun is one complete measurement: a fresh daemon, speakers, probe and
// sender, torn down when it returns.
func oneRun(seconds, nSpeakers int, browser string) (runFigures, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp("", "bench-live-")
	if err != nil {
		return runFigures{}, fmt.Errorf("temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)
	cfg := config.Default()
	cfg.Site, cfg.DataDir = "bench", dir
	cfg.HTTP.Addr, cfg.MQTT.Listen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.WebRTC.UDPPort, cfg.WebRTC.LoopbackCandidates = 0, true
	cfg.Zones = []config.Zone{{ID: "a"}}
	for i := range nSpeakers {
		cfg.Devices = append(cfg.Devices, config.Device{ID: fmt.Sprintf("spk-%03d", i+1), Kind: "speaker", Zones: []string{"a"}})
	}
	// The MQTT probe is a device of its own: a login may use only its own
	// client id, so it cannot listen under a simulated speaker's.
	cfg.Devices = append(cfg.Devices, config.Device{ID: probeID, Kind: "speaker", Zones: []string{"a"}})
	if err := cfg.Validate(); err != nil {
		return runFigures{}, fmt.Errorf("configuration: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d, err := daemon.New(ctx, cfg, log)
	if err != nil {
		return runFigures{}, fmt.Errorf("start daemon: %w", err)
	}
	defer d.Close()

	raw, err := os.ReadFile(filepath.Join(dir, daemon.BundleFile))
	if err != nil {
		return runFigures{}, fmt.Errorf("read provisioning bundle: %w", err)
	}
	var bundle wire.Bundle
	if err := json.Unmarshal(raw, &bundle); err != nil {
		return runFigures{}, fmt.Errorf("read provisioning bundle: %w", err)
	}
	var wg sync.WaitGroup
	spkCtx, stopSpeakers := context.WithCancel(ctx)
	defer func() { stopSpeakers(); wg.Wait() }()
	var spks []*speaker.Speaker
	var dev wire.BundleDevice
	for _, dv := range bundle.Devices {
		if dv.ID == probeID {
			dev = dv
			continue
		}
		s, err := speaker.New(speaker.Config{ID: dv.ID, Site: bundle.Site, Broker: bundle.Broker, Username: dv.Username, Password: dv.Password,
			Zones: dv.Zones, HeartbeatEvery: time.Second})
		if err != nil {
			return runFigures{}, fmt.Errorf("speaker %s: %w", dv.ID, err)
		}
		spks = append(spks, s)
		wg.Add(1)
		go func() { defer wg.Done(); s.Run(spkCtx) }()
	}
	if !waitFor(15*time.Second, func() bool {
		for _, s := range spks {
			if !s.Ready() {
				return false
			}
		}
		return true
	}) {
		return runFigures{}, fmt.Errorf("speakers not ready after 15 s")
	}

	// The probe: delivery times of zone frames, and a baseline round trip.
	type rx struct {
		f    wire.Frame
		recv time.Time
	}
	var mu sync.Mutex
	var frames []rx
	var baseline []time.Duration
	probe := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(bundle.Broker).SetClientID(dev.ID).
		SetUsername(dev.Username).SetPassword(dev.Password).SetProtocolVersion(4))
	if tok := probe.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		return runFigures{}, fmt.Errorf("connect MQTT probe: %v", tok.Error())
	}
	defer probe.Disconnect(100)
	topics := wire.MustTopics(bundle.Site)
	probe.Subscribe(topics.ZoneAudio("a"), 0, func(_ mqtt.Client, m mqtt.Message) {
		recv := time.Now()
		var f wire.Frame
		if f.UnmarshalBinary(m.Payload()) == nil {
			mu.Lock()
			frames = append(frames, rx{f, recv})
			mu.Unlock()
		}
	}).Wait()
	// Baseline: an API ping's round trip to a speaker over the same broker
	// (a device account may not publish where it subscribes, so the probe
	// cannot time its own publish).
	base := "http://" + d.Ready().HTTP
	token, err := apiLogin(base, "admin", readSecret(filepath.Join(dir, daemon.AdminPassFile)))
	if err != nil {
		return runFigures{}, fmt.Errorf("sign in: %w", err)
	}
	for range 50 {
		start := time.Now()
		if out, err := apiDo(base, token, "POST", "/api/v1/devices/"+bundle.Devices[0].ID+"/ping", "", nil); err == nil && bytes.Contains(out, []byte("rtt_ms")) {
			baseline = append(baseline, time.Since(start))
		}
	}

	var sent []time.Time
	if browser == "chromium" {
		sent, err = chromiumSend(ctx, base, token, seconds, dir)
	} else {
		sent, err = pionSend(base, token, seconds)
	}
	if err != nil {
		return runFigures{}, fmt.Errorf("send live speech (%s): %w", browser, err)
	}
	mu.Lock()
	defer mu.Unlock()
	var toDelivery, toPlayback []time.Duration
	byIndex := map[int][]time.Duration{} // by position in the frame
	// Packets are matched to their send times by rank in stream order, not
	// by sequence number: after a stall longer than the engine's liveGap
	// the stream's timeline jumps forward (broadcast/live.go), so seq can
	// run ahead of the packet count. Frames are de-duplicated by seq.
	type rxPacket struct {
		seq     uint32
		pos     int
		recv    time.Time
		playAt  time.Time
		delayMS uint16
	}
	seen := map[uint32]bool{}
	var pkts []rxPacket
	for _, f := range frames {
		if f.f.Flags&wire.FlagLive == 0 || seen[f.f.Seq] {
			continue
		}
		seen[f.f.Seq] = true
		for i := range f.f.Packets {
			play := time.UnixMicro(f.f.PlayAt).Add(time.Duration(i)*wire.PacketMS*time.Millisecond + time.Duration(f.f.DelayMS)*time.Millisecond)
			pkts = append(pkts, rxPacket{seq: f.f.Seq + uint32(i), pos: i, recv: f.recv, playAt: play, delayMS: f.f.DelayMS})
		}
	}
	slices.SortFunc(pkts, func(a, b rxPacket) int { return int(a.seq) - int(b.seq) })
	jumps := 0
	var delays []time.Duration
	for k, p := range pkts {
		if k > 0 && p.seq != pkts[k-1].seq+1 {
			jumps++
		}
		if k >= len(sent) {
			break
		}
		toDelivery = append(toDelivery, p.recv.Sub(sent[k]))
		byIndex[p.pos] = append(byIndex[p.pos], p.recv.Sub(sent[k]))
		toPlayback = append(toPlayback, p.playAt.Sub(sent[k]))
		delays = append(delays, time.Duration(p.delayMS)*time.Millisecond)
	}
	late := 0
	for k := range toDelivery {
		if toDelivery[k] > toPlayback[k] {
			late++
		}
	}
	f := runFigures{
		Date:            time.Now().UTC().Format(time.RFC3339),
		PacketsSent:     len(sent),
		PacketsReceived: len(pkts),
		SendToDelivery:  summarise(toDelivery),
		SendToPlayback:  summarise(toPlayback),
		PlayoutDelay:    summarise(delays),
		Baseline:        summarise(baseline),
		TimelineJumps:   jumps,
		LatePackets:     late,
		LatePct:         100 * float64(late) / float64(max(1, len(toDelivery))),
	}
	for i := range cfg.Broadcast.PacketsPerFrame {
		f.ByPacket = append(f.ByPacket, summarise(byIndex[i]))
	}
	return f, nil
}

func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func readSecret(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

func apiLogin(base, user, pw string) (string, error) {
	body, _ := json.Marshal(map[string]string{"username": user, "password": pw})
	out, err := apiDo(base, "", "POST", "/api/v1/login", "application/json", body)
	if err != nil {
		return "", err
	}
	var r struct{ Token string }
	json.Unmarshal(out, &r)
	return r.Token, nil
}

func apiDo(base, token, method, path, ct string, body []byte) ([]byte, error) {
	req, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return out, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, out)
	}
	return out, nil
}

// pionSend is the default sender: a pion WHIP client on loopback standing in
// for the phone's browser, on the benchmark's own clock. It returns each
// packet's send time.
func pionSend(base, token string, seconds int) ([]time.Time, error) {
	ctx := context.Background()
	// The WHIP client.
	packets, err := bmedia.EncodePCM(ctx, audiotest.Tone(1000, 0.5, 48000, seconds*1000), 24000)
	if err != nil {
		return nil, err
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	defer pc.Close()
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "bench")
	if err != nil {
		return nil, err
	}
	if _, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		return nil, err
	}
	connected := make(chan struct{})
	var once sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
	})
	offer, _ := pc.CreateOffer(nil)
	gathered := webrtc.GatheringCompletePromise(pc)
	pc.SetLocalDescription(offer)
	<-gathered
	req, _ := http.NewRequest("POST", base+"/api/v1/live/whip?zones=a&priority=normal", strings.NewReader(pc.LocalDescription().SDP))
	req.Header.Set("Content-Type", "application/sdp")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		return nil, fmt.Errorf("WHIP: %d %s", resp.StatusCode, answer)
	}
	location := resp.Header.Get("Location")
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)}); err != nil {
		return nil, err
	}
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		return nil, fmt.Errorf("WHIP: not connected")
	}
	// Packet i goes out when the clock reaches t0 + i·20 ms, as from a
	// microphone's sample clock: after a stall of this process the late
	// packets go out at once (a time.Ticker would drop ticks, and the RTP
	// timeline would then fall behind the wall clock for good, which no
	// real capture device does).
	sent := make([]time.Time, len(packets))
	t0 := time.Now().Add(20 * time.Millisecond)
	for i, p := range packets {
		time.Sleep(time.Until(t0.Add(time.Duration(i) * 20 * time.Millisecond)))
		sent[i] = time.Now()
		if err := track.WriteSample(media.Sample{Data: p, Duration: 20 * time.Millisecond}); err != nil {
			return nil, err
		}
	}
	time.Sleep(500 * time.Millisecond) // the last frames drain
	if _, err := apiDo(base, token, "DELETE", location, "", nil); err != nil {
		return nil, err
	}
	return sent, nil
}
