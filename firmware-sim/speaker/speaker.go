// Package speaker simulates the firmware of one IP loudspeaker: an MQTT 3.1.1
// client (paho) that keeps presence with a retained status and a last will,
// answers commands, syncs its own drifting clock to the controller with
// NTP-style exchanges (RFC 5905 §8), decodes Opus (RFC 6716, pion/opus) and
// plays each 20 ms packet at its play-at time, counting what it played, what
// came late and what was lost, and reporting that per stream.
//
// It imports nothing from loalang but the wire contract, so it can only
// agree with the daemon through the protocol. See README.md for the design.
package speaker

import (
	"container/heap"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/loalang/loalang/device/wire"
)

// Config describes one simulated speaker. Zero durations take the defaults
// listed on each field.
type Config struct {
	// ID is the device id, one topic level ([A-Za-z0-9_-], wire.ValidLevel).
	ID string
	// Site is the site of the topic prefix loalang/v1/<site>/.
	Site string
	// Broker is the broker URL, e.g. "tcp://127.0.0.1:1883".
	Broker string
	// Username and Password are the device's MQTT credentials, if any.
	Username, Password string
	// Firmware is the version string sent in status and heartbeats.
	Firmware string
	// Zones are the zones whose streams this speaker plays.
	Zones []string
	// Volume is the initial volume in percent, 1–100; 0 means 100.
	Volume int

	// ClockOffset and DriftPPM define the speaker's own clock against the
	// host clock: host time scaled by (1 + DriftPPM·1e-6) since New, plus
	// ClockOffset.
	ClockOffset time.Duration
	DriftPPM    float64

	// Loss is the probability that an audio message is dropped before it
	// reaches the play-out buffer.
	Loss float64
	// ExtraDelay plus a uniform delay in [0, Jitter) is added to every
	// audio message before it reaches the play-out buffer.
	ExtraDelay, Jitter time.Duration

	// RecordDir, if set, receives <id>-<streamid>.wav and .json per stream.
	RecordDir string

	// HeartbeatEvery defaults to 15 s.
	HeartbeatEvery time.Duration
	// ClockSyncEvery is the steady-state clock-sync period, default 10 s.
	ClockSyncEvery time.Duration
	// ReportEvery is the report period while a stream plays, default 2 s.
	ReportEvery time.Duration
	// StreamTimeout ends a stream that has had no frame for this long,
	// default 5 s.
	StreamTimeout time.Duration
	// RebootDelay is how long a reboot keeps the speaker off the network,
	// default 2 s.
	RebootDelay time.Duration
	// KeepPlayed is how much decoded audio per stream Played keeps, default
	// 30 s (5.8 MB); only active streams and the keptStreams most recently
	// finished ones keep theirs. A negative value keeps none, and then,
	// unless RecordDir is set, the speaker skips Opus decoding altogether:
	// load runs with hundreds of speakers should set it.
	KeepPlayed time.Duration

	// Log receives the speaker's logs; nil discards them.
	Log *slog.Logger
	// Seed seeds the impairment and jitter generators.
	Seed int64
}

// Timing of the run loop.
const (
	tickActive = 20 * time.Millisecond  // while streams play: one packet per tick
	tickIdle   = 100 * time.Millisecond // otherwise: timers only
	burstCount = 5
	burstGap   = 50 * time.Millisecond
	// readySamples is how many clock exchanges Ready waits for.
	readySamples = 3
	inboxLen     = 512
	maxFinished  = 32
	// keptStreams is how many finished streams keep their Played audio.
	keptStreams = 2
	maxReplies  = 32
)

type msgKind uint8

const (
	kindCmd msgKind = iota
	kindTime
	kindStream
	kindAudio
)

type inMsg struct {
	kind    msgKind
	zone    string
	payload []byte
	recv    time.Time
}

