package broadcast

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/loalang/loalang/device/wire"
)

// Publisher publishes one MQTT message. It is the daemon's paho client; an
// implementation must return when ctx ends even if the network is stuck.
type Publisher interface {
	Publish(ctx context.Context, topic string, qos byte, retained bool, payload []byte) error
}

// Media loads a stored clip as 20 ms Opus packets (RFC 6716, 48 kHz mono).
// The engine only reads the returned packets, so they may be shared.
type Media interface {
	Packets(ctx context.Context, mediaID string) ([][]byte, error)
}

// Speaker turns text in a language (a media.Languages code; "" is the
// configured voice's) into 20 ms Opus packets. An error means speech is
// unavailable for this text or language; it is returned to the caller
// wrapped.
type Speaker interface {
	SpeakPackets(ctx context.Context, text, language string) ([][]byte, error)
}

// Directory answers questions about zones and speakers. It must not call
// back into the Engine.
type Directory interface {
	// ZoneExists reports whether zone is configured.
	ZoneExists(zone string) bool
	// Members returns the ids of the speakers in any of zones, each once.
	Members(zones []string) []string
	// Online reports whether device id is currently online.
	Online(id string) bool
}

// Recorder persists broadcast records durably. It receives a Record when a
// broadcast is created and at every state change, from one goroutine (Run),
// in order.
type Recorder interface {
	SaveBroadcast(ctx context.Context, r Record) error
}

// Output is the hall's own amplifier and wired zones. Its methods must not
// block: the engine calls them from its pacing loop. Frames share their
// packets with the engine and must be treated as read-only.
type Output interface {
	// Start begins (or, called again for the same stream id, re-targets)
	// playback of a stream in the given wired zones.
	Start(ctx context.Context, ctl wire.StreamControl, zones []string)
	// Frame hands over one audio frame of a started stream.
	Frame(f wire.Frame)
	// Stop ends playback of a stream.
	Stop(streamID uint32)
}

// Warmer is an Output that needs time before it can play: the hall's
// amplifier warms up, and its zone lines are switched on only after that.
// The engine starts a stream that includes wired zones no earlier than the
// output is ready, in all its zones at once (IP and wired), so that no
// zone plays ahead of the others and the wired lines lose no words.
type Warmer interface {
	// Prewarm is called as soon as a broadcast to wired zones is requested,
	// before its audio is loaded or spoken, so the output can start getting
	// ready (switch the amplifier on). It must not block.
	Prewarm()
	// ReadyIn returns how long from now the output needs before audio in
	// the given wired zones is heard: zero when they are already live. It
	// must not block.
	ReadyIn(zones []string) time.Duration
}

// Clock is the engine's time source; all play-at times are on this clock.
// A Clock whose time does not advance with the wall clock (a test clock) may
// also implement After(d time.Duration) <-chan time.Time, which the engine
// then uses for every wait instead of a wall-clock timer.
type Clock interface {
	Now() time.Time
}

