package hall

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/hajimehoshi/oto/v2"
	"github.com/loalang/loalang/device/wire"
	"gopkg.in/hraban/opus.v2"
)

// Sink constants. Protocol v1 audio is Opus (RFC 6716) at 48 kHz mono in
// 20 ms packets (device/wire).
const (
	sampleRate    = 48000
	packetSamples = sampleRate * wire.PacketMS / 1000
	// minChunk is the least the source hands oto at once (5 ms), so the
	// player is topped up often without waking per sample.
	minChunk = sampleRate / 200
	// maxQueueAhead bounds how far ahead of the cursor a packet may be
	// queued: the protocol's largest play-out delay plus slack.
	maxQueueAhead = 65 * time.Second
	// drainMargin is how long after its last audio an idle sink keeps the
	// sound card running before suspending it.
	drainMargin = 200 * time.Millisecond
	// deviceOpenTimeout bounds the wait for oto's device open.
	deviceOpenTimeout = 5 * time.Second
)

// tick converts microseconds on the controller clock to a sample index at
// 48 kHz on the same clock (48 samples per ms = 6/125 per µs).
func tick(us int64) int64 { return us * 6 / 125 }

// shared holds the one oto context of the process: oto v2 supports a single
// context, so every sink (and a Hall re-created on config reload) shares it,
// and a failure to open the device is remembered rather than retried.
var shared struct {
	mu       sync.Mutex
	made     bool
	ctx      *oto.Context
	err      error
	channels int
}

// sharedContext returns the process's oto context, creating it on first
// use. oto's NewContext reports no error without a device: the real error
// comes from Err() once ready is closed.
func sharedContext(channels int) (*oto.Context, error) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.made {
		if shared.err == nil && shared.channels != channels {
			return nil, fmt.Errorf("%w: oto context already open with %d channels", ErrNoSoundDevice, shared.channels)
		}
		return shared.ctx, shared.err
	}
	shared.made, shared.channels = true, channels
	c, ready, err := oto.NewContext(sampleRate, channels, oto.FormatFloat32LE)
	if err == nil {
		select {
		case <-ready:
			err = c.Err()
		case <-time.After(deviceOpenTimeout):
			err = fmt.Errorf("device open timed out after %v", deviceOpenTimeout)
		}
	}
	if err != nil {
		shared.err = fmt.Errorf("%w: %v", ErrNoSoundDevice, err)
		return nil, shared.err
	}
	// An idle oto context writes silence non-stop (about 85% of a core):
	// keep it suspended until a stream starts.
	if err := c.Suspend(); err != nil {
		shared.err = fmt.Errorf("%w: suspend: %v", ErrNoSoundDevice, err)
		return nil, shared.err
	}
	shared.ctx = c
	return c, nil
}

// sinkStats counts one stream's packets.
type sinkStats struct {
	played, late, bad uint32
	expected          uint32 // from the start control, 0 if unknown
	maxSeq            uint32 // highest packet index seen + 1
	stopped           bool
	lastEnd           int64 // end tick of its last queued packet
}

// tpacket is one decoded 20 ms packet on the timeline.
type tpacket struct {
	stream uint32
	start  int64
	pcm    []float32
	played bool
}

// timeline maps decoded packets to their play-at ticks and hands oto the
// samples due next. oto pulls through source.Read; a sample for tick T is
// handed at T - latency, so it leaves the speaker at T when the output
// path's delay equals the configured latency.
type timeline struct {
	mu       sync.Mutex
	now      func() time.Time
	latency  int64 // in samples
	cursor   int64 // next tick to hand oto
	anchored bool
	packets  []*tpacket // sorted by start, none entirely before cursor
	stats    map[uint32]*sinkStats
	order    []uint32
	current  uint32
	lastTick int64 // end tick of the last real audio handed out
	metrics  *metrics

	// Underrun tracking since the anchor: oto's mux pads with silence when
	// the player buffer runs dry, which delays everything after it; the
	// padding shows as samples the device consumed that were not ours.
	anchorAt int64 // tick of the anchor; tracking starts at the first pull
	emitted  int64 // samples handed out since the anchor
	minLag   int64
	skipped  int64
}

// resyncSamples is how far behind the device may fall before the cursor
// skips ahead to restore alignment (100 ms). oto's ALSA loop pulls the
// player buffer a period (about 21 ms) at a time and devices drain in
// bursts of up to their buffer size, so the measured lag swings by tens of
// milliseconds without any underrun; only a larger loss is corrected.
const resyncSamples = sampleRate / 10