// Speaker is one simulated loudspeaker. Create it with New and drive it with
// Run; the accessors are safe for concurrent use.
type Speaker struct {
	cfg    Config
	log    *slog.Logger
	topics wire.Topics
	clock  simClock

	running   atomic.Bool
	online    atomic.Bool
	bootNS    atomic.Int64
	volume    atomic.Int32
	malformed atomic.Uint64
	overflow  atomic.Uint64
	netLost   atomic.Uint64

	inbox     chan inMsg
	connected chan struct{}
	reboot    chan mqtt.Token
	wake      chan struct{}

	connMu     sync.Mutex
	client     mqtt.Client
	conn       *dropConn
	subscribed bool

	mu       sync.Mutex // guards streams, finished and filter
	streams  map[uint32]*stream
	finished []uint32
	filter   clockFilter

	// Owned by the run loop.
	impair, misc *rand.Rand
	delayed      delayQueue
	active       int
	clockSeq     uint32
	clockPending map[uint32]int64
	burstLeft    int
	nextBurst    time.Time
	nextSync     time.Time
	nextHB       time.Time
	replies      []wire.Reply
}

// New validates cfg and returns a speaker that is not yet connected.
func New(cfg Config) (*Speaker, error) {
	topics, err := wire.NewTopics(cfg.Site)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if err := wire.ValidLevel(cfg.ID); err != nil {
		return nil, fmt.Errorf("%w: id: %v", ErrConfig, err)
	}
	for _, z := range cfg.Zones {
		if err := wire.ValidLevel(z); err != nil {
			return nil, fmt.Errorf("%w: zone: %v", ErrConfig, err)
		}
	}
	switch {
	case cfg.Broker == "":
		return nil, fmt.Errorf("%w: missing broker", ErrConfig)
	case cfg.Loss < 0 || cfg.Loss > 1:
		return nil, fmt.Errorf("%w: loss %v outside 0–1", ErrConfig, cfg.Loss)
	case cfg.Volume < 0 || cfg.Volume > 100:
		return nil, fmt.Errorf("%w: volume %d outside 0–100", ErrConfig, cfg.Volume)
	case cfg.DriftPPM <= -1e5 || cfg.DriftPPM >= 1e5:
		return nil, fmt.Errorf("%w: drift %v ppm", ErrConfig, cfg.DriftPPM)
	case cfg.ExtraDelay < 0 || cfg.Jitter < 0:
		return nil, fmt.Errorf("%w: negative delay", ErrConfig)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.HeartbeatEvery, 15*time.Second)
	def(&cfg.ClockSyncEvery, 10*time.Second)
	def(&cfg.ReportEvery, 2*time.Second)
	def(&cfg.StreamTimeout, 5*time.Second)
	def(&cfg.RebootDelay, 2*time.Second)
	if cfg.KeepPlayed == 0 {
		cfg.KeepPlayed = 30 * time.Second
	}
	if cfg.Volume == 0 {
		cfg.Volume = 100
	}
	if cfg.Firmware == "" {
		cfg.Firmware = "sim-1"
	}
	cfg.Zones = append([]string(nil), cfg.Zones...)
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := time.Now()
	s := &Speaker{
		cfg:    cfg,
		log:    log.With("component", "speaker", "device", cfg.ID),
		topics: topics,
		clock: simClock{
			boot:   now.UnixNano(),
			offset: int64(cfg.ClockOffset),
			skew:   cfg.DriftPPM * 1e-6,
		},
		inbox:        make(chan inMsg, inboxLen),
		connected:    make(chan struct{}, 1),
		reboot:       make(chan mqtt.Token, 1),
		wake:         make(chan struct{}, 1),
		streams:      map[uint32]*stream{},
		impair:       rand.New(rand.NewSource(cfg.Seed)),
		misc:         rand.New(rand.NewSource(cfg.Seed + 1)),
		clockPending: map[uint32]int64{},
	}
	s.online.Store(true)
	s.bootNS.Store(now.UnixNano())
	s.volume.Store(int32(cfg.Volume))
	return s, nil
}

// ID returns the device id.
func (s *Speaker) ID() string { return s.cfg.ID }

// Run connects to the broker (retrying with jittered backoff), serves until
// ctx is done, then ends every stream, publishes a retained offline status
// and disconnects cleanly. Cancellation is not an error. Run may be called
// once.
func (s *Speaker) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	connCtx, cancelConn := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.connLoop(connCtx)
	}()
	s.loop(ctx)
	// Final reports were queued by the loop; now close the session.
	cancelConn()
	wg.Wait()
	return nil
}

