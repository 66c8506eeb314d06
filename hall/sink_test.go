package hall

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/firmware-sim/relayboard"
	"github.com/loalang/loalang/internal/alsatest"
	"github.com/loalang/loalang/internal/audiotest"
	"gopkg.in/hraban/opus.v2"
)

func TestSinkToneBroadcast(t *testing.T) {
	dir := t.TempDir()
	conf, fifo := alsatest.FIFOConfig(t, dir)
	alsatest.RunChild(t, "TestChildToneBroadcast", "ALSA_CONFIG_PATH="+conf, "HALL_TEST_FIFO="+fifo, "HALL_TEST_DIR="+dir)
}

func TestSinkNoDevice(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "asound.conf")
	// A default PCM on a card that does not exist.
	if err := os.WriteFile(conf, []byte("pcm.!default { type hw card 7 }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	alsatest.RunChild(t, "TestChildNoDevice", "ALSA_CONFIG_PATH="+conf, "HALL_TEST_DIR="+dir)
}

func rms(s []float32) float64 {
	if len(s) == 0 {
		return 0
	}
	var sum float64
	for _, v := range s {
		sum += float64(v) * float64(v)
	}
	return math.Sqrt(sum / float64(len(s)))
}

// encodeTone encodes ms of a 1 kHz sine at amplitude amp into 20 ms Opus
// packets with libopus.
func encodeTone(t *testing.T, amp float64, ms int) [][]byte {
	enc, err := opus.NewEncoder(sampleRate, 1, opus.AppAudio)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.SetBitrate(48000); err != nil {
		t.Fatal(err)
	}
	pcm := audiotest.Tone(1000, amp, sampleRate, ms)
	var pkts [][]byte
	for i := 0; i+packetSamples <= len(pcm); i += packetSamples {
		buf := make([]byte, 1500)
		n, err := enc.EncodeFloat32(pcm[i:i+packetSamples], buf)
		if err != nil {
			t.Fatal(err)
		}
		pkts = append(pkts, buf[:n])
	}
	return pkts
}

func TestChildToneBroadcast(t *testing.T) {
	alsatest.ChildOnly(t)
	const (
		amp      = 0.5
		toneMS   = 1000
		delayMS  = 300
		perFrame = 3
		lateIdx  = 8  // frame sent after its play-at time
		lostIdx  = 11 // frame never sent
		latency  = 150 * time.Millisecond
	)
	cap := alsatest.StartCapture(t, os.Getenv("HALL_TEST_FIFO"), 2)
	board, err := relayboard.New(relayboard.Options{Link: filepath.Join(os.Getenv("HALL_TEST_DIR"), "relay0")})
	if err != nil {
		t.Fatal(err)
	}
	defer board.Close()
	h := runHall(t, Config{Board: boardConfig(board.Path()), Sink: &SinkConfig{OutputLatency: latency, Channels: 2}})
	if st := h.Status().Sink; !st.OK || st.Playing {
		t.Fatalf("sink status %+v", st)
	}

	pkts := encodeTone(t, amp, toneMS)
	startAt := time.Now().Add(200 * time.Millisecond)
	ctl := startCtl(21, wire.PriorityNormal)
	ctl.StartAt, ctl.PlayoutDelayMS, ctl.Packets = startAt.UnixMicro(), delayMS, uint32(len(pkts))
	h.Start(context.Background(), ctl, []string{"hall-line-1"})
	frame := func(k int) wire.Frame {
		seq := k * perFrame
		end := min(seq+perFrame, len(pkts))
		return wire.Frame{StreamID: 21, Seq: uint32(seq), DelayMS: delayMS,
			PlayAt: startAt.Add(time.Duration(seq) * wire.PacketMS * time.Millisecond).UnixMicro(), Packets: pkts[seq:end]}
	}
	nFrames := (len(pkts) + perFrame - 1) / perFrame
	for k := 0; k < nFrames; k++ {
		if k != lateIdx && k != lostIdx {
			h.Frame(frame(k))
		}
	}
	// Frame 8 is delayed in the network past its play-at time, frame 11 is
	// lost: the sink must play the decoder's concealment in their slots,
	// not silence, and drop frame 8 when it comes.
	waitFor(t, 5*time.Second, "packets after the gap played", func() bool { return h.Delivery(21).Played >= 30 })
	h.Frame(frame(lateIdx))
	h.Stop(21)
	waitFor(t, 8*time.Second, "relays off", coilsAre(board, false, false, false))
	waitFor(t, 3*time.Second, "sink idle", func() bool { return !h.Status().Sink.Playing })
	waitFor(t, time.Second, "amp_off step", func() bool { _, ok := h.Delivery(21).Step(StepAmpOff); return ok })

	d := h.Delivery(21)
	t.Logf("delivery: played %d late %d lost %d steps %d", d.Played, d.Late, d.Lost, len(d.Steps))
	if d.Played != uint32(len(pkts)-2*perFrame) || d.Late != perFrame || d.Lost != perFrame {
		t.Errorf("delivery played %d late %d lost %d, want %d/%d/%d", d.Played, d.Late, d.Lost, len(pkts)-2*perFrame, perFrame, perFrame)
	}
	if c := metricValue(t, h.metrics.packets.WithLabelValues("concealed")); c != 2*perFrame {
		t.Errorf("concealed %v packets, want %d", c, 2*perFrame)
	}
	checkSequence(t, board.History(), 1, startAt.Add(delayMS*time.Millisecond+toneMS*time.Millisecond))
	if len(d.Steps) != 4 {
		t.Errorf("steps %+v", d.Steps)
	}
	h.Close()
	cap.Stop()

	out := cap.Mono()
	// Tone onset: the first 1 ms block with real energy.
	onset := -1
	for i := 0; i+48 <= len(out); i += 48 {
		if rms(out[i:i+48]) > 0.1 {
			onset = i
			break
		}
	}
	if onset < 0 {
		t.Fatalf("no tone in %d captured samples", len(out))
	}
	ms := func(m int) int { return onset + m*sampleRate/1000 }
	if len(out) < ms(toneMS) {
		t.Fatalf("capture ends %d samples after onset", len(out)-onset)
	}
	before := audiotest.Goertzel(out[ms(100):ms(400)], sampleRate, 1000)
	after := audiotest.Goertzel(out[ms(750):ms(950)], sampleRate, 1000)
	// The gap windows are the slots of the late and the lost frame (60 ms
	// each); the tone's own rms is amp/√2 = 0.354, silence would be 0.
	lateGap := rms(out[ms(lateIdx*60):ms(lateIdx*60+60)])
	lostGap := rms(out[ms(lostIdx*60):ms(lostIdx*60+60)])
	t.Logf("1 kHz amplitude %.3f before the gaps, %.3f after (want %.2f ±10%%); gap window rms: late frame %.4f, lost frame %.4f (tone %.3f, silence 0)",
		before, after, amp, lateGap, lostGap, amp/math.Sqrt2)
	for _, a := range []float64{before, after} {
		if math.Abs(a-amp) > 0.1*amp {
			t.Errorf("1 kHz amplitude %.3f, want %.2f ±10%%", a, amp)
		}
	}
	for _, g := range []float64{lateGap, lostGap} {
		if g < 0.3*amp/math.Sqrt2 {
			t.Errorf("gap window rms %.4f: a gap, not concealment (want at least 30%% of the tone's %.3f)", g, amp/math.Sqrt2)
		}
	}
	if r := rms(out[:max(0, onset-480)]); r > 1e-4 {
		t.Errorf("noise before the tone: rms %g", r)
	}
	// Alignment: when the onset left the (fake) sound card against its
	// play-at time. libopus adds its algorithmic delay (6.5 ms at 48 kHz),
	// which IP speakers decoding the same packets share.
	playAt := startAt.Add(delayMS * time.Millisecond)
	dropouts := 0
	for m := 0; m < toneMS-20; m++ {
		if (m < lateIdx*60-10 || m > lateIdx*60+70) && (m < lostIdx*60-10 || m > lostIdx*60+70) && rms(out[ms(m):ms(m+1)]) < 0.05 {
			dropouts++
		}
	}
	t.Logf("dropouts inside the tone: %d ms; underrun skipped %.1f ms; capture restarts %d",
		dropouts, 1000*metricValue(t, h.metrics.underrun), cap.Restarts)
	t.Logf("alignment: tone onset left the device %v after its play-at time (output_latency %v, codec delay 6.5ms included)",
		cap.TimeOf(onset).Sub(playAt).Round(100*time.Microsecond), latency)
}

func TestChildNoDevice(t *testing.T) {
	alsatest.ChildOnly(t)
	board, err := relayboard.New(relayboard.Options{Link: filepath.Join(os.Getenv("HALL_TEST_DIR"), "relay0")})
	if err != nil {
		t.Fatal(err)
	}
	defer board.Close()
	h := runHall(t, Config{Board: boardConfig(board.Path()), Sink: &SinkConfig{}})
	st := h.Status().Sink
	t.Logf("sink status: %+v", st)
	if !st.Configured || st.OK || !strings.Contains(st.Reason, "ALSA") {
		t.Fatalf("sink status %+v, want failed with an ALSA reason", st)
	}
	if v := metricValue(t, h.metrics.sinkUp); v != 0 {
		t.Errorf("sink_up %v", v)
	}
	// Everything else keeps working: frames are accepted, relays switch.
	h.Start(context.Background(), startCtl(2, wire.PriorityNormal), []string{"hall-line-2"})
	h.Frame(wire.Frame{StreamID: 2, PlayAt: time.Now().UnixMicro(), Packets: [][]byte{{0xf8}}})
	waitFor(t, 2*time.Second, "zone on without a sound card", coilsAre(board, true, false, true))
	// A second sink in the same process gets the same answer, not a second
	// oto context.
	h2, err := New(Config{Sink: &SinkConfig{}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st2 := h2.Status().Sink; st2.OK || st2.Reason != st.Reason {
		t.Errorf("second sink %+v", st2)
	}
	h2.Close()
}
