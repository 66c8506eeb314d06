package hall

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/loalang/loalang/device/wire"
	"github.com/prometheus/client_golang/prometheus"
)

// Relay steps of a broadcast to wired zones, in the order they happen.
const (
	StepAmpOn    = "amp_on"
	StepZonesOn  = "zones_on"
	StepZonesOff = "zones_off"
	StepAmpOff   = "amp_off"
)

// Tunables that are not configuration.
const (
	// staleAfter ends a broadcast whose Stop never came this long after its
	// last audio, so a lost stop cannot hold the relays on forever.
	staleAfter = 30 * time.Second
	// keepDeliveries bounds how many broadcasts' delivery records are kept.
	keepDeliveries = 64
	// frameQueue is the sink's input queue, in frames (about 20 s of audio
	// at three packets per frame).
	frameQueue = 1024
	// prewarmHold is how long a Prewarm keeps the amplifier on without a
	// broadcast: long enough for speech synthesis or a media fetch. The
	// broadcast's Start takes over from it.
	prewarmHold = 15 * time.Second
	// relaySlack is added to the estimated Modbus transaction time of a
	// relay step in ReadyIn: the board goroutine's wake-up, a poll that was
	// already on the wire, the board's own processing. Starting 100 ms
	// late costs nothing; switching a zone after its first words loses
	// them.
	relaySlack = 60 * time.Millisecond
)

// Step is one relay step of a broadcast, confirmed by reading the coils back.
type Step struct {
	Name string
	// At is when the read-back confirmed the step. For amp_on it can be
	// before the broadcast started, when the amplifier was already on.
	At time.Time
}

// Delivery is the wired-zone delivery state of one broadcast.
type Delivery struct {
	StreamID uint32
	// Zones are the wired zones the broadcast switches on.
	Zones     []string
	Emergency bool
	Started   time.Time
	// Stopped is zero while the broadcast runs.
	Stopped time.Time
	// Played, Late and Lost count 20 ms packets through the sound card:
	// played on time, dropped because they arrived after their play-at
	// time, and never arrived or failed to decode (known once stopped).
	Played, Late, Lost uint32
	// Steps are the confirmed relay steps so far, in order.
	Steps []Step
}

// Step returns the named step and whether it was confirmed.
func (d Delivery) Step(name string) (Step, bool) {
	for _, s := range d.Steps {
		if s.Name == name {
			return s, true
		}
	}
	return Step{}, false
}

// Status is the health of the hall output.
type Status struct {
	Sink  SinkStatus
	Board BoardStatus
}

// SinkStatus is the sound card's health.
type SinkStatus struct {
	Configured bool
	// OK is false when the sound device could not be opened; Reason says why.
	OK      bool
	Reason  string
	Playing bool
}

// BoardStatus is the relay board's health and its last confirmed coils.
type BoardStatus struct {
	Configured bool
	Port       string
	// OK is true while the port is open and the last transaction succeeded.
	OK bool
	// Alarm is raised by a dead or unplugged port, a CRC error, a timeout or
	// a read-back mismatch, and cleared when the board answers again.
	Alarm  bool
	Reason string
	// Since is when the alarm was raised (or last cleared).
	Since time.Time
	// Faults counts every fault since start.
	Faults uint64
	// Coils are the last confirmed states: "amplifier" and each zone name.
	Coils map[string]bool
}

// bcast is one broadcast to wired zones as the board controller sees it.
type bcast struct {
	id        uint32
	zones     []string
	emergency bool
	started   time.Time
	stopped   time.Time
	audioEnd  time.Time
}

// offAt is when the broadcast's zones may go off.
func (b *bcast) offAt(tail time.Duration) time.Time {
	if b.stopped.IsZero() {
		return b.audioEnd.Add(staleAfter + tail)
	}
	end := b.stopped
	if b.audioEnd.After(end) {
		end = b.audioEnd
	}
	return end.Add(tail)
}

// Hall drives the hall's sound card and relay board. Start, Frame and Stop
// never block on the serial port or the sound card.
type Hall struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics

	sink  *sink
	board *boardCtl

	mu         sync.Mutex
	bcasts     map[uint32]*bcast
	deliveries map[uint32]*Delivery
	order      []uint32
	boardSt    BoardStatus
	// ampOnAt is when the amplifier was confirmed on (valid while
	// boardSt.Coils[ampName]); prewarmUntil holds it on for a request
	// whose audio is still being prepared.
	ampOnAt      time.Time
	prewarmUntil time.Time

	wake chan struct{}

	runMu     sync.Mutex
	cancel    context.CancelFunc
	done      chan struct{}
	closed    bool
	closeOnce sync.Once
}