// Drop closes the TCP connection without a DISCONNECT, as a power cut or a
// lost radio link would, so the broker publishes the offline will
// ([MQTT-3.1.2-8]). Run reconnects after a short jittered delay unless
// SetOnline(false) holds the speaker offline.
func (s *Speaker) Drop() {
	s.connMu.Lock()
	c := s.conn
	s.connMu.Unlock()
	if c != nil {
		_ = c.drop()
	}
}

// SetOnline simulates churn: false drops the connection like Drop and keeps
// the speaker off the network; true lets it reconnect at once.
func (s *Speaker) SetOnline(on bool) {
	s.online.Store(on)
	if !on {
		s.Drop()
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Connected reports whether the speaker holds a session with its
// subscriptions in place.
func (s *Speaker) Connected() bool {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	return s.client != nil && s.subscribed
}

// Ready reports whether the speaker is connected and has synced its clock
// with at least a few exchanges, i.e. can play a stream on time.
func (s *Speaker) Ready() bool {
	if !s.Connected() {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.filter.samples) >= readySamples
}

// ClockEstimate returns the speaker's current estimate of the controller
// clock minus its own clock, with its error bound; ok is false before the
// first exchange.
func (s *Speaker) ClockEstimate() (offset, errBound time.Duration, ok bool) {
	local := s.clock.local(time.Now())
	s.mu.Lock()
	defer s.mu.Unlock()
	o, e, ok := s.filter.offsetAt(local)
	return time.Duration(o), time.Duration(e), ok
}

// Volume returns the current volume in percent.
func (s *Speaker) Volume() int { return int(s.volume.Load()) }

// Uptime returns the time since the speaker (re)booted.
func (s *Speaker) Uptime() time.Duration {
	return time.Since(time.Unix(0, s.bootNS.Load()))
}

// Malformed returns how many payloads of any kind were dropped because they
// did not decode.
func (s *Speaker) Malformed() uint64 { return s.malformed.Load() }

// Overflowed returns how many messages were dropped because the run loop
// fell behind.
func (s *Speaker) Overflowed() uint64 { return s.overflow.Load() }

// Stats returns the delivery report of a stream as it stands, final once
// the stream has ended; ok is false for a stream this speaker never saw.
func (s *Speaker) Stats(streamID uint32) (wire.Report, bool) {
	local := s.clock.local(time.Now())
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.streams[streamID]
	if !ok {
		return wire.Report{}, false
	}
	r := st.counts()
	if !st.final {
		_, e, _ := s.filter.offsetAt(local)
		r.ClockErrorUS = e / 1000
	}
	return r, true
}

// EndReason returns why a stream ended: the stop's reason ("stopped",
// "stop_all", "preempted"), "done", or "timeout" when no stop came and the
// frames ran dry; "" while it plays or for a stream never seen. A test
// tells a speaker that was told to stop from one that merely went quiet.
func (s *Speaker) EndReason(streamID uint32) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.streams[streamID]; ok && st.final {
		return st.endReason
	}
	return ""
}

// Played returns a copy of the 48 kHz mono samples the speaker played for a
// stream, after concealment and volume, up to Config.KeepPlayed.
func (s *Speaker) Played(streamID uint32) []float32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.streams[streamID]
	if !ok {
		return nil
	}
	return append([]float32(nil), st.out...)
}

// loop is the speaker's single worker: it handles queued messages, releases
// delayed audio, plays due packets and fires the periodic timers.
func (s *Speaker) loop(ctx context.Context) {
	period := tickIdle
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.shutdown()
			return
		case m := <-s.inbox:
			s.handle(m)
		case <-s.connected:
			s.onConnected(time.Now())
		case <-t.C:
			// Handle what has arrived before playing: select picks among
			// ready channels at random, and a packet waiting in the inbox
			// must not miss its slot for that.
			s.drain()
			s.tick(time.Now())
		}
		p := tickIdle
		if s.active > 0 || s.delayed.Len() > 0 || s.burstLeft > 0 {
			p = tickActive
		}
		if p != period {
			period = p
			t.Reset(p)
		}
	}
}