type afterClock interface {
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Preemption policies, Config.PreemptPolicy.
const (
	// PolicyResume resumes a pre-empted broadcast in the zones it lost once
	// they are free again, from the packet that was playing when it was cut.
	PolicyResume = "resume"
	// PolicyInterrupt ends a pre-empted broadcast in the zones it lost and
	// records it as interrupted.
	PolicyInterrupt = "interrupt"
)

// State is the state of a broadcast as a whole (Broadcast.State). The
// terminal ones are StateDone, StateStopped, StateFailed and
// StateInterrupted (Terminal).
type State string

// Broadcast states.
const (
	StateQueued      State = "queued"
	StatePlaying           = "playing"
	StatePreempted         = "preempted"
	StateDone              = "done"
	StateStopped           = "stopped"
	StateFailed            = "failed"
	StateInterrupted       = "interrupted"
)

// ZoneStatus is the state of a broadcast in one of its zones
// (ZoneState.State); the broadcast's State is derived from them (settle).
type ZoneStatus string

// Zone states of one broadcast, ZoneState.State.
const (
	ZoneWaiting     ZoneStatus = "waiting"
	ZonePlaying                = "playing"
	ZoneSuspended              = "suspended"
	ZoneDone                   = "done"
	ZoneInterrupted            = "interrupted"
	ZoneStopped                = "stopped"
	ZoneFailed                 = "failed"
)

// Origin says which way in a broadcast request came (Request.Origin).
type Origin string

// Request origins.
const (
	OriginAPI      Origin = "api"
	OriginSchedule        = "schedule"
	OriginLive            = "live"
	// OriginUplink is a signed command from the commune or province.
	OriginUplink = "uplink"
)

// Priority is a bulletin level of Circular 39/2020/TT-BTTTT, spelled as on
// the wire (wire.Priority*): a broadcast of higher Rank pre-empts a lower
// one in the zones they share; equal ranks queue.
type Priority string

// Priority levels, the wire.Priority* values typed.
const (
	PriorityEmergency  Priority = wire.PriorityEmergency
	PriorityPriority   Priority = wire.PriorityPriority
	PriorityNormal     Priority = wire.PriorityNormal
	PriorityBackground Priority = wire.PriorityBackground
)

// Rank orders priorities (wire.PriorityRank): higher pre-empts lower; 0
// means the priority is unknown.
func (p Priority) Rank() int { return wire.PriorityRank(string(p)) }

// Sources of a broadcast, Broadcast.Source.
const (
	SourceMedia   = "media"
	SourceText    = "text"
	SourcePackets = "packets"
	SourceLive    = "live"
)

// Stop reasons carried in wire.StreamControl.Reason.
const (
	ReasonDone      = "done"
	ReasonStopped   = "stopped"
	ReasonPreempted = "preempted"
	ReasonStopAll   = "stop_all"
	ReasonExpired   = "expired"
)

const (
	packetDur = wire.PacketMS * time.Millisecond
	// publishLead is how long before its play-at time a frame is published.
	publishLead = packetDur
	// ctlTimeout bounds one QoS 1 control publish (PUBACK included).
	ctlTimeout = 2 * time.Second
	// frameTimeout bounds one QoS 0 audio publish, so one stuck zone costs
	// its stream at most this much and the kill switch never waits longer.
	frameTimeout = 250 * time.Millisecond
	// stopAllBudget bounds StopAll; the kill switch must act within 1 s.
	stopAllBudget = 800 * time.Millisecond
	// liveIdle ends live speech that sends no packet for this long.
	liveIdle = 30 * time.Second
	// liveGap is how far behind its capture time a live packet's slot may
	// fall before the stream's timeline jumps forward (the gap is lost).
	liveGap = 3 * packetDur
	// keepFinished bounds the ended broadcasts kept in memory for Get/List.
	keepFinished = 500
	// maxText bounds text to speak.
	maxText     = 5000
	saveTimeout = 5 * time.Second
)

// Config tunes the engine. Zero values take the documented defaults.
type Config struct {
	// Site is the topic level of this village: loalang/v1/<site>/.
	Site string
	// PacketsPerFrame is how many 20 ms packets go in one MQTT message;
	// default 3 (60 ms), at most wire.MaxPacketsPerFrame.
	PacketsPerFrame int
	// PlayoutDelay is the delay speakers add to play-at times of stored
	// and spoken media; default 500 ms.
	PlayoutDelay time.Duration
	// LiveDelay is the ceiling of live speech's adaptive play-out delay
	// (jitter.go); default 250 ms.
	LiveDelay time.Duration
	// MaxDuration ends runaway broadcasts (live speech) and rejects longer
	// media; default 30 min.
	MaxDuration time.Duration
	// PreemptPolicy is PolicyResume (default) or PolicyInterrupt.
	PreemptPolicy string
	// WiredZones are the zones served by the hall's own amplifier (Output).
	// They are valid zones even if the Directory does not list them.
	WiredZones []string
}

func (c *Config) defaults() error {
	if c.PacketsPerFrame == 0 {
		c.PacketsPerFrame = 3
	}
	if c.PacketsPerFrame < 1 || c.PacketsPerFrame > wire.MaxPacketsPerFrame {
		return fmt.Errorf("packets per frame %d outside 1–%d", c.PacketsPerFrame, wire.MaxPacketsPerFrame)
	}
	if c.PlayoutDelay == 0 {
		c.PlayoutDelay = 500 * time.Millisecond
	}
	if c.LiveDelay == 0 {
		c.LiveDelay = 250 * time.Millisecond
	}
	for _, d := range []time.Duration{c.PlayoutDelay, c.LiveDelay} {
		if d < 0 || d > time.Minute {
			return fmt.Errorf("play-out delay %s outside 0–60s", d)
		}
	}
	if c.MaxDuration == 0 {
		c.MaxDuration = 30 * time.Minute
	}
	if c.MaxDuration < 0 {
		return fmt.Errorf("max duration %s is negative", c.MaxDuration)
	}
	switch c.PreemptPolicy {
	case "":
		c.PreemptPolicy = PolicyResume
	case PolicyResume, PolicyInterrupt:
	default:
		return fmt.Errorf("preempt policy %q is not %q or %q", c.PreemptPolicy, PolicyResume, PolicyInterrupt)
	}
	for _, z := range c.WiredZones {
		if err := wire.ValidLevel(z); err != nil {
			return fmt.Errorf("wired zone: %w", err)
		}
	}
	return nil
}

// Deps are the adapters the engine uses. Publisher and Directory are
// required; Media, Speaker, Recorder and Output may be nil, and Clock
// defaults to the wall clock.
type Deps struct {
	Publisher Publisher
	Media     Media
	Speaker   Speaker
	Directory Directory
	Recorder  Recorder
	Output    Output
	Clock     Clock
}

// Request asks for a broadcast. Exactly one of MediaID, Text and Packets is
// set for Start; none for Live.
type Request struct {
	MediaID string
	Text    string
	// Packets are prepared 20 ms Opus packets, 48 kHz mono.
	Packets [][]byte
	Zones   []string
	// Priority is one of the Priority* levels; empty means normal.
	Priority Priority
	// Volume in percent, 1–100; 0 leaves each speaker at its own volume.
	// An emergency always plays at 100.
	Volume int
	// Actor is who asked, for the log and audit trail.
	Actor string
	// Origin is OriginAPI (default), OriginSchedule or OriginLive.
	Origin     Origin
	ScheduleID string
	// Language is the BCP 47 tag of what is said, for the log and reports,
	// and it picks the voice that speaks Text (media.VoiceFor); "" means
	// Vietnamese, spoken in the configured voice.
	Language string
}

// Delivery is what one speaker reported for a broadcast, summed over the
// broadcast's streams. Counts are of 20 ms packets. A speaker that never
// reported shows zeros, so a missed announcement is visible.
type Delivery struct {
	ID             string    `json:"id"`
	OnlineAtStart  bool      `json:"online_at_start"`
	FramesExpected uint64    `json:"frames_expected"`
	FramesPlayed   uint64    `json:"frames_played"`
	FramesLate     uint64    `json:"frames_late"`
	FramesLost     uint64    `json:"frames_lost"`
	ClockErrorUS   int64     `json:"clock_error_us"`
	LastReport     time.Time `json:"last_report,omitzero"`
}

// ZoneState is the state of a broadcast in one of its zones.
type ZoneState struct {
	Zone  string     `json:"zone"`
	State ZoneStatus `json:"state"`
	// StreamID is the stream currently (or last) carrying the broadcast here.
	StreamID uint32 `json:"stream_id,omitempty"`
}

// Broadcast is a snapshot of one broadcast.
type Broadcast struct {
	ID         string   `json:"id"`
	State      State    `json:"state"`
	Reason     string   `json:"reason,omitempty"`
	Source     string   `json:"source"`
	MediaID    string   `json:"media_id,omitempty"`
	Text       string   `json:"text,omitempty"`
	Zones      []string `json:"zones"`
	Priority   Priority `json:"priority"`
	Volume     int      `json:"volume"`
	Actor      string   `json:"actor,omitempty"`
	Origin     Origin   `json:"origin"`
	ScheduleID string   `json:"schedule_id,omitempty"`
	Language   string   `json:"language,omitempty"`
	// Packets is the length in 20 ms packets (for live speech, packets sent
	// so far).
	Packets   int         `json:"packets"`
	StreamIDs []uint32    `json:"stream_ids,omitempty"`
	Created   time.Time   `json:"created"`
	Started   time.Time   `json:"started,omitzero"`
	Ended     time.Time   `json:"ended,omitzero"`
	ZoneState []ZoneState `json:"zone_states"`
	Devices   []Delivery  `json:"devices"`
}

// Record is the durable form of a Broadcast handed to the Recorder: who,
// what, zones, priority, start, end, state, reason and the delivery summary
// per device.
type Record = Broadcast

// Terminal reports whether the state is final.
func Terminal(state State) bool {
	switch state {
	case StateDone, StateStopped, StateFailed, StateInterrupted:
		return true
	}
	return false
}

// ZoneStats counts what the engine published to one zone, in bytes of MQTT
// PUBLISH packets (MQTT 3.1.1 §3.3: fixed header, topic, packet id for
// QoS 1, payload). The broker forwards the same packet to every speaker in
// the zone, so these are also the bytes each of them receives.
type ZoneStats struct {
	AudioMessages   uint64 `json:"audio_messages"`
	AudioBytes      uint64 `json:"audio_bytes"`
	ControlMessages uint64 `json:"control_messages"`
	ControlBytes    uint64 `json:"control_bytes"`
	Errors          uint64 `json:"errors"`
}

// Stats are the engine's publish counters since Since.
type Stats struct {
	Since time.Time            `json:"since"`
	Zones map[string]ZoneStats `json:"zones"`
}

// leg is a broadcast's state in one zone. Arbitration state (arbiter.mu).
type leg struct {
	state  ZoneStatus
	cutAt  int
	stream uint32
}

// bcast is one broadcast. Its fields are arbitration state, guarded by
// arbiter.mu, except id, src, req, zones, rank, volume and live (set before
// it is registered and never changed, but for req.Packets) and acct, whose
// contents are guarded by deliveries.mu.
type bcast struct {
	id       string
	src      string
	req      Request
	zones    []string
	rank     int
	volume   int
	packets  [][]byte // nil once terminal (finish): see npackets
	npackets int      // len(packets) when it was released
	live     *Live
	liveSeg  *segment
	sent     int
	created  time.Time
	started  time.Time
	ended    time.Time
	state    State
	reason   string
	legs     map[string]*leg
	segs     []*segment
	streams  []uint32
	acct     *ledger
	terminal bool
}

// segment is one stream of a broadcast in some of its zones: what the
// arbiter launches and the stream publisher runs. zones, starts, startAt,
// next and removed are arbitration state (arbiter.mu); startAt is written
// only by the segment's own goroutine, which may read it unlocked.
type segment struct {
	b       *bcast
	packets [][]byte // b's audio, held by the segment while it streams
	id      uint32
	base    int
	live    bool
	zones   map[string]bool
	starts  []string
	startAt time.Time
	next    int
	removed bool
	ctx     context.Context
	cancel  context.CancelFunc
	kick    chan struct{}
}

type stopMsg struct {
	stream uint32
	reason string
}

// Engine runs broadcasts. It is safe for concurrent use. It is a facade
// over three parts with one responsibility and one lock each (docs/
// broadcast.md, "Inside the engine"): the arbiter (arbiter.go) decides who
// holds each zone, the stream publisher (stream.go, live.go) puts frames
// on the wire, and delivery accounting (delivery.go) sums the speakers'
// reports. The Engine itself validates requests (request.go), records
// every change durably through the Recorder, in order, and runs the
// housekeeping.
type Engine struct {
	cfg   Config
	deps  Deps
	clock Clock
	log   *slog.Logger
	wired map[string]bool

	arb  *arbiter
	pub  *streamer
	acct *deliveries

	ctx    context.Context
	cancel context.CancelFunc

	// mu guards the engine's life: closed and running.
	mu      sync.Mutex
	closed  bool
	running bool

	// recMu guards recQ, the records waiting for the Recorder.
	recMu  sync.Mutex
	recQ   []Record
	recSig chan struct{}

	runDone   chan struct{}
	closeOnce sync.Once
}

// New validates cfg and returns an engine. Call Run to persist records and
// do housekeeping; broadcasts may be started before Run.
func New(cfg Config, deps Deps, log *slog.Logger) (*Engine, error) {
	if err := cfg.defaults(); err != nil {
		return nil, fmt.Errorf("broadcast config: %w", err)
	}
	topics, err := wire.NewTopics(cfg.Site)
	if err != nil {
		return nil, fmt.Errorf("broadcast config: %w", err)
	}
	if deps.Publisher == nil || deps.Directory == nil {
		return nil, errors.New("broadcast config: Publisher and Directory are required")
	}
	if deps.Clock == nil {
		deps.Clock = realClock{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{
		cfg:     cfg,
		deps:    deps,
		clock:   deps.Clock,
		log:     log.With("component", "broadcast"),
		wired:   map[string]bool{},
		acct:    newDeliveries(),
		recSig:  make(chan struct{}, 1),
		runDone: make(chan struct{}),
	}
	for _, z := range cfg.WiredZones {
		e.wired[z] = true
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.arb = newArbiter(cfg, e.log, e.ctx)
	e.pub = &streamer{
		ppf:       cfg.PacketsPerFrame,
		playout:   cfg.PlayoutDelay,
		liveDelay: cfg.LiveDelay,
		pub:       deps.Publisher,
		out:       deps.Output,
		clock:     deps.Clock,
		topics:    topics,
		wired:     e.wired,
		log:       e.log,
		arb:       e.arb,
		ctx:       e.ctx,
		zoneLocks: map[string]*sync.Mutex{},
		stats:     map[string]*ZoneStats{},
		since:     deps.Clock.Now(),
	}
	e.arb.launched = func(s *segment) {
		e.acct.addStream(s.b.acct, s.id)
		e.pub.start(s)
	}
	e.arb.changed = e.record
	e.arb.pruned = func(b *bcast) { e.acct.forget(b.acct) }
	return e, nil
}

// Run persists records and expires stale queued broadcasts until ctx ends
// or Close is called. On the way out it stops every stream (reason
// "stopped") and flushes pending records. Cancellation is not an error.
func (e *Engine) Run(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ErrClosed
	}
	if e.running {
		e.mu.Unlock()
		return errors.New("broadcast: Run called twice")
	}
	e.running = true
	e.mu.Unlock()
	defer close(e.runDone)

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-e.ctx.Done():
			break loop
		case <-e.recSig:
			e.flushRecords(ctx)
		case <-tick.C:
			e.arb.expire(e.clock.Now())
		}
	}
	e.shutdown()
	fctx, cancel := context.WithTimeout(context.Background(), saveTimeout)
	defer cancel()
	e.flushRecords(fctx)
	return nil
}

// Close stops every stream, waits for the engine's goroutines and for Run
// to return. It is idempotent.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		e.shutdown()
		e.cancel()
		e.pub.wg.Wait()
		e.mu.Lock()
		running := e.running
		e.mu.Unlock()
		if running {
			<-e.runDone
		}
	})
	return nil
}