// New validates cfg and prepares the hall output. The sound device is opened
// here: if it cannot be, New still succeeds and Status reports the sink
// failed with the reason. The relay board is opened by Run.
func New(cfg Config, log *slog.Logger) (*Hall, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "hall")
	h := &Hall{
		cfg:        cfg,
		log:        log,
		now:        time.Now,
		metrics:    newMetrics(),
		bcasts:     map[uint32]*bcast{},
		deliveries: map[uint32]*Delivery{},
		wake:       make(chan struct{}, 1),
	}
	if cfg.Board != nil {
		h.board = newBoardCtl(h, *cfg.Board)
		h.boardSt = BoardStatus{Configured: true, Port: cfg.Board.Port, Coils: map[string]bool{}}
	}
	if cfg.Sink != nil {
		h.sink = newSink(h, *cfg.Sink)
	}
	return h, nil
}

// Run drives the relay board and the sound card until ctx is cancelled or
// Close is called. Cancellation is not an error.
func (h *Hall) Run(ctx context.Context) error {
	h.runMu.Lock()
	if h.closed {
		h.runMu.Unlock()
		return ErrClosed
	}
	if h.cancel != nil {
		h.runMu.Unlock()
		return fmt.Errorf("hall: Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	h.cancel = cancel
	h.done = make(chan struct{})
	h.runMu.Unlock()
	defer close(h.done)
	defer cancel()

	var wg sync.WaitGroup
	if h.board != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.board.run(ctx)
		}()
	}
	if h.sink != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.sink.run(ctx)
		}()
	}
	<-ctx.Done()
	wg.Wait()
	return nil
}

// Close stops Run, switches the relays off on the way out (best effort) and
// releases the sound card. It is idempotent.
func (h *Hall) Close() error {
	h.closeOnce.Do(func() {
		h.runMu.Lock()
		h.closed = true
		cancel, done := h.cancel, h.done
		h.runMu.Unlock()
		if cancel != nil {
			cancel()
			<-done
		}
		if h.sink != nil {
			h.sink.close()
		}
	})
	return nil
}

// Start begins a broadcast on the hall output. zones are this broadcast's
// wired zones (names not in the board config are ignored); an emergency
// switches on every wired zone whatever zones says (Circular 39/2020/
// TT-BTTTT: emergency bulletins reach everyone). Start never blocks on the
// serial port.
func (h *Hall) Start(ctx context.Context, ctl wire.StreamControl, zones []string) {
	now := h.now()
	emergency := ctl.Priority == wire.PriorityEmergency
	var wired []string
	if h.cfg.Board != nil {
		if emergency {
			for z := range h.cfg.Board.Zones {
				wired = append(wired, z)
			}
		} else {
			for _, z := range zones {
				if _, ok := h.cfg.Board.Zones[z]; ok && !slices.Contains(wired, z) {
					wired = append(wired, z)
				}
			}
		}
		sort.Strings(wired)
	}
	h.mu.Lock()
	d := &Delivery{StreamID: ctl.StreamID, Zones: wired, Emergency: emergency, Started: now}
	if _, ok := h.deliveries[ctl.StreamID]; !ok {
		h.order = append(h.order, ctl.StreamID)
	}
	h.deliveries[ctl.StreamID] = d
	for len(h.order) > keepDeliveries {
		delete(h.deliveries, h.order[0])
		h.order = h.order[1:]
	}
	if len(wired) > 0 {
		h.prewarmUntil = time.Time{} // the broadcast holds the amplifier now
		start := now
		if ctl.StartAt > 0 {
			if t := time.UnixMicro(ctl.StartAt); t.After(start) {
				start = t
			}
		}
		h.bcasts[ctl.StreamID] = &bcast{id: ctl.StreamID, zones: wired, emergency: emergency, started: now, audioEnd: start}
	}
	h.mu.Unlock()
	h.log.Info("hall broadcast start", "broadcast", ctl.StreamID, "zones", wired, "priority", ctl.Priority)
	if h.sink != nil {
		h.sink.start(ctl)
	}
	h.poke()
}

// Frame queues one audio frame for the sound card and extends the
// broadcast's audio end for the relay tail. It never blocks: when the queue
// is full the frame is dropped and counted.
func (h *Hall) Frame(f wire.Frame) {
	end := time.UnixMicro(f.PlayAt + int64(f.DelayMS)*1000 + int64(len(f.Packets))*wire.PacketMS*1000)
	h.mu.Lock()
	if b, ok := h.bcasts[f.StreamID]; ok && end.After(b.audioEnd) {
		b.audioEnd = end
	}
	h.mu.Unlock()
	if h.sink != nil {
		h.sink.frame(f)
	}
}

// Stop ends a broadcast: the sound card plays what it already has, and the
// zones go off a tail after the audio ends.
func (h *Hall) Stop(streamID uint32) {
	now := h.now()
	h.mu.Lock()
	if b, ok := h.bcasts[streamID]; ok && b.stopped.IsZero() {
		b.stopped = now
	}
	if d, ok := h.deliveries[streamID]; ok && d.Stopped.IsZero() {
		d.Stopped = now
	}
	h.mu.Unlock()
	if h.sink != nil {
		h.sink.stop(streamID)
	}
	h.log.Info("hall broadcast stop", "broadcast", streamID)
	h.poke()
}

