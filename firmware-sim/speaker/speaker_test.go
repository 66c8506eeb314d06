package speaker

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loalang/loalang/internal/mqtttest"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/internal/audiotest"
	hopus "gopkg.in/hraban/opus.v2"
)

const testSite = "thon1"

var testTopics = wire.MustTopics(testSite)

// controller is a small stand-in for loalangd's device side: it answers
// clock requests, publishes streams and commands, and collects what the
// speakers send.
type controller struct {
	t *testing.T
	c mqtt.Client

	mu      sync.Mutex
	reports map[string][]wire.Report
	replies map[string]wire.Reply
	status  map[string][]wire.Status
}

func newController(t *testing.T, broker string) *controller {
	t.Helper()
	ct := &controller{t: t, reports: map[string][]wire.Report{}, replies: map[string]wire.Reply{}, status: map[string][]wire.Status{}}
	opts := mqtt.NewClientOptions().AddBroker(broker).SetClientID("controller").
		SetProtocolVersion(4).SetCleanSession(true).SetWriteTimeout(5 * time.Second).SetAutoReconnect(false)
	ct.c = mqtt.NewClient(opts)
	if tok := ct.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("controller connect: %v", tok.Error())
	}
	t.Cleanup(func() { ct.c.Disconnect(100) })
	ct.sub(testTopics.DeviceAll(wire.SufClock), func(id string, b []byte) {
		t2 := time.Now().UnixMicro()
		req, err := wire.Decode[wire.ClockRequest](b)
		if err != nil {
			return
		}
		resp, _ := wire.Encode(wire.ClockResponse{Seq: req.Seq, T1: req.T1, T2: t2, T3: time.Now().UnixMicro()})
		ct.c.Publish(testTopics.Device(id, wire.SufTime), 0, false, resp)
	})
	ct.sub(testTopics.DeviceAll(wire.SufReport), func(id string, b []byte) {
		r, err := wire.Decode[wire.Report](b)
		if err != nil {
			t.Errorf("bad report from %s: %v", id, err)
			return
		}
		ct.mu.Lock()
		ct.reports[id] = append(ct.reports[id], r)
		ct.mu.Unlock()
	})
	ct.sub(testTopics.DeviceAll(wire.SufReply), func(_ string, b []byte) {
		r, err := wire.Decode[wire.Reply](b)
		if err != nil {
			t.Errorf("bad reply: %v", err)
			return
		}
		ct.mu.Lock()
		ct.replies[r.ID] = r
		ct.mu.Unlock()
	})
	ct.sub(testTopics.DeviceAll(wire.SufStatus), func(id string, b []byte) {
		s, err := wire.Decode[wire.Status](b)
		if err != nil {
			t.Errorf("bad status: %v", err)
			return
		}
		ct.mu.Lock()
		ct.status[id] = append(ct.status[id], s)
		ct.mu.Unlock()
	})
	return ct
}

func (ct *controller) sub(filter string, fn func(id string, b []byte)) {
	tok := ct.c.Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) {
		id, _, ok := testTopics.ParseDevice(m.Topic())
		if ok {
			fn(id, m.Payload())
		}
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		ct.t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
}

func (ct *controller) pub(topic string, qos byte, v any) {
	var b []byte
	switch v := v.(type) {
	case []byte:
		b = v
	default:
		var err error
		if b, err = wire.Encode(v); err != nil {
			ct.t.Fatal(err)
		}
	}
	tok := ct.c.Publish(topic, qos, false, b)
	if qos > 0 && (!tok.WaitTimeout(5*time.Second) || tok.Error() != nil) {
		ct.t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

func (ct *controller) reply(id string) (wire.Reply, bool) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	r, ok := ct.replies[id]
	return r, ok
}

func (ct *controller) statuses(id string) []wire.Status {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	return append([]wire.Status(nil), ct.status[id]...)
}

func (ct *controller) finalReport(id string, stream uint32) (wire.Report, int, bool) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	periodic := 0
	for _, r := range ct.reports[id] {
		if r.StreamID != stream {
			continue
		}
		if r.Final {
			return r, periodic, true
		}
		periodic++
	}
	return wire.Report{}, periodic, false
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runSpeaker starts a speaker and stops it when the test ends.
func runSpeaker(t *testing.T, cfg Config) *Speaker {
	t.Helper()
	cfg.Site = testSite
	if cfg.Log == nil && testing.Verbose() {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run %s: %v", cfg.ID, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("speaker %s did not stop", cfg.ID)
		}
	})
	return s
}

