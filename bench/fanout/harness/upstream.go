package harness

import (
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/loalang/loalang/device/wire"
)

// Upstream makes a baseline probe send what a simulated speaker
// (firmware-sim/speaker) sends towards the controller, at the same periods
// and QoS, on topics of the same shape, so that the bare broker carries
// the same messages as loalangd's:
//
//   - at connect, a retained QoS 1 online status (and the offline status as
//     its will), a heartbeat and a burst of 5 clock requests 50 ms apart;
//   - a QoS 0 heartbeat every HeartbeatEvery (15 s, as the firmware, which
//     does not jitter it);
//   - a QoS 0 clock request every ClockEvery ±10 % (10 s);
//   - while a stream plays (from its start control to its stop), a QoS 1
//     delivery report every ReportEvery (2 s), and a final one at the stop.
//
// It subscribes to its own dev/<id>/cmd (QoS 1) and dev/<id>/time (QoS 0)
// as the firmware does; the baseline publisher answers every clock request
// on dev/<id>/time. Payloads are the firmware's: wire.Encode of a
// wire.Status, wire.Heartbeat, wire.ClockRequest and wire.Report with
// realistic values.
type Upstream struct {
	Site     string
	DeviceID string
	// Periods; zero means the firmware's default.
	ReportEvery, HeartbeatEvery, ClockEvery time.Duration
	// Seed seeds the clock-request jitter and the heartbeat's signal level.
	Seed uint64
}

// Firmware defaults (firmware-sim/speaker: Config and the clock burst).
const (
	defaultReportEvery    = 2 * time.Second
	defaultHeartbeatEvery = 15 * time.Second
	defaultClockEvery     = 10 * time.Second
	clockBurst            = 5
	clockBurstGap         = 50 * time.Millisecond
)

// upstream is one probe's running emulation.
type upstream struct {
	cfg    Upstream
	topics wire.Topics
	client mqtt.Client
	rng    *rand.Rand
	boot   time.Time

	started atomic.Bool

	wake chan struct{}
	stop chan struct{}
	done chan struct{}

	mu       sync.Mutex
	playing  bool
	final    bool // a final report is due
	streamID uint32
	packets  uint32 // audio packets received for the stream
	seq      uint32
	replies  int // clock responses received
}