// Delivery returns the delivery state of a broadcast, or a zero Delivery
// with only StreamID set when it is unknown.
func (h *Hall) Delivery(streamID uint32) Delivery {
	h.mu.Lock()
	d, ok := h.deliveries[streamID]
	var out Delivery
	if ok {
		out = *d
		out.Zones = slices.Clone(d.Zones)
		out.Steps = slices.Clone(d.Steps)
	} else {
		out.StreamID = streamID
	}
	h.mu.Unlock()
	if ok && h.sink != nil {
		out.Played, out.Late, out.Lost = h.sink.counts(streamID)
	}
	return out
}

// WarmupLeft returns how much of the amplifier's warm-up is left if a
// broadcast started now: zero when the amplifier is warm, the warm-up time
// when it is off. ReadyIn adds the relay steps and the zones' state; it is
// what the broadcast engine uses to start streams with wired zones.
func (h *Hall) WarmupLeft() time.Duration {
	if h.board == nil {
		return 0
	}
	return h.board.warmupLeft(h.now())
}

// Prewarm switches the amplifier on (if it is off) for a broadcast to
// wired zones that has been requested but whose audio is still being
// loaded or spoken, so that its warm-up runs meanwhile. Without a Start
// the amplifier goes off again after prewarmHold and the idle time. It
// never blocks.
func (h *Hall) Prewarm() {
	if h.board == nil {
		return
	}
	h.mu.Lock()
	h.prewarmUntil = h.now().Add(prewarmHold)
	h.mu.Unlock()
	h.log.Debug("hall prewarm")
	h.poke()
}

// ReadyIn returns how long from now audio in the given wired zones would be
// heard: zero when the amplifier is warm and the zones are on; one relay
// step when only the zones must be switched; the rest of the warm-up plus
// a step while the amplifier warms; a step, the warm-up and a step when it
// is off. A relay step is one Write Multiple Coils and one Read Coils
// transaction at the board's baud rate plus relaySlack. Zones not on the
// board and a board in alarm (which cannot switch anything) need no wait:
// the IP speakers never wait for a broken board. It never blocks.
func (h *Hall) ReadyIn(zones []string) time.Duration {
	if h.board == nil {
		return 0
	}
	cfg := h.cfg.Board
	now := h.now()
	step := relayStep(cfg.Baud, len(h.board.known))
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.boardSt.Alarm {
		return 0
	}
	ours, allOn := false, true
	for _, z := range zones {
		if _, ok := cfg.Zones[z]; ok {
			ours = true
			allOn = allOn && h.boardSt.Coils[z]
		}
	}
	if !ours {
		return 0
	}
	if !h.boardSt.Coils[ampName] {
		return step + cfg.Warmup + step
	}
	if allOn {
		return 0
	}
	return max(0, h.ampOnAt.Add(cfg.Warmup).Sub(now)) + step
}

// relayStep estimates one relay step on the RS-485 line: a Write Multiple
// Coils request and response and a Read Coils request and response over
// coils coils, 11 bits per character (8N1 plus start and stop), with the
// 3.5-character silence before each frame (Modbus over Serial Line v1.02
// §2.5.1.1), plus relaySlack.
func relayStep(baud, coils int) time.Duration {
	data := (coils + 7) / 8
	chars := (9 + data) + 8 + 8 + (5 + data) + 4*4 // frames plus 3.5-char gaps, rounded up
	return time.Duration(chars*11)*time.Second/time.Duration(max(baud, 1)) + relaySlack
}

// Status reports the health of the sink and the board.
func (h *Hall) Status() Status {
	var st Status
	h.mu.Lock()
	st.Board = h.boardSt
	st.Board.Coils = make(map[string]bool, len(h.boardSt.Coils))
	for k, v := range h.boardSt.Coils {
		st.Board.Coils[k] = v
	}
	h.mu.Unlock()
	if h.sink != nil {
		st.Sink = h.sink.status()
	}
	return st
}

// Collector returns the hall's Prometheus metrics, for the web layer to
// register.
func (h *Hall) Collector() prometheus.Collector { return h.metrics }

func (h *Hall) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// addStep records a confirmed step once per broadcast.
func (h *Hall) addStepLocked(id uint32, name string, at time.Time) bool {
	d, ok := h.deliveries[id]
	if !ok {
		return false
	}
	for _, s := range d.Steps {
		if s.Name == name {
			return false
		}
	}
	d.Steps = append(d.Steps, Step{Name: name, At: at})
	return true
}

func (h *Hall) hasStepLocked(id uint32, name string) bool {
	d, ok := h.deliveries[id]
	if !ok {
		return false
	}
	for _, s := range d.Steps {
		if s.Name == name {
			return true
		}
	}
	return false
}