// encodeTone encodes ms of a 1 kHz sine at amplitude amp with libopus as the
// controller does: VoIP, 24 kbit/s, 20 ms packets.
func encodeTone(t *testing.T, amp float64, ms int) [][]byte {
	t.Helper()
	enc, err := hopus.NewEncoder(SampleRate, 1, hopus.AppVoIP)
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.SetBitrate(24000); err != nil {
		t.Fatal(err)
	}
	pcm := audiotest.Tone(1000, amp, SampleRate, ms)
	var pkts [][]byte
	for i := 0; i+packetSamples <= len(pcm); i += packetSamples {
		buf := make([]byte, wire.MaxOpusPacket)
		n, err := enc.EncodeFloat32(pcm[i:i+packetSamples], buf)
		if err != nil {
			t.Fatal(err)
		}
		pkts = append(pkts, buf[:n])
	}
	return pkts
}

// streamPlan is one stream the controller publishes.
type streamPlan struct {
	id      uint32
	zones   []string
	pkts    [][]byte
	delayMS int
	// during is called from the publishing goroutine after frame k.
	during func(k int)
}

// publishLead is how far ahead of its play-at time the test controller
// publishes each frame, as a controller with a send-ahead buffer would. It is
// generous because CI machines are shared: a test process can be starved of
// CPU for most of a second.
const publishLead = time.Second

// publishStream sends start, the frames paced in real time (3 packets per
// frame, each published publishLead before its play-at time) and a done
// stop. It returns the host time at which packet 0 should be heard.
func (ct *controller) publishStream(p streamPlan) time.Time {
	t0 := time.Now().Add(publishLead)
	start := wire.StreamControl{Op: wire.StreamStart, StreamID: p.id, Codec: wire.CodecOpus,
		Priority: wire.PriorityNormal, Volume: 100, StartAt: t0.UnixMicro(),
		PlayoutDelayMS: p.delayMS, Packets: uint32(len(p.pkts))}
	for _, z := range p.zones {
		ct.pub(testTopics.ZoneStream(z), 1, start)
	}
	timer := time.NewTimer(0)
	for k := 0; 3*k < len(p.pkts); k++ {
		at := t0.Add(time.Duration(k) * 3 * wire.PacketMS * time.Millisecond)
		<-timer.C
		timer.Reset(time.Until(at.Add(3*wire.PacketMS*time.Millisecond - publishLead)))
		f := wire.Frame{StreamID: p.id, Seq: uint32(3 * k), PlayAt: at.UnixMicro(), DelayMS: uint16(p.delayMS),
			Packets: p.pkts[3*k : min(3*k+3, len(p.pkts))]}
		if 3*k+3 >= len(p.pkts) {
			f.Flags |= wire.FlagLast
		}
		b, err := f.MarshalBinary()
		if err != nil {
			ct.t.Fatal(err)
		}
		for _, z := range p.zones {
			ct.pub(testTopics.ZoneAudio(z), 0, b)
		}
		if p.during != nil {
			p.during(k)
		}
	}
	timer.Stop()
	for _, z := range p.zones {
		ct.pub(testTopics.ZoneStream(z), 1, wire.StreamControl{Op: wire.StreamStop, StreamID: p.id, Reason: "done"})
	}
	return t0.Add(time.Duration(p.delayMS) * time.Millisecond)
}