func (s *Speaker) drain() {
	for range inboxLen {
		select {
		case m := <-s.inbox:
			s.handle(m)
		default:
			return
		}
	}
}

func (s *Speaker) handle(m inMsg) {
	switch m.kind {
	case kindCmd:
		s.onCommand(m.payload, m.recv)
	case kindTime:
		s.onClockResponse(m.payload, m.recv)
	case kindStream:
		s.onControl(m.payload, m.recv)
	case kindAudio:
		s.onAudioMsg(m.payload, m.recv)
	}
}

func (s *Speaker) tick(now time.Time) {
	for s.delayed.Len() > 0 && !s.delayed[0].release.After(now) {
		d := heap.Pop(&s.delayed).(delayedFrame)
		s.onFrame(&d.frame, d.release)
	}
	if s.burstLeft > 0 && !now.Before(s.nextBurst) {
		s.sendClockRequest(now)
		s.burstLeft--
		s.nextBurst = now.Add(burstGap)
		if s.burstLeft == 0 {
			s.nextSync = now.Add(s.jittered(s.cfg.ClockSyncEvery))
		}
	} else if s.burstLeft == 0 && !s.nextSync.IsZero() && !now.Before(s.nextSync) {
		s.sendClockRequest(now)
		s.nextSync = now.Add(s.jittered(s.cfg.ClockSyncEvery))
	}
	if !s.nextHB.IsZero() && !now.Before(s.nextHB) {
		s.sendHeartbeat(now)
	}
	if s.active > 0 {
		s.playout(now)
	}
}

// jittered returns d ±10%, so that speakers booted together spread out.
func (s *Speaker) jittered(d time.Duration) time.Duration {
	return d - d/10 + time.Duration(s.misc.Int63n(int64(d/5)+1))
}

func (s *Speaker) onConnected(now time.Time) {
	s.burstLeft = burstCount
	s.nextBurst = now
	s.sendHeartbeat(now)
}

func (s *Speaker) sendHeartbeat(now time.Time) {
	s.nextHB = now.Add(s.cfg.HeartbeatEvery)
	s.publish(s.topics.Device(s.cfg.ID, wire.SufHeartbeat), 0, false, wire.Heartbeat{
		Firmware:  s.cfg.Firmware,
		Volume:    s.Volume(),
		UptimeS:   int64(s.Uptime() / time.Second),
		SignalDBm: -50 - s.misc.Intn(25),
		TS:        now.UnixMilli(),
	})
}

// sendClockRequest starts an on-wire exchange with T1 on the speaker's own
// clock (RFC 5905 §8).
func (s *Speaker) sendClockRequest(now time.Time) {
	s.clockSeq++
	t1 := s.clock.local(now) / 1000
	for seq, old := range s.clockPending {
		if t1-old > int64(10*time.Second/time.Microsecond) {
			delete(s.clockPending, seq)
		}
	}
	s.clockPending[s.clockSeq] = t1
	s.publish(s.topics.Device(s.cfg.ID, wire.SufClock), 0, false, wire.ClockRequest{Seq: s.clockSeq, T1: t1})
}

// onClockResponse completes an exchange: offset = ((T2-T1)+(T3-T4))/2 and
// delay = (T4-T1)-(T3-T2), RFC 5905 §8. Responses to requests this speaker
// did not send (or already answered) are ignored, as RFC 5905 §8 rejects
// bogus and duplicate packets.
func (s *Speaker) onClockResponse(payload []byte, recv time.Time) {
	r, err := wire.Decode[wire.ClockResponse](payload)
	if err != nil {
		s.malformed.Add(1)
		return
	}
	t1, ok := s.clockPending[r.Seq]
	if !ok || t1 != r.T1 {
		return
	}
	delete(s.clockPending, r.Seq)
	t4 := s.clock.local(recv) / 1000
	offset := ((r.T2 - r.T1) + (r.T3 - t4)) / 2
	delay := (t4 - r.T1) - (r.T3 - r.T2)
	s.mu.Lock()
	s.filter.add(clockSample{local: t4 * 1000, offset: offset * 1000, delay: delay * 1000})
	s.mu.Unlock()
}