func (e *Engine) shutdown() {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.arb.close()
	ctx, cancel := context.WithTimeout(context.Background(), stopAllBudget)
	defer cancel()
	if _, err := e.stopEverything(ctx, ReasonStopped, "controller shut down"); err != nil {
		e.log.Warn("shutdown stop", "err", err)
	}
}

// Start validates req, loads its audio and starts it in every zone, pre-empting
// broadcasts of lower priority there. If a zone is held by a broadcast of
// equal or higher priority, the whole broadcast is queued (state queued) and
// starts once all its zones are free. ctx bounds loading the audio only; the
// broadcast outlives it.
func (e *Engine) Start(ctx context.Context, req Request) (Broadcast, error) {
	b, err := e.prepare(ctx, req, false)
	if err != nil {
		return Broadcast{}, err
	}
	var out Broadcast
	if err := e.arb.submit(b, e.clock.Now(), func() { out = e.snapshot(b) }); err != nil {
		return Broadcast{}, err
	}
	return out, nil
}

// Stop stops broadcast id (playing, pre-empted or queued) on behalf of actor,
// publishing stop (reason "stopped") in every zone it holds.
func (e *Engine) Stop(ctx context.Context, id, actor string) error {
	zones, err := e.arb.stop(id, "stopped by "+actorName(actor), e.clock.Now())
	if err != nil {
		return err
	}
	e.log.Info("broadcast stopped", "id", id, "actor", actor)
	ctx, cancel := context.WithTimeout(ctx, ctlTimeout)
	defer cancel()
	return e.pub.flushZones(ctx, zones)
}