// TestStreamPlayout plays one 4 s stream to four speakers at once and checks
// what each of them heard.
func TestStreamPlayout(t *testing.T) {
	broker := mqtttest.StartBroker(t)
	ct := newController(t, broker)
	dir := t.TempDir()
	const (
		id      = 42
		amp     = 0.5
		delayMS = 200
		ms      = 4000
	)
	tone := runSpeaker(t, Config{ID: "tone", Broker: broker, Zones: []string{"z1"}, Loss: 0.02, Seed: 2, ReportEvery: time.Second})
	ahead := runSpeaker(t, Config{ID: "ahead", Broker: broker, Zones: []string{"z1"}, RecordDir: dir,
		ClockOffset: 1500 * time.Millisecond, DriftPPM: 100})
	behind := runSpeaker(t, Config{ID: "behind", Broker: broker, Zones: []string{"z1", "z2"}, RecordDir: dir,
		ClockOffset: -800 * time.Millisecond, DriftPPM: -100})
	slow := runSpeaker(t, Config{ID: "slow", Broker: broker, Zones: []string{"z2"},
		ExtraDelay: publishLead + (delayMS-50)*time.Millisecond, Jitter: 100 * time.Millisecond, Seed: 3})
	all := []*Speaker{tone, ahead, behind, slow}
	waitFor(t, 10*time.Second, "speakers ready", func() bool {
		for _, s := range all {
			if !s.Ready() {
				return false
			}
		}
		return true
	})
	for _, s := range []*Speaker{ahead, behind} {
		off, e, _ := s.ClockEstimate()
		t.Logf("%s: estimated offset %v ± %v", s.ID(), off, e)
	}

	pkts := encodeTone(t, amp, ms)
	truth := ct.publishStream(streamPlan{id: id, zones: []string{"z1", "z2"}, pkts: pkts, delayMS: delayMS,
		during: func(k int) {
			if k != 20 {
				return
			}
			// A frame of stream 42 with a broken body, and plain garbage.
			bad := make([]byte, wire.FrameHeaderLen+3)
			binary.BigEndian.PutUint16(bad, wire.FrameMagic)
			bad[2] = wire.FrameVersion
			binary.BigEndian.PutUint32(bad[4:], id)
			bad[22], bad[23] = wire.PacketMS, 1
			binary.BigEndian.PutUint16(bad[24:], 900) // claims 900 bytes, has 1
			ct.pub(testTopics.ZoneAudio("z1"), 0, bad)
			ct.pub(testTopics.ZoneAudio("z1"), 0, []byte("not a frame"))
		}})

	final := map[string]wire.Report{}
	waitFor(t, 10*time.Second, "final reports", func() bool {
		for _, s := range all {
			r, ok := s.Stats(id)
			if !ok || !r.Final {
				return false
			}
			final[s.ID()] = r
		}
		return true
	})
	for _, s := range all {
		t.Logf("%s: overflowed %d, network-dropped %d", s.ID(), s.Overflowed(), s.netLost.Load())
	}
	for name, r := range final {
		t.Logf("%s: %+v", name, r)
		if r.Expected != uint32(len(pkts)) {
			t.Errorf("%s: expected %d packets, report says %d", name, len(pkts), r.Expected)
		}
		if r.Played+r.Late+r.Lost != r.Expected {
			t.Errorf("%s: played+late+lost = %d, want expected %d", name, r.Played+r.Late+r.Lost, r.Expected)
		}
	}

	t.Run("tone survives 2% loss", func(t *testing.T) {
		r := final["tone"]
		if min := uint32(math.Ceil(0.97 * float64(r.Expected))); r.Played < min || r.Lost == 0 {
			t.Errorf("played %d lost %d of %d: want >= %d played and some loss", r.Played, r.Lost, r.Expected, min)
		}
		pcm := tone.Played(id)
		if len(pcm) != len(pkts)*packetSamples {
			t.Fatalf("played %d samples, want %d", len(pcm), len(pkts)*packetSamples)
		}
		checkTone(t, pcm[SampleRate/2:], amp)
	})
	t.Run("two zones play once", func(t *testing.T) {
		r := final["behind"]
		if r.Played != r.Expected {
			t.Errorf("played %d of %d", r.Played, r.Expected)
		}
		pcm := behind.Played(id)
		if len(pcm) != len(pkts)*packetSamples {
			t.Fatalf("played %d samples, want %d", len(pcm), len(pkts)*packetSamples)
		}
		checkTone(t, pcm[SampleRate/2:], amp)
	})
	t.Run("late frames counted", func(t *testing.T) {
		r := final["slow"]
		if r.Late < r.Expected/5 || r.Played < r.Expected/5 {
			t.Errorf("late %d played %d of %d: want both >= 20%%", r.Late, r.Played, r.Expected)
		}
	})
	t.Run("malformed counted and dropped", func(t *testing.T) {
		if r := final["tone"]; r.Malformed != 1 {
			t.Errorf("stream malformed = %d, want 1", r.Malformed)
		}
		if n := tone.Malformed(); n != 2 {
			t.Errorf("speaker malformed = %d, want 2", n)
		}
	})
	t.Run("reports published", func(t *testing.T) {
		waitFor(t, 5*time.Second, "final report on MQTT", func() bool {
			for _, s := range all {
				if _, _, ok := ct.finalReport(s.ID(), id); !ok {
					return false
				}
			}
			return true
		})
		r, periodic, _ := ct.finalReport("tone", id)
		if r != final["tone"] {
			t.Errorf("published final %+v, Stats %+v", r, final["tone"])
		}
		if periodic < 2 {
			t.Errorf("%d periodic reports during a 4 s stream with ReportEvery 1 s", periodic)
		}
	})
	t.Run("recordings in sync", func(t *testing.T) {
		var first []int64
		for _, name := range []string{"ahead", "behind"} {
			base := filepath.Join(dir, fmt.Sprintf("%s-%d", name, id))
			var sc Sidecar
			b, err := os.ReadFile(base + ".json")
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &sc); err != nil {
				t.Fatal(err)
			}
			wav, err := os.ReadFile(base + ".wav")
			if err != nil {
				t.Fatal(err)
			}
			pcm, rate, ch, err := audiotest.ParseWAV(wav)
			if err != nil {
				t.Fatal(err)
			}
			if rate != SampleRate || ch != 1 || int64(len(pcm)) != sc.Samples || sc.Samples != int64(len(pkts)*packetSamples) {
				t.Errorf("%s: wav %d Hz %d ch %d samples, sidecar %+v", name, rate, ch, len(pcm), sc)
			}
			if sc.Played != final[name].Played || sc.Expected != final[name].Expected {
				t.Errorf("%s: sidecar %+v disagrees with report %+v", name, sc, final[name])
			}
			checkTone(t, pcm[SampleRate/2:], amp)
			errMS := float64(sc.FirstSampleUnixNS-truth.UnixNano()) / 1e6
			t.Logf("%s: first sample %+.3f ms from the controller's play-at time", name, errMS)
			if math.Abs(errMS) > 5 {
				t.Errorf("%s: first sample %.3f ms off the play-at time", name, errMS)
			}
			first = append(first, sc.FirstSampleUnixNS)
			// One mark per MarkEvery slots from the first, each at its
			// slot's controller play-at time.
			if want := (len(pkts)-1)/MarkEvery + 1; len(sc.Marks) != want {
				t.Fatalf("%s: %d marks, want %d", name, len(sc.Marks), want)
			}
			if m := sc.Marks[0]; m.Seq != sc.FirstSeq || m.HostNS != sc.FirstSampleUnixNS {
				t.Errorf("%s: first mark %+v, sidecar first seq %d at %d", name, m, sc.FirstSeq, sc.FirstSampleUnixNS)
			}
			for i, m := range sc.Marks {
				if m.Seq != sc.FirstSeq+uint32(i*MarkEvery) {
					t.Fatalf("%s: mark %d at slot %d", name, i, m.Seq)
				}
				want := truth.Add(time.Duration(int64(m.Seq-sc.FirstSeq) * packetNS))
				if e := float64(m.HostNS-want.UnixNano()) / 1e6; math.Abs(e) > 5 {
					t.Errorf("%s: slot %d played %.3f ms off its play-at time", name, m.Seq, e)
				}
			}
		}
		if d := math.Abs(float64(first[0]-first[1])) / 1e6; d > 3 {
			t.Errorf("speakers played %.3f ms apart, want < 3 ms", d)
		}
	})
}