// controllerNow is the speaker's best idea of the controller's clock.
func (s *Speaker) controllerNow(at time.Time) time.Time {
	local := s.clock.local(at)
	s.mu.Lock()
	off, _, _ := s.filter.offsetAt(local)
	s.mu.Unlock()
	return time.Unix(0, local+off)
}

func (s *Speaker) onCommand(payload []byte, recv time.Time) {
	reply := func(r wire.Reply) mqtt.Token {
		r.TS = s.controllerNow(time.Now()).UnixMilli()
		if len(s.replies) == maxReplies {
			s.replies = append(s.replies[:0], s.replies[1:]...)
		}
		s.replies = append(s.replies, r)
		return s.publish(s.topics.Device(s.cfg.ID, wire.SufReply), 1, false, r)
	}
	cmd, err := wire.Decode[wire.Command](payload)
	if err != nil {
		s.malformed.Add(1)
		var probe struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(payload, &probe) == nil && probe.ID != "" && len(probe.ID) <= 64 {
			reply(wire.Reply{ID: probe.ID, Error: err.Error()})
		}
		return
	}
	// A redelivered command (QoS 1 may deliver twice, [MQTT-4.3.2]) gets the
	// same answer and is not executed again.
	for _, r := range s.replies {
		if r.ID == cmd.ID {
			s.publish(s.topics.Device(s.cfg.ID, wire.SufReply), 1, false, r)
			return
		}
	}
	if cmd.Expired(s.controllerNow(recv)) {
		reply(wire.Reply{ID: cmd.ID, Error: "expired"})
		return
	}
	vol := func() *int { v := s.Volume(); return &v }
	switch cmd.Op {
	case wire.OpPing:
		reply(wire.Reply{ID: cmd.ID, OK: true, Volume: vol()})
	case wire.OpSetVolume:
		s.volume.Store(int32(*cmd.Volume))
		reply(wire.Reply{ID: cmd.ID, OK: true, Volume: vol()})
	case wire.OpReboot:
		tok := reply(wire.Reply{ID: cmd.ID, OK: true, Volume: vol()})
		s.doReboot(tok)
	}
}

// doReboot forgets everything a real device loses on reboot (streams, clock
// samples) and asks the connection owner to drop off the network.
func (s *Speaker) doReboot(tok mqtt.Token) {
	if tok == nil {
		tok = doneToken{}
	}
	s.endAll("reboot")
	s.mu.Lock()
	s.filter.reset()
	s.mu.Unlock()
	clear(s.clockPending)
	s.burstLeft = 0
	s.nextSync, s.nextHB = time.Time{}, time.Time{}
	select {
	case s.reboot <- tok:
	default:
	}
}

// onControl handles a stream start or stop. Both arrive once per zone the
// speaker is in; the stream id makes the second copy a no-op.
func (s *Speaker) onControl(payload []byte, recv time.Time) {
	c, err := wire.Decode[wire.StreamControl](payload)
	if err != nil {
		s.malformed.Add(1)
		return
	}
	s.mu.Lock()
	st := s.streams[c.StreamID]
	var jobs []finishJob
	switch {
	case c.Op == wire.StreamStart:
		if st == nil {
			st = s.newStreamLocked(c.StreamID, recv)
		}
		if !st.final {
			st.onStart(c, recv)
		}
	case st == nil:
		// A stop for a stream never heard: remember it so that stray frames
		// do not start it.
		st = s.newStreamLocked(c.StreamID, recv)
		st.finish(-1, "stopped")
		s.retireLocked(st)
	case st.final:
	case c.Reason == "" || c.Reason == "done":
		// Play out what is buffered; frames still in flight may extend it.
		if st.lastSeq < 0 {
			if st.maxSeen < 0 {
				jobs = append(jobs, s.finishLocked(st, -1, "done"))
			} else {
				st.lastSeq, st.lastFromStop = st.maxSeen, true
			}
		}
	default:
		end := st.nextSeq - 1
		if st.lastSeq >= 0 {
			end = min(end, st.lastSeq)
		}
		jobs = append(jobs, s.finishLocked(st, end, c.Reason))
	}
	s.mu.Unlock()
	s.runJobs(jobs)
}