// StopAll is the kill switch: it stops every playing, pre-empted and queued
// broadcast and publishes stop (reason "stop_all") on every zone that had a
// stream, concurrently, within well under a second. It returns how many
// broadcasts it stopped.
func (e *Engine) StopAll(ctx context.Context, actor string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, stopAllBudget)
	defer cancel()
	n, err := e.stopEverything(ctx, ReasonStopAll, "stop all by "+actorName(actor))
	e.log.Warn("stop all", "actor", actor, "broadcasts", n)
	return n, err
}

func (e *Engine) stopEverything(ctx context.Context, wireReason, reason string) (int, error) {
	n, zones := e.arb.stopAll(wireReason, reason, e.clock.Now())
	return n, e.pub.flushZones(ctx, zones)
}

func actorName(a string) string {
	if a == "" {
		return "unknown"
	}
	return a
}

// record queues a snapshot of b for the Recorder. Called with arbiter.mu
// held (the arbiter's changed hook), so records keep the order of changes.
func (e *Engine) record(b *bcast) {
	if e.deps.Recorder == nil {
		return
	}
	r := e.snapshot(b)
	e.recMu.Lock()
	e.recQ = append(e.recQ, r)
	e.recMu.Unlock()
	select {
	case e.recSig <- struct{}{}:
	default:
	}
}