// checkTone asserts a 1 kHz tone of amplitude amp (±10%) and nothing at
// unrelated frequencies.
func checkTone(t *testing.T, pcm []float32, amp float64) {
	t.Helper()
	got := audiotest.Goertzel(pcm, SampleRate, 1000)
	if math.Abs(got-amp) > 0.1*amp {
		t.Errorf("1 kHz amplitude %.3f, want %.3f ± 10%%", got, amp)
	}
	for _, f := range []float64{300, 700, 1500, 2500, 4000} {
		if a := audiotest.Goertzel(pcm, SampleRate, f); a > 0.05*amp {
			t.Errorf("%v Hz amplitude %.4f, want none", f, a)
		}
	}
}

func TestCommands(t *testing.T) {
	broker := mqtttest.StartBroker(t)
	ct := newController(t, broker)
	s := runSpeaker(t, Config{ID: "spk1", Broker: broker, Zones: []string{"z1"}, Volume: 80,
		ClockOffset: -2 * time.Second, RebootDelay: 300 * time.Millisecond})
	waitFor(t, 10*time.Second, "speaker ready", s.Ready)
	cmdTopic := testTopics.Device("spk1", wire.SufCmd)
	exp := time.Now().Add(5 * time.Second).UnixMilli()
	await := func(id string) wire.Reply {
		t.Helper()
		var r wire.Reply
		waitFor(t, 5*time.Second, "reply "+id, func() bool {
			var ok bool
			r, ok = ct.reply(id)
			return ok
		})
		return r
	}

	ct.pub(cmdTopic, 1, wire.Command{ID: "p1", Op: wire.OpPing, Expires: exp})
	if r := await("p1"); !r.OK || r.Volume == nil || *r.Volume != 80 {
		t.Errorf("ping reply %+v", r)
	}

	v := 30
	ct.pub(cmdTopic, 1, wire.Command{ID: "v1", Op: wire.OpSetVolume, Volume: &v, Expires: exp})
	if r := await("v1"); !r.OK || r.Volume == nil || *r.Volume != 30 || s.Volume() != 30 {
		t.Errorf("set_volume reply %+v, volume %d", r, s.Volume())
	}

	// Expired on the controller's clock, even though the speaker's own clock
	// runs 2 s behind and would think it still valid.
	ct.pub(cmdTopic, 1, wire.Command{ID: "old", Op: wire.OpSetVolume, Volume: &v, Expires: time.Now().Add(-time.Second).UnixMilli()})
	if r := await("old"); r.OK || r.Error != "expired" {
		t.Errorf("expired command answered %+v", r)
	}

	ct.pub(cmdTopic, 1, []byte(`{"id":"bad","op":"dance","expires":1}`))
	if r := await("bad"); r.OK || !strings.Contains(r.Error, "unknown op") {
		t.Errorf("unknown op answered %+v", r)
	}
	before := s.Malformed()
	ct.pub(cmdTopic, 1, []byte{0xff, 0x00, '{'})
	ct.pub(cmdTopic, 1, wire.Command{ID: "p2", Op: wire.OpPing, Expires: exp})
	await("p2") // commands are handled in order: the garbage has been seen
	if s.Malformed() != before+1 {
		t.Errorf("malformed %d, want %d", s.Malformed(), before+1)
	}

	sent := time.Now()
	ct.pub(cmdTopic, 1, wire.Command{ID: "r1", Op: wire.OpReboot, Expires: exp})
	if r := await("r1"); !r.OK {
		t.Errorf("reboot reply %+v", r)
	}
	waitFor(t, 10*time.Second, "offline then online after reboot", func() bool {
		st := ct.statuses("spk1")
		n := len(st)
		return n >= 3 && st[n-2].State == wire.StateOffline && st[n-1].State == wire.StateOnline
	})
	waitFor(t, 10*time.Second, "ready after reboot", s.Ready)
	if up, since := s.Uptime(), time.Since(sent); up >= since-250*time.Millisecond {
		t.Errorf("uptime %v after reboot, but the reboot was %v ago and kept it off 300 ms", up, since)
	}
	if s.Volume() != 30 {
		t.Errorf("volume %d after reboot", s.Volume())
	}
}