func newUpstream(cfg Upstream) *upstream {
	if cfg.ReportEvery <= 0 {
		cfg.ReportEvery = defaultReportEvery
	}
	if cfg.HeartbeatEvery <= 0 {
		cfg.HeartbeatEvery = defaultHeartbeatEvery
	}
	if cfg.ClockEvery <= 0 {
		cfg.ClockEvery = defaultClockEvery
	}
	return &upstream{cfg: cfg, topics: wire.MustTopics(cfg.Site),
		rng:  rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		boot: time.Now(), wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

func (u *upstream) topic(suffix string) string { return u.topics.Device(u.cfg.DeviceID, suffix) }

// will sets the offline status as the connection's last will, as the
// firmware does.
func (u *upstream) will(o *mqtt.ClientOptions) {
	off, _ := wire.Encode(wire.Status{State: wire.StateOffline, Kind: wire.KindSpeaker})
	o.SetBinaryWill(u.topic(wire.SufStatus), off, 1, true)
}

// filters adds the device's own subscriptions.
func (u *upstream) filters(f map[string]byte) map[string]byte {
	out := make(map[string]byte, len(f)+2)
	for k, v := range f {
		out[k] = v
	}
	out[u.topic(wire.SufCmd)] = 1
	out[u.topic(wire.SufTime)] = 0
	return out
}

// start announces presence and runs the periodic messages until close.
func (u *upstream) start(c mqtt.Client) {
	if u.started.Swap(true) {
		return // one run per probe; the probes never reconnect
	}
	u.client = c
	online, _ := wire.Encode(wire.Status{State: wire.StateOnline, Kind: wire.KindSpeaker, Firmware: "bench",
		TS: time.Now().UnixMilli()})
	c.Publish(u.topic(wire.SufStatus), 1, true, online)
	go u.run()
}

// onMessage sees every message the probe receives: stream controls start
// and stop the reports, audio frames are counted, clock responses too.
// It never blocks.
func (u *upstream) onMessage(topic string, payload []byte) {
	switch {
	case len(topic) > 5 && topic[len(topic)-5:] == "/time":
		u.mu.Lock()
		u.replies++
		u.mu.Unlock()
	case len(topic) > 7 && topic[len(topic)-7:] == "/stream":
		c, err := wire.Decode[wire.StreamControl](payload)
		if err != nil {
			return
		}
		u.mu.Lock()
		switch {
		case c.Op == wire.StreamStart && (!u.playing || u.streamID != c.StreamID):
			u.playing, u.streamID, u.packets = true, c.StreamID, 0
		case c.Op == wire.StreamStop && u.playing && c.StreamID == u.streamID:
			u.playing, u.final = false, true
		}
		u.mu.Unlock()
		select {
		case u.wake <- struct{}{}:
		default:
		}
	case len(payload) >= wire.FrameHeaderLen && binary.BigEndian.Uint16(payload) == wire.FrameMagic:
		u.mu.Lock()
		if u.playing && binary.BigEndian.Uint32(payload[4:]) == u.streamID {
			u.packets += uint32(payload[23])
		}
		u.mu.Unlock()
	}
}

func (u *upstream) jittered(d time.Duration) time.Duration {
	return d - d/10 + time.Duration(u.rng.Int64N(int64(d/5)+1))
}

func (u *upstream) run() {
	defer close(u.done)
	now := time.Now()
	nextHB := now
	nextClock, burst := now, clockBurst
	var nextReport time.Time // zero while no stream plays
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-u.stop:
			return
		case <-u.wake:
		case <-t.C:
		}
		now = time.Now()
		u.mu.Lock()
		playing, final, id, pkts := u.playing, u.final, u.streamID, u.packets
		u.final = false
		u.mu.Unlock()
		switch {
		case final:
			u.report(id, pkts, true)
			nextReport = time.Time{}
		case playing && nextReport.IsZero():
			nextReport = now.Add(u.cfg.ReportEvery)
		case playing && !now.Before(nextReport):
			u.report(id, pkts, false)
			nextReport = now.Add(u.cfg.ReportEvery)
		case !playing:
			nextReport = time.Time{}
		}
		if !now.Before(nextHB) {
			u.heartbeat(now)
			nextHB = now.Add(u.cfg.HeartbeatEvery)
		}
		if !now.Before(nextClock) {
			u.clockRequest(now)
			if burst > 1 {
				burst--
				nextClock = now.Add(clockBurstGap)
			} else {
				burst = 0
				nextClock = now.Add(u.jittered(u.cfg.ClockEvery))
			}
		}
		next := min(nextHB.Sub(now), nextClock.Sub(now))
		if !nextReport.IsZero() {
			next = min(next, nextReport.Sub(now))
		}
		t.Reset(max(next, time.Millisecond))
	}
}

func (u *upstream) publish(suffix string, qos byte, v any) {
	b, err := wire.Encode(v)
	if err != nil {
		return
	}
	u.client.Publish(u.topic(suffix), qos, false, b) // not waited for, as the firmware
}

func (u *upstream) heartbeat(now time.Time) {
	u.publish(wire.SufHeartbeat, 0, wire.Heartbeat{Firmware: "bench", Volume: 100,
		UptimeS: int64(now.Sub(u.boot) / time.Second), SignalDBm: -50 - u.rng.IntN(25), TS: now.UnixMilli()})
}

func (u *upstream) clockRequest(now time.Time) {
	u.seq++
	u.publish(wire.SufClock, 0, wire.ClockRequest{Seq: u.seq, T1: now.UnixMicro()})
}

// report sends a delivery report with the firmware's fields: every packet
// received counts as played, and the clock error is a typical loopback one.
func (u *upstream) report(id, packets uint32, final bool) {
	u.publish(wire.SufReport, 1, wire.Report{StreamID: id, Expected: packets, Played: packets,
		ClockErrorUS: 150 + u.rng.Int64N(100), Final: final})
}

// close stops the periodic messages; it is called once.
func (u *upstream) close() {
	close(u.stop)
	if u.started.Load() {
		<-u.done
	}
}

// takeReplies returns the clock responses received since the last call.
func (u *upstream) takeReplies() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := u.replies
	u.replies = 0
	return n
}