func (e *Engine) flushRecords(ctx context.Context) {
	for {
		e.recMu.Lock()
		q := e.recQ
		e.recQ = nil
		e.recMu.Unlock()
		if len(q) == 0 {
			return
		}
		for _, r := range q {
			sctx, cancel := context.WithTimeout(ctx, saveTimeout)
			err := e.deps.Recorder.SaveBroadcast(sctx, r)
			cancel()
			if err != nil {
				e.log.Error("save broadcast", "id", r.ID, "state", r.State, "err", err)
			}
		}
	}
}

// Get returns a snapshot of broadcast id.
func (e *Engine) Get(id string) (Broadcast, error) {
	var s Broadcast
	if !e.arb.view(id, func(b *bcast) { s = e.snapshot(b) }) {
		return Broadcast{}, fmt.Errorf("get %s: %w", id, ErrNotFound)
	}
	return s, nil
}

// List returns snapshots of the broadcasts in memory, oldest first: every
// active and queued one and the most recent ended ones.
func (e *Engine) List() []Broadcast {
	out := []Broadcast{}
	e.arb.viewAll(func(b *bcast) { out = append(out, e.snapshot(b)) })
	return out
}

// Stats returns the per-zone publish counters.
func (e *Engine) Stats() Stats { return e.pub.counters() }