func TestDropFiresWill(t *testing.T) {
	broker := mqtttest.StartBroker(t)
	ct := newController(t, broker)
	s := runSpeaker(t, Config{ID: "spk2", Broker: broker, Zones: []string{"z1"}, Firmware: "1.2.3"})
	waitFor(t, 10*time.Second, "online", func() bool {
		st := ct.statuses("spk2")
		return len(st) > 0 && st[len(st)-1].State == wire.StateOnline && s.Connected()
	})

	s.Drop()
	waitFor(t, 10*time.Second, "will then reconnect", func() bool {
		st := ct.statuses("spk2")
		n := len(st)
		return n >= 3 && st[n-2].State == wire.StateOffline && st[n-1].State == wire.StateOnline
	})
	if st := ct.statuses("spk2"); st[len(st)-2].TS != 0 || st[len(st)-2].Kind != wire.KindSpeaker {
		t.Errorf("will %+v: want kind speaker and no timestamp", st[len(st)-2])
	}
	waitFor(t, 10*time.Second, "connected again", s.Connected)

	// Held offline, the will stays retained for anyone who asks later.
	s.SetOnline(false)
	waitFor(t, 10*time.Second, "offline", func() bool { return !s.Connected() })
	got := make(chan mqtt.Message, 1)
	late := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(broker).SetClientID("late").SetProtocolVersion(4))
	if tok := late.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer late.Disconnect(100)
	late.Subscribe(testTopics.Device("spk2", wire.SufStatus), 1, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case got <- m:
		default:
		}
	})
	select {
	case m := <-got:
		st, err := wire.Decode[wire.Status](m.Payload())
		if err != nil || st.State != wire.StateOffline || !m.Retained() || m.Qos() != 1 {
			t.Errorf("retained status %+v retained=%v qos=%d err=%v", st, m.Retained(), m.Qos(), err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no retained status")
	}
	s.SetOnline(true)
	waitFor(t, 10*time.Second, "back online", s.Connected)
}

func TestConfigRejected(t *testing.T) {
	for _, cfg := range []Config{
		{ID: "a/b", Site: "s", Broker: "tcp://x"},
		{ID: "a", Site: "s"},
		{ID: "a", Site: "s", Broker: "tcp://x", Loss: 2},
		{ID: "a", Site: "s", Broker: "tcp://x", Zones: []string{"#"}},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("New(%+v) = %v, want ErrConfig", cfg, err)
		}
	}
}