// onAudioMsg parses an audio message and passes it through the simulated
// network impairment.
func (s *Speaker) onAudioMsg(payload []byte, recv time.Time) {
	var f wire.Frame
	if err := f.UnmarshalBinary(payload); err != nil {
		s.malformed.Add(1)
		// Attribute it to its stream when the header is readable enough.
		if len(payload) >= 8 {
			id := uint32(payload[4])<<24 | uint32(payload[5])<<16 | uint32(payload[6])<<8 | uint32(payload[7])
			s.mu.Lock()
			if st, ok := s.streams[id]; ok && !st.final {
				st.malformed++
			}
			s.mu.Unlock()
		}
		return
	}
	if s.cfg.Loss > 0 && s.impair.Float64() < s.cfg.Loss {
		s.netLost.Add(1)
		return
	}
	d := s.cfg.ExtraDelay
	if s.cfg.Jitter > 0 {
		d += time.Duration(s.impair.Int63n(int64(s.cfg.Jitter)))
	}
	if d <= 0 {
		s.onFrame(&f, recv)
		return
	}
	heap.Push(&s.delayed, delayedFrame{release: recv.Add(d), frame: f})
}

// onFrame files a frame that reached the play-out buffer at host time at.
func (s *Speaker) onFrame(f *wire.Frame, at time.Time) {
	arrive := s.clock.local(at)
	s.mu.Lock()
	st := s.streams[f.StreamID]
	if st == nil {
		st = s.newStreamLocked(f.StreamID, at)
	}
	if !st.final {
		st.onFrame(f, arrive, at)
	}
	s.mu.Unlock()
}

func (s *Speaker) newStreamLocked(id uint32, now time.Time) *stream {
	keep := 0
	if s.cfg.KeepPlayed > 0 {
		keep = int(s.cfg.KeepPlayed / time.Second * SampleRate)
	}
	st := newStream(id, now, keep)
	s.streams[id] = st
	s.active++
	return st
}

// retireLocked moves a final stream to the finished list, evicting the
// oldest finished streams beyond maxFinished.
func (s *Speaker) retireLocked(st *stream) {
	s.active--
	s.finished = append(s.finished, st.id)
	for len(s.finished) > maxFinished {
		delete(s.streams, s.finished[0])
		s.finished = s.finished[1:]
	}
	if n := len(s.finished) - keptStreams - 1; n >= 0 {
		if old := s.streams[s.finished[n]]; old != nil {
			old.out = nil
		}
	}
}

// finishJob is the I/O left to do after a stream ended: its final report
// and its recording.
type finishJob struct {
	report wire.Report
	rec    *recorder
	side   Sidecar
}

// finishLocked ends a stream and returns the I/O to do once mu is released.
func (s *Speaker) finishLocked(st *stream, endSeq int64, reason string) finishJob {
	st.finish(endSeq, reason)
	_, e, _ := s.filter.offsetAt(s.clock.local(time.Now()))
	st.report.ClockErrorUS = e / 1000
	s.retireLocked(st)
	job := finishJob{report: st.report, rec: st.rec}
	st.rec = nil
	if job.rec != nil {
		r := st.report
		job.side = Sidecar{
			Speaker: s.cfg.ID, StreamID: st.id, FirstSampleUnixNS: st.firstHostNS,
			FirstSeq: uint32(max(st.firstPlayed, 0)), Expected: r.Expected, Played: r.Played,
			Late: r.Late, Lost: r.Lost, Malformed: r.Malformed, ClockErrorUS: r.ClockErrorUS,
		}
		job.side.Samples = st.outTotal
		job.side.Marks = st.marks
	}
	s.log.Info("stream ended", "stream", st.id, "reason", reason, "expected", st.report.Expected,
		"played", st.report.Played, "late", st.report.Late, "lost", st.report.Lost)
	return job
}

func (s *Speaker) runJobs(jobs []finishJob) {
	for _, j := range jobs {
		s.publish(s.topics.Device(s.cfg.ID, wire.SufReport), 1, false, j.report)
		if j.rec != nil {
			if err := j.rec.finish(j.side.Samples, j.side); err != nil {
				s.log.Warn("recording failed", "stream", j.report.StreamID, "err", err)
			}
		}
	}
}