// insert queues a decoded packet, or counts it late when its time has
// passed (late packets are dropped, never played out of time).
func (t *timeline) insert(stream uint32, start int64, pcm []float32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.stats[stream]
	if st == nil {
		return
	}
	due := tick(t.now().UnixMicro()) + t.latency
	if t.anchored {
		due = t.cursor
	}
	if start < due {
		st.late++
		t.metrics.packets.WithLabelValues("late").Inc()
		return
	}
	if start > due+tick(maxQueueAhead.Microseconds()) {
		t.metrics.packets.WithLabelValues("dropped").Inc()
		return
	}
	i := sort.Search(len(t.packets), func(i int) bool { return t.packets[i].start >= start })
	if i < len(t.packets) && t.packets[i].start == start {
		return // duplicate
	}
	t.packets = append(t.packets, nil)
	copy(t.packets[i+1:], t.packets[i:])
	t.packets[i] = &tpacket{stream: stream, start: start, pcm: pcm}
	st.lastEnd = max(st.lastEnd, start+int64(len(pcm)))
}

// take fills out with the mono samples due next. unplayed is how many
// samples handed out earlier still wait in oto's player buffer, or -1 when
// unknown. It returns how many it wrote, or 0 and how long to wait until at
// least minChunk are due.
func (t *timeline) take(out []float32, unplayed int64) (int, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := tick(t.now().UnixMicro())
	if !t.anchored || t.cursor < now {
		// First read after a start, or the device ran dry: restart the
		// cursor at the present, which leaves the device a full latency
		// of lead. Packets behind it are late.
		t.cursor, t.anchored = now, true
		t.anchorAt, t.emitted, t.minLag, t.skipped = now, 0, 0, 0
		t.dropBehind()
	} else if unplayed >= 0 && unplayed < t.emitted {
		// lag = what the device consumed by the clock minus what it took
		// from us. It only falls while the device queue fills with our
		// samples; a rise beyond its minimum is padding (an underrun),
		// which the cursor skips over so later audio keeps its time.
		lag := (now - t.anchorAt) - (t.emitted - unplayed)
		t.minLag = min(t.minLag, lag)
		if z := lag - t.minLag - t.skipped; z > resyncSamples {
			t.cursor += z
			t.skipped += z
			t.dropBehind()
			t.metrics.underrun.Add(float64(z) / sampleRate)
		}
	}
	avail := now + t.latency - t.cursor
	if avail < minChunk {
		return 0, time.Duration((minChunk-avail)*125/6) * time.Microsecond
	}
	n := int(min(avail, int64(len(out))))
	clear(out[:n])
	end := t.cursor + int64(n)
	for _, p := range t.packets {
		if p.start >= end {
			break
		}
		pend := p.start + int64(len(p.pcm))
		from, to := max(p.start, t.cursor), min(pend, end)
		if from >= to {
			continue
		}
		copy(out[from-t.cursor:to-t.cursor], p.pcm[from-p.start:to-p.start])
		if !p.played {
			p.played = true
			if st := t.stats[p.stream]; st != nil {
				st.played++
			}
			t.metrics.packets.WithLabelValues("played").Inc()
		}
		t.lastTick = max(t.lastTick, to)
	}
	t.cursor = end
	t.emitted += int64(n)
	t.dropBehind()
	return n, 0
}

// dropBehind removes packets that end before the cursor, counting the
// never-played ones late.
func (t *timeline) dropBehind() {
	k := 0
	for _, p := range t.packets {
		if p.start+int64(len(p.pcm)) <= t.cursor {
			if !p.played {
				if st := t.stats[p.stream]; st != nil {
					st.late++
				}
				t.metrics.packets.WithLabelValues("late").Inc()
			}
			continue
		}
		t.packets[k] = p
		k++
	}
	clear(t.packets[k:])
	t.packets = t.packets[:k]
}

// idle reports whether nothing is queued or due: every stream is stopped
// (or silent for staleAfter) and the last audio has left the device.
func (t *timeline) idle() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := tick(t.now().UnixMicro())
	if len(t.packets) > 0 || now < t.lastTick+tick(drainMargin.Microseconds()) {
		return false
	}
	if st := t.stats[t.current]; st != nil && !st.stopped && now < st.lastEnd+tick(staleAfter.Microseconds()) {
		return false
	}
	return true
}

// source is the io.Reader one oto player pulls from.
type source struct {
	tl       *timeline
	channels int
	closed   chan struct{}
	once     sync.Once
	buf      []float32
	player   atomicPlayer
}

// atomicPlayer holds the player a source feeds, set right after NewPlayer.
type atomicPlayer struct {
	mu sync.Mutex
	p  oto.Player
}

func (a *atomicPlayer) set(p oto.Player) {
	a.mu.Lock()
	a.p = p
	a.mu.Unlock()
}