// TestStopAllEndsAtOnce checks the kill switch: a stop with reason stop_all
// ends the stream at once, at the last slot already due, with a final report.
func TestStopAllEndsAtOnce(t *testing.T) {
	broker := mqtttest.StartBroker(t)
	ct := newController(t, broker)
	s := runSpeaker(t, Config{ID: "spk3", Broker: broker, Zones: []string{"z1"}})
	waitFor(t, 10*time.Second, "ready", s.Ready)
	pkts := encodeTone(t, 0.5, 2000)
	t0 := time.Now().Add(100 * time.Millisecond)
	ct.pub(testTopics.ZoneStream("z1"), 1, wire.StreamControl{Op: wire.StreamStart, StreamID: 77, Codec: wire.CodecOpus,
		Priority: wire.PriorityNormal, StartAt: t0.UnixMicro(), PlayoutDelayMS: 100, Packets: uint32(len(pkts))})
	// Send the first second of frames in one go: they are buffered ahead of
	// their play-at times, so at the stop only some of them have played.
	for k := 0; k < 17; k++ {
		at := t0.Add(time.Duration(k) * 60 * time.Millisecond)
		b, err := wire.Frame{StreamID: 77, Seq: uint32(3 * k), PlayAt: at.UnixMicro(), DelayMS: 100,
			Packets: pkts[3*k : 3*k+3]}.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		ct.pub(testTopics.ZoneAudio("z1"), 0, b)
	}
	waitFor(t, 5*time.Second, "some packets played", func() bool {
		r, ok := s.Stats(77)
		return ok && r.Played >= 10
	})
	ct.pub(testTopics.ZoneStream("z1"), 1, wire.StreamControl{Op: wire.StreamStop, StreamID: 77, Reason: "stop_all"})
	stopped := time.Now()
	var r wire.Report
	waitFor(t, time.Second, "final report", func() bool {
		var ok bool
		r, ok = s.Stats(77)
		return ok && r.Final
	})
	t.Logf("final after %v: %+v", time.Since(stopped), r)
	if r.Expected >= 51 || r.Expected < 10 || r.Played+r.Late+r.Lost != r.Expected {
		t.Errorf("final report %+v: want the slots due at the stop, fewer than the 51 buffered", r)
	}
	if n := len(s.Played(77)); n != int(r.Expected)*packetSamples {
		t.Errorf("played %d samples for %d slots", n, r.Expected)
	}
	waitFor(t, 5*time.Second, "final report on MQTT", func() bool {
		_, _, ok := ct.finalReport("spk3", 77)
		return ok
	})
}