// playout advances every active stream to now and sends the reports due.
func (s *Speaker) playout(now time.Time) {
	nowLocal := s.clock.local(now)
	var jobs []finishJob
	var reports []wire.Report
	s.mu.Lock()
	_, clockErr, _ := s.filter.offsetAt(nowLocal)
	pc := playCtx{
		nowLocal: nowLocal,
		toLocal:  func(c int64) int64 { return s.filter.toLocal(c, nowLocal) },
		hostOf:   s.clock.hostOf,
		decode:   s.cfg.KeepPlayed > 0 || s.cfg.RecordDir != "",
	}
	if s.cfg.RecordDir != "" {
		pc.record = s.openRecording
	}
	for _, st := range s.streams {
		if st.final {
			continue
		}
		pc.gain = s.gain(st)
		switch {
		case st.playDue(&pc):
			jobs = append(jobs, s.finishLocked(st, st.lastSeq, "done"))
		case now.Sub(st.lastActivity) > s.cfg.StreamTimeout && len(st.pending) == 0:
			end := st.lastSeq
			if end < 0 || st.lastFromStop {
				end = st.maxSeen
			}
			jobs = append(jobs, s.finishLocked(st, end, "timeout"))
		case now.Sub(st.lastReport) >= s.cfg.ReportEvery:
			st.lastReport = now
			r := st.counts()
			r.ClockErrorUS = clockErr / 1000
			reports = append(reports, r)
		}
	}
	s.mu.Unlock()
	for _, r := range reports {
		s.publish(s.topics.Device(s.cfg.ID, wire.SufReport), 1, false, r)
	}
	s.runJobs(jobs)
}

func (s *Speaker) openRecording(st *stream) *recorder {
	if err := os.MkdirAll(s.cfg.RecordDir, 0o755); err != nil {
		s.log.Warn("recording failed", "stream", st.id, "err", err)
		return nil
	}
	r, err := newRecorder(s.cfg.RecordDir, s.cfg.ID+"-"+strconv.FormatUint(uint64(st.id), 10))
	if err != nil {
		s.log.Warn("recording failed", "stream", st.id, "err", err)
		return nil
	}
	return r
}

// gain is the output scale of a stream: an emergency plays at full volume
// whatever the speaker's setting (Circular 39/2020/TT-BTTTT); otherwise the
// speaker volume times the stream volume.
func (s *Speaker) gain(st *stream) float32 {
	if st.ctrl.Priority == wire.PriorityEmergency {
		return 1
	}
	g := float32(s.Volume()) / 100
	if st.ctrl.Volume > 0 {
		g *= float32(st.ctrl.Volume) / 100
	}
	return g
}

// endAll ends every active stream where it stands.
func (s *Speaker) endAll(reason string) {
	var jobs []finishJob
	s.mu.Lock()
	for _, st := range s.streams {
		if !st.final {
			end := st.nextSeq - 1
			if st.lastSeq >= 0 {
				end = min(end, st.lastSeq)
			}
			jobs = append(jobs, s.finishLocked(st, end, reason))
		}
	}
	s.mu.Unlock()
	s.runJobs(jobs)
	s.delayed = s.delayed[:0]
}

func (s *Speaker) shutdown() {
	s.endAll("shutdown")
}

// delayedFrame is an audio frame held back by the simulated network.
type delayedFrame struct {
	release time.Time
	frame   wire.Frame
}

// delayQueue is a min-heap of delayed frames by release time.
type delayQueue []delayedFrame

func (q delayQueue) Len() int           { return len(q) }
func (q delayQueue) Less(i, j int) bool { return q[i].release.Before(q[j].release) }
func (q delayQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *delayQueue) Push(x any)        { *q = append(*q, x.(delayedFrame)) }
func (q *delayQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// doneToken is a completed token for a reply that could not be sent.
type doneToken struct{}

func (doneToken) Wait() bool                     { return true }
func (doneToken) WaitTimeout(time.Duration) bool { return true }
func (doneToken) Done() <-chan struct{}          { c := make(chan struct{}); close(c); return c }
func (doneToken) Error() error                   { return nil }