// unplayed returns the samples (per channel) waiting in the player's
// buffer, or -1 before the player is known.
func (a *atomicPlayer) unplayed(frameBytes int) int64 {
	a.mu.Lock()
	p := a.p
	a.mu.Unlock()
	if p == nil {
		return -1
	}
	return int64(p.UnplayedBufferSize() / frameBytes)
}

// Read hands oto the samples that are due, blocking (briefly) until some
// are: oto's mux reads without holding the player lock, so blocking here
// paces it at the timeline instead of letting it spin.
func (s *source) Read(p []byte) (int, error) {
	frameBytes := 4 * s.channels
	want := len(p) / frameBytes
	if want == 0 {
		return 0, nil
	}
	if cap(s.buf) < want {
		s.buf = make([]float32, want)
	}
	for {
		n, wait := s.tl.take(s.buf[:want], s.player.unplayed(frameBytes))
		if n > 0 {
			for i, v := range s.buf[:n] {
				bits := math.Float32bits(v)
				for c := 0; c < s.channels; c++ {
					binary.LittleEndian.PutUint32(p[(i*s.channels+c)*4:], bits)
				}
			}
			return n * frameBytes, nil
		}
		t := time.NewTimer(wait)
		select {
		case <-s.closed:
			t.Stop()
			return 0, io.EOF
		case <-t.C:
		}
	}
}

func (s *source) close() { s.once.Do(func() { close(s.closed) }) }

type sinkCmd struct {
	start *wire.StreamControl
	stop  uint32
}

// sink plays streams through the sound card.
type sink struct {
	h   *Hall
	cfg SinkConfig
	log *slog.Logger

	octx    *oto.Context
	failErr error

	frames chan wire.Frame
	cmds   chan sinkCmd
	tl     *timeline

	// Owned by run.
	player  oto.Player
	src     *source
	dec     *opus.Decoder
	decFor  uint32
	gain    float32
	pcmBuf  []float32
	playing bool

	stMu      sync.Mutex
	stPlaying bool
	closeOnce sync.Once
}

func newSink(h *Hall, cfg SinkConfig) *sink {
	s := &sink{
		h:      h,
		cfg:    cfg,
		log:    h.log.With("part", "sink"),
		frames: make(chan wire.Frame, frameQueue),
		cmds:   make(chan sinkCmd, 64),
		pcmBuf: make([]float32, packetSamples*6),
		tl: &timeline{
			now:     h.now,
			latency: tick(cfg.OutputLatency.Microseconds()),
			stats:   map[uint32]*sinkStats{},
			metrics: h.metrics,
		},
	}
	s.octx, s.failErr = sharedContext(cfg.Channels)
	if s.failErr != nil {
		h.metrics.sinkUp.Set(0)
		s.log.Warn("hall sound device unusable", "err", s.failErr)
	} else {
		h.metrics.sinkUp.Set(1)
		s.log.Info("hall sound device ready", "channels", cfg.Channels, "output_latency", cfg.OutputLatency)
	}
	return s
}

func (s *sink) status() SinkStatus {
	st := SinkStatus{Configured: true, OK: s.failErr == nil}
	if s.failErr != nil {
		st.Reason = s.failErr.Error()
	}
	s.stMu.Lock()
	st.Playing = s.stPlaying
	s.stMu.Unlock()
	return st
}

func (s *sink) start(ctl wire.StreamControl) {
	if s.failErr != nil {
		return
	}
	s.tl.mu.Lock()
	if _, ok := s.tl.stats[ctl.StreamID]; !ok {
		s.tl.stats[ctl.StreamID] = &sinkStats{expected: ctl.Packets}
		s.tl.order = append(s.tl.order, ctl.StreamID)
		for len(s.tl.order) > keepDeliveries {
			delete(s.tl.stats, s.tl.order[0])
			s.tl.order = s.tl.order[1:]
		}
	}
	s.tl.current = ctl.StreamID
	s.tl.mu.Unlock()
	select {
	case s.cmds <- sinkCmd{start: &ctl}:
	default:
		s.log.Warn("hall sink command queue full", "broadcast", ctl.StreamID)
	}
}

func (s *sink) stop(id uint32) {
	if s.failErr != nil {
		return
	}
	s.tl.mu.Lock()
	if st := s.tl.stats[id]; st != nil {
		st.stopped = true
	}
	s.tl.mu.Unlock()
	select {
	case s.cmds <- sinkCmd{stop: id}:
	default:
	}
}

func (s *sink) frame(f wire.Frame) {
	if s.failErr != nil {
		return
	}
	select {
	case s.frames <- f:
	default:
		s.h.metrics.packets.WithLabelValues("dropped").Add(float64(len(f.Packets)))
	}
}

