package daemon_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/loalang/loalang/broadcast/media"
	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/firmware-sim/relayboard"
	"github.com/loalang/loalang/firmware-sim/speaker"
	"github.com/loalang/loalang/internal/alsatest"
	"github.com/loalang/loalang/internal/audiotest"
)

// hallConfig adds a wired zone on a simulated relay board to a test
// village, with short timings.
func hallConfig(t *testing.T, dir string, board *relayboard.Board) config.Config {
	cfg := testConfig(t, dir, 3)
	cfg.Zones = append(cfg.Zones, config.Zone{ID: "hall-line", Wired: true})
	cfg.RelayBoards = []config.RelayBoard{{ID: "relay-01", Port: board.Path(), Baud: 9600, SlaveID: 1, AmpCoil: 0,
		ZoneCoils: map[string]int{"hall-line": 1}, Warmup: 300 * time.Millisecond, Tail: 200 * time.Millisecond, IdleOff: 400 * time.Millisecond}}
	cfg.Sound.Enabled = true
	cfg.Sound.OutputLatency = 150 * time.Millisecond
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestHallEndToEnd is issue 5's first acceptance item, run in a child
// process whose ALSA default device is a FIFO the test reads at 48 kHz.
func TestHallEndToEnd(t *testing.T) {
	dir := t.TempDir()
	conf, fifo := alsatest.FIFOConfig(t, dir)
	alsatest.RunChild(t, "TestChildHallEndToEnd", "ALSA_CONFIG_PATH="+conf, "LOALANG_TEST_FIFO="+fifo)
}

func TestChildHallEndToEnd(t *testing.T) {
	alsatest.ChildOnly(t)
	board, err := relayboard.New(relayboard.Options{Link: filepath.Join(t.TempDir(), "relay0"), Coils: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer board.Close()
	capture := alsatest.StartCapture(t, os.Getenv("LOALANG_TEST_FIFO"), 2)
	cfg := hallConfig(t, t.TempDir(), board)
	d := startDaemon(t, cfg)
	rec := t.TempDir()
	speakers := startSpeakers(t, cfg.DataDir, func(c *speaker.Config) { c.RecordDir = rec; c.KeepPlayed = 0 })
	c := login(t, "http://"+d.Ready().HTTP, "admin", adminPassword(t, cfg.DataDir))
	eventually(t, 10*time.Second, "speakers ready", func() bool {
		for _, s := range speakers {
			if !s.Ready() {
				return false
			}
		}
		return true
	})

	code, body := c.upload("tone.wav", audiotest.WAV(audiotest.Tone(1000, 0.5, 48000, 2000), 48000, 1))
	if code != 201 {
		t.Fatalf("upload: %d %s", code, body)
	}
	var info media.Info
	json.Unmarshal(body, &info)
	code, body = c.do("POST", "/api/v1/broadcasts", map[string]any{"media_id": info.ID, "zones": []string{"a", "hall-line"}, "volume": 100})
	if code != 201 {
		t.Fatalf("broadcast: %d %s", code, body)
	}
	var b broadcastView
	json.Unmarshal(body, &b)

	type step struct {
		Name string    `json:"name"`
		At   time.Time `json:"at"`
	}
	var wired []struct {
		Played uint32 `json:"frames_played"`
		Steps  []step `json:"steps"`
	}
	eventually(t, 15*time.Second, "broadcast done and the amplifier off", func() bool {
		_, body := c.do("GET", "/api/v1/broadcasts/"+b.ID, nil)
		var v struct {
			State string          `json:"state"`
			Wired json.RawMessage `json:"wired"`
		}
		json.Unmarshal(body, &v)
		json.Unmarshal(v.Wired, &wired)
		return v.State == "done" && len(wired) == 1 && len(wired[0].Steps) == 4
	})
	capture.Stop()
	t.Logf("wired delivery: %+v", wired[0])
	names := ""
	for _, s := range wired[0].Steps {
		names += s.Name + " "
	}
	if names != "amp_on zones_on zones_off amp_off " {
		t.Fatalf("relay steps %q", names)
	}
	if wired[0].Played < uint32(info.Packets)*90/100 {
		t.Fatalf("sink played %d of %d packets", wired[0].Played, info.Packets)
	}

	// The board saw the sequence in order, the zone only after the warm-up,
	// and everything is off at the end.
	hist := board.History()
	var ampOn, zoneOn, zoneOff, ampOff time.Time
	for _, h := range hist {
		switch {
		case h.Coil == 0 && h.On && ampOn.IsZero():
			ampOn = h.At
		case h.Coil == 1 && h.On && zoneOn.IsZero():
			zoneOn = h.At
		case h.Coil == 1 && !h.On:
			zoneOff = h.At
		case h.Coil == 0 && !h.On:
			ampOff = h.At
		}
	}
	if ampOn.IsZero() || !ampOn.Before(zoneOn) || zoneOn.Sub(ampOn) < 300*time.Millisecond || !zoneOn.Before(zoneOff) || !zoneOff.Before(ampOff) {
		t.Fatalf("coil history out of order: %+v", hist)
	}
	for i, on := range board.Coils() {
		if on {
			t.Fatalf("coil %d still on", i)
		}
	}

	// The sound card played the tone.
	lufs, _ := media.IntegratedLoudness(audiotest.Tone(1000, 0.5, 48000, 2000))
	want := 0.5 * math.Pow(10, (cfg.Broadcast.LoudnessLUFS-lufs)/20)
	out := capture.Mono()
	onset := -1
	for i, v := range out {
		if math.Abs(float64(v)) > want/4 {
			onset = i
			break
		}
	}
	if onset < 0 || onset+48000 > len(out) {
		t.Fatalf("no tone in %d captured samples", len(out))
	}
	// Judge the level per 50 ms block over 1.5 s of the tone: the median
	// block must be within 10 %, so one late packet on a loaded machine (a
	// 20 ms gap, counted as late by the sink) cannot fail the test, while
	// a wrong level or noise still does.
	var levels, others []float64
	for at := onset + 4800; at+2400 <= onset+4800+72000 && at+2400 <= len(out); at += 2400 {
		levels = append(levels, audiotest.Goertzel(out[at:at+2400], 48000, 1000))
		others = append(others, audiotest.Goertzel(out[at:at+2400], 48000, 3100))
	}
	slices.Sort(levels)
	slices.Sort(others)
	if got := levels[len(levels)/2]; math.Abs(got-want)/want > 0.10 {
		t.Fatalf("sound card 1 kHz amplitude (median of %d blocks) %.3f, want %.3f ±10%%; blocks %.3f", len(levels), got, want, levels)
	}
	if other := others[len(others)/2]; other > want*0.05 {
		t.Fatalf("sound card energy %.3f at 3.1 kHz", other)
	}

	// Play-at alignment: the tone's onset at the sound card against its
	// onset at an IP speaker of zone a, both in host time.
	for id, s := range speakers {
		if s.ID() != "spk-01" {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(rec, fmt.Sprintf("%s-%d.json", id, b.StreamIDs[0])))
		if err != nil {
			t.Fatal(err)
		}
		var sc speaker.Sidecar
		json.Unmarshal(raw, &sc)
		wav, _ := os.ReadFile(filepath.Join(rec, fmt.Sprintf("%s-%d.wav", id, b.StreamIDs[0])))
		pcm, _, _, _ := audiotest.ParseWAV(wav)
		spkOnset := -1
		for i, v := range pcm {
			if math.Abs(float64(v)) > want/4 {
				spkOnset = i
				break
			}
		}
		atSpeaker := time.Unix(0, sc.FirstSampleUnixNS).Add(time.Duration(spkOnset) * time.Second / 48000)
		t.Logf("alignment: sound card onset minus IP speaker onset = %v (output latency %v)",
			capture.TimeOf(onset).Sub(atSpeaker).Round(100*time.Microsecond), cfg.Sound.OutputLatency)
	}
}

// TestHallWithoutSoundCard is issue 5's "no sound device": the daemon
// starts, says why the sink is down, and IP speakers keep working.
func TestHallWithoutSoundCard(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "asound.conf")
	if err := os.WriteFile(conf, []byte("pcm.!default { type hw card 7 }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	alsatest.RunChild(t, "TestChildHallWithoutSoundCard", "ALSA_CONFIG_PATH="+conf)
}

func TestChildHallWithoutSoundCard(t *testing.T) {
	alsatest.ChildOnly(t)
	board, err := relayboard.New(relayboard.Options{Link: filepath.Join(t.TempDir(), "relay0"), Coils: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer board.Close()
	cfg := hallConfig(t, t.TempDir(), board)
	d := startDaemon(t, cfg)
	startSpeakers(t, cfg.DataDir, nil)
	c := login(t, "http://"+d.Ready().HTTP, "admin", adminPassword(t, cfg.DataDir))
	code, body := c.do("GET", "/api/v1/hall", nil)
	var st struct {
		Sink struct {
			Configured, OK bool
			Reason         string
		}
		Board struct{ OK bool }
	}
	json.Unmarshal(body, &st)
	if code != 200 || !st.Sink.Configured || st.Sink.OK || st.Sink.Reason == "" {
		t.Fatalf("hall status %d %s", code, body)
	}
	t.Logf("sink down: %s", st.Sink.Reason)
	eventually(t, 5*time.Second, "speakers online", allOnline(c, 3))
	code, body = c.do("GET", "/metrics", nil)
	if code != 200 || !bytes.Contains(body, []byte("\nloalang_hall_sink_up 0\n")) {
		t.Fatalf("metrics do not show the sink down")
	}
}

// TestHallColdAmplifier: with the amplifier off and the demo's 2 s warm-up
// and 500 ms play-out delay, a broadcast to an IP zone and the wired zone
// starts in both only once the hall can play it. The wired zone's coil is
// confirmed on before the first sample plays anywhere, the sound card plays
// the announcement's first 100 ms (a 500 Hz lead-in) into the live line,
// and the IP speaker and the sound card start together.
func TestHallColdAmplifier(t *testing.T) {
	dir := t.TempDir()
	conf, fifo := alsatest.FIFOConfig(t, dir)
	alsatest.RunChild(t, "TestChildHallColdAmplifier", "ALSA_CONFIG_PATH="+conf, "LOALANG_TEST_FIFO="+fifo)
}

func TestChildHallColdAmplifier(t *testing.T) {
	alsatest.ChildOnly(t)
	board, err := relayboard.New(relayboard.Options{Link: filepath.Join(t.TempDir(), "relay0"), Coils: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer board.Close()
	capture := alsatest.StartCapture(t, os.Getenv("LOALANG_TEST_FIFO"), 2)
	cfg := hallConfig(t, t.TempDir(), board)
	cfg.RelayBoards[0].Warmup = 2 * time.Second
	cfg.Broadcast.PlayoutDelay = 500 * time.Millisecond
	d := startDaemon(t, cfg)
	rec := t.TempDir()
	speakers := startSpeakers(t, cfg.DataDir, func(c *speaker.Config) { c.RecordDir = rec; c.KeepPlayed = 0 })
	c := login(t, "http://"+d.Ready().HTTP, "admin", adminPassword(t, cfg.DataDir))
	eventually(t, 10*time.Second, "speakers ready", func() bool {
		for _, s := range speakers {
			if !s.Ready() {
				return false
			}
		}
		return true
	})
	for i, on := range board.Coils()[:2] {
		if on {
			t.Fatalf("coil %d on before the broadcast: the amplifier must start cold", i)
		}
	}

	// 100 ms at 500 Hz, then 900 ms at 1 kHz.
	clip := append(audiotest.Tone(500, 0.5, 48000, 100), audiotest.Tone(1000, 0.5, 48000, 900)...)
	code, body := c.upload("cold.wav", audiotest.WAV(clip, 48000, 1))
	if code != 201 {
		t.Fatalf("upload: %d %s", code, body)
	}
	var info media.Info
	json.Unmarshal(body, &info)
	asked := time.Now()
	code, body = c.do("POST", "/api/v1/broadcasts", map[string]any{"media_id": info.ID, "zones": []string{"a", "hall-line"}, "volume": 100})
	if code != 201 {
		t.Fatalf("broadcast: %d %s", code, body)
	}
	var b broadcastView
	json.Unmarshal(body, &b)
	type step struct {
		Name string    `json:"name"`
		At   time.Time `json:"at"`
	}
	var wired []struct {
		Steps []step `json:"steps"`
	}
	eventually(t, 20*time.Second, "broadcast done and the amplifier off", func() bool {
		_, body := c.do("GET", "/api/v1/broadcasts/"+b.ID, nil)
		var v struct {
			State string          `json:"state"`
			Wired json.RawMessage `json:"wired"`
		}
		json.Unmarshal(body, &v)
		json.Unmarshal(v.Wired, &wired)
		return v.State == "done" && len(wired) == 1 && len(wired[0].Steps) == 4
	})
	capture.Stop()
	var zonesOn time.Time
	for _, s := range wired[0].Steps {
		if s.Name == "zones_on" {
			zonesOn = s.At // confirmed by reading the coils back
		}
	}
	var coilOn time.Time
	for _, h := range board.History() {
		if h.Coil == 1 && h.On && coilOn.IsZero() {
			coilOn = h.At
		}
	}
	if zonesOn.IsZero() || coilOn.IsZero() || coilOn.After(zonesOn) {
		t.Fatalf("zone coil on %v, confirmed %v", coilOn, zonesOn)
	}

	lufs, _ := media.IntegratedLoudness(clip)
	want := 0.5 * math.Pow(10, (cfg.Broadcast.LoudnessLUFS-lufs)/20)
	onsetOf := func(pcm []float32) int {
		for i, v := range pcm {
			if math.Abs(float64(v)) > want/4 {
				return i
			}
		}
		return -1
	}
	// The sound card: onset, and the 500 Hz lead-in in full.
	out := capture.Mono()
	onset := onsetOf(out)
	if onset < 0 || onset+48000 > len(out) {
		t.Fatalf("no announcement in %d captured samples", len(out))
	}
	atCard := capture.TimeOf(onset)
	lead := audiotest.Goertzel(out[onset+480:onset+4320], 48000, 500) // 10–90 ms
	body1k := audiotest.Goertzel(out[onset+7200:onset+21600], 48000, 1000)
	t.Logf("sound card: 500 Hz lead-in amplitude %.3f, then 1 kHz %.3f (want %.3f)", lead, body1k, want)
	if math.Abs(lead-want)/want > 0.15 || math.Abs(body1k-want)/want > 0.15 {
		t.Errorf("sound card lost the announcement's start: 500 Hz %.3f, 1 kHz %.3f, want %.3f ±15%%", lead, body1k, want)
	}

	// The IP speaker of zone a.
	var atSpeaker time.Time
	for id, s := range speakers {
		if s.ID() != "spk-01" {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(rec, fmt.Sprintf("%s-%d.json", id, b.StreamIDs[0])))
		if err != nil {
			t.Fatal(err)
		}
		var sc speaker.Sidecar
		json.Unmarshal(raw, &sc)
		wav, _ := os.ReadFile(filepath.Join(rec, fmt.Sprintf("%s-%d.wav", id, b.StreamIDs[0])))
		pcm, _, _, _ := audiotest.ParseWAV(wav)
		i := onsetOf(pcm)
		if i < 0 {
			t.Fatal("no announcement at the IP speaker")
		}
		atSpeaker = time.Unix(0, sc.FirstSampleUnixNS).Add(time.Duration(i) * time.Second / 48000)
	}
	first := atCard
	if atSpeaker.Before(first) {
		first = atSpeaker
	}
	align := atCard.Sub(atSpeaker)
	t.Logf("cold amplifier (warm-up %v, play-out delay %v): amp on %v after the request, zone coil confirmed on %v before the first sample (sound card %v, IP speaker %v after the request); sound card minus IP speaker onset %v",
		cfg.RelayBoards[0].Warmup, cfg.Broadcast.PlayoutDelay, wired[0].Steps[0].At.Sub(asked).Round(time.Millisecond),
		first.Sub(zonesOn).Round(time.Millisecond), atCard.Sub(asked).Round(time.Millisecond), atSpeaker.Sub(asked).Round(time.Millisecond),
		align.Round(100*time.Microsecond))
	if !zonesOn.Before(first) {
		t.Errorf("zone coil confirmed on %v after the first sample played", zonesOn.Sub(first))
	}
	// Under -race on the shared host the FIFO device's delay varies from
	// run to run (11–108 ms measured, on the main branch's sink too,
	// docs/hall.md): there only gross misalignment (the old 1.5 s) fails;
	// the 5 ms bound holds for builds without -race.
	bound := 5 * time.Millisecond
	if raceEnabled {
		bound = 250 * time.Millisecond
	}
	if align.Abs() > bound {
		t.Errorf("sound card and IP speaker %v apart, want within %v", align, bound)
	}
}