// HandleReport records a delivery report from a speaker (dev/<id>/report).
// Reports are matched to broadcasts by stream id; counts are cumulative per
// stream, so the latest report of each stream replaces the previous one.
func (e *Engine) HandleReport(deviceID string, r wire.Report) {
	if r.Validate() != nil || wire.ValidLevel(deviceID) != nil {
		return
	}
	b := e.acct.report(deviceID, r, e.clock.Now())
	if b == nil {
		e.log.Debug("report for unknown stream", "device", deviceID, "stream", r.StreamID)
		return
	}
	if r.Final {
		e.arb.recordIfEnded(b)
	}
}

// DeviceOnline tells the engine that a speaker came (back) online. If an
// emergency is still playing in one of the speaker's zones, its start
// control is published again on that zone: speakers only subscribe to zone
// topics, and a speaker already playing the stream ignores a repeated start
// for a stream id it knows.
func (e *Engine) DeviceOnline(deviceID string) {
	cands := e.arb.emergencyZones()
	if len(cands) == 0 {
		return
	}
	var hit []zoneSeg
	for _, c := range cands {
		if contains(e.deps.Directory.Members([]string{c.zone}), deviceID) {
			hit = append(hit, c)
		}
	}
	for _, c := range hit {
		if e.arb.resendStart(c, func() { e.acct.addMember(c.seg.b.acct, deviceID) }) {
			e.log.Info("emergency re-sent", "device", deviceID, "zone", c.zone, "stream", c.seg.id)
		}
	}
}

// snapshot copies b. Called with arbiter.mu held.
func (e *Engine) snapshot(b *bcast) Broadcast {
	s := Broadcast{
		ID:         b.id,
		State:      b.state,
		Reason:     b.reason,
		Source:     b.src,
		MediaID:    b.req.MediaID,
		Text:       b.req.Text,
		Zones:      append([]string(nil), b.zones...),
		Priority:   b.req.Priority,
		Volume:     b.volume,
		Actor:      b.req.Actor,
		Origin:     b.req.Origin,
		ScheduleID: b.req.ScheduleID,
		Language:   b.req.Language,
		Packets:    max(len(b.packets), b.npackets),
		StreamIDs:  append([]uint32(nil), b.streams...),
		Created:    b.created,
		Started:    b.started,
		Ended:      b.ended,
	}
	if b.live != nil {
		s.Packets = b.sent
	}
	for _, z := range b.zones {
		lg := b.legs[z]
		s.ZoneState = append(s.ZoneState, ZoneState{Zone: z, State: lg.state, StreamID: lg.stream})
	}
	s.Devices = e.acct.summary(b.acct)
	return s
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