// counts returns a stream's played, late and lost packets; lost is known
// once the expected count is (from the start control or the highest
// sequence seen after stop).
func (s *sink) counts(id uint32) (played, late, lost uint32) {
	s.tl.mu.Lock()
	defer s.tl.mu.Unlock()
	st := s.tl.stats[id]
	if st == nil {
		return 0, 0, 0
	}
	exp := st.expected
	if exp == 0 && st.stopped {
		exp = st.maxSeq
	}
	// Undecodable packets were neither played nor late: they count lost.
	if st.stopped && exp > st.played+st.late {
		lost = exp - st.played - st.late
	}
	return st.played, st.late, lost
}

func (s *sink) run(ctx context.Context) {
	if s.failErr != nil {
		<-ctx.Done()
		return
	}
	ticker := time.NewTicker(100 * time.Millisecond)
	defer ticker.Stop()
	defer s.close()
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-s.cmds:
			if c.start != nil {
				s.begin(*c.start)
			}
		case f := <-s.frames:
			s.decode(f)
		case <-ticker.C:
			if s.playing && s.tl.idle() {
				s.suspend()
			}
		}
	}
}

// begin prepares decoding a new stream and wakes the sound card.
func (s *sink) begin(ctl wire.StreamControl) {
	if s.decFor != ctl.StreamID {
		dec, err := opus.NewDecoder(sampleRate, 1)
		if err != nil {
			s.log.Warn("opus decoder", "err", err)
			return
		}
		s.dec, s.decFor = dec, ctl.StreamID
	}
	s.gain = 1
	if ctl.Volume > 0 && ctl.Volume < 100 {
		s.gain = float32(ctl.Volume) / 100
	}
	if s.playing {
		return
	}
	s.src = &source{tl: s.tl, channels: s.cfg.Channels, closed: make(chan struct{})}
	s.player = s.octx.NewPlayer(s.src)
	s.src.player.set(s.player)
	// The player buffer holds what is handed ahead of time: the latency.
	bytes := int(s.tl.latency) * 4 * s.cfg.Channels
	if bs, ok := s.player.(oto.BufferSizeSetter); ok && bytes > 0 {
		bs.SetBufferSize(bytes)
	}
	// Fill the player before the device wakes, so no silence is queued in
	// the device ahead of the first samples.
	s.player.Play()
	if err := s.octx.Resume(); err != nil {
		s.log.Warn("hall sound device resume", "err", err)
		s.src.close()
		s.player.Close()
		s.player, s.src = nil, nil
		return
	}
	s.playing = true
	s.setPlaying(true)
	s.log.Debug("hall sound device resumed", "broadcast", ctl.StreamID)
}

// decode turns a frame's packets into timeline entries. Packets are decoded
// in arrival order, late ones too, so the decoder's state stays continuous.
func (s *sink) decode(f wire.Frame) {
	if f.StreamID != s.decFor || s.dec == nil {
		return
	}
	base := f.PlayAt + int64(f.DelayMS)*1000
	for i, pkt := range f.Packets {
		n, err := s.dec.DecodeFloat32(pkt, s.pcmBuf)
		s.tl.mu.Lock()
		if st := s.tl.stats[f.StreamID]; st != nil {
			st.maxSeq = max(st.maxSeq, f.Seq+uint32(i)+1)
			if err != nil {
				st.bad++
			}
		}
		s.tl.mu.Unlock()
		if err != nil {
			s.h.metrics.packets.WithLabelValues("undecodable").Inc()
			continue
		}
		pcm := make([]float32, n)
		for j, v := range s.pcmBuf[:n] {
			pcm[j] = v * s.gain
		}
		s.tl.insert(f.StreamID, tick(base+int64(i)*wire.PacketMS*1000), pcm)
	}
}

// suspend closes the player and suspends the context while nothing plays.
func (s *sink) suspend() {
	if !s.playing {
		return
	}
	s.src.close()
	s.player.Close()
	s.player, s.src = nil, nil
	if err := s.octx.Suspend(); err != nil {
		s.log.Warn("hall sound device suspend", "err", err)
	}
	s.tl.mu.Lock()
	s.tl.anchored = false
	s.tl.mu.Unlock()
	s.playing = false
	s.setPlaying(false)
	s.log.Debug("hall sound device suspended")
}

func (s *sink) setPlaying(v bool) {
	s.stMu.Lock()
	s.stPlaying = v
	s.stMu.Unlock()
}

// close releases the player; called from run's exit, and from Hall.Close
// when Run never ran.
func (s *sink) close() {
	s.closeOnce.Do(func() {
		if s.playing {
			s.suspend()
		}
	})
}
