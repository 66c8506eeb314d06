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
	// idleCheck is how often an idle sink looks for work; concealCheck how
	// often a playing one looks for a missing packet, which it conceals
	// concealGuard before the device needs it (two checks and a chunk).
	idleCheck    = 100 * time.Millisecond
	concealCheck = 10 * time.Millisecond
	concealGuard = 30 * time.Millisecond
	// maxConceal is the most packets concealed in a row (100 ms).
	maxConceal = 5
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
	// concealed packets are the decoder's loss concealment for a packet
	// that was missing at its play time: played, but not counted played.
	concealed bool
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
	// devElapsed is how many samples the card should have consumed since
	// the anchor at its estimated rate; lastNow is the tick it was last
	// advanced to.
	devElapsed float64
	lastNow    int64

	// Drift correction: frac is the fractional part of the read position
	// (the position is cursor+frac), drift the controller, scratch the
	// interpolator's input.
	frac    float64
	drift   drift
	scratch []float32
}

// resyncSamples is how far behind the device may fall before the cursor
// skips ahead to restore alignment (100 ms). oto's ALSA loop pulls the
// player buffer a period (about 21 ms) at a time and devices drain in
// bursts of up to their buffer size, so the measured lag swings by tens of
// milliseconds without any underrun; only a larger loss is corrected.
const resyncSamples = sampleRate / 10

// due returns the first tick not yet handed to the device. Called with
// t.mu held.
func (t *timeline) due() int64 {
	if t.anchored {
		return t.cursor
	}
	return tick(t.now().UnixMicro()) + t.latency
}

// insert queues a decoded packet, or counts it late when its time has
// passed (late packets are dropped, never played out of time). A concealed
// packet (the decoder's guess for a missing one) is queued uncounted and
// silently dropped when its time has passed.
func (t *timeline) insert(stream uint32, start int64, pcm []float32, concealed bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.stats[stream]
	if st == nil {
		return
	}
	due := t.due()
	if start < due {
		if !concealed {
			st.late++
			t.metrics.packets.WithLabelValues("late").Inc()
		}
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
	t.packets[i] = &tpacket{stream: stream, start: start, pcm: pcm, concealed: concealed}
	st.lastEnd = max(st.lastEnd, start+int64(len(pcm)))
}

// take fills out with the mono samples due next. delay is how many samples
// handed out earlier the device has not played yet (for oto, what waits in
// the player's buffer), or -1 when unknown. It returns how many it wrote,
// or 0 and how long to wait until at least minChunk are due.
//
// Samples are read from the timeline at cursor+frac, advancing by 1/ratio
// per output sample, where ratio is the drift controller's estimate of the
// card's rate against the controller clock (1 until it has one).
func (t *timeline) take(out []float32, delay int64) (int, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := tick(t.now().UnixMicro())
	if !t.anchored || t.cursor < now {
		// First read after a start, or the device ran dry: restart the
		// cursor at the present, which leaves the device a full latency
		// of lead. Packets behind it are late.
		t.cursor, t.frac, t.anchored = now, 0, true
		t.anchorAt, t.emitted, t.minLag, t.skipped = now, 0, 0, 0
		t.devElapsed, t.lastNow = 0, now
		t.drift.reset(now)
		t.dropBehind()
	} else if delay >= 0 && delay < t.emitted {
		t.devElapsed += float64(now-t.lastNow) * t.drift.rate()
		t.lastNow = now
		// lag = what the device consumed by its clock minus what it took
		// from us. It only falls while the device queue fills with our
		// samples; a rise beyond its minimum is padding (an underrun),
		// which the cursor skips over so later audio keeps its time.
		lag := int64(t.devElapsed) - (t.emitted - delay)
		t.minLag = min(t.minLag, lag)
		if z := lag - t.minLag - t.skipped; z > resyncSamples {
			t.cursor += z
			t.skipped += z
			t.dropBehind()
			t.metrics.underrun.Add(float64(z) / sampleRate)
		}
		if e, ok := t.drift.measure(now, delay); ok {
			t.metrics.driftPPM.Set((t.drift.rate() - 1) * 1e6)
			t.metrics.driftErr.Set(e / sampleRate)
		}
	}
	avail := now + t.latency - t.cursor
	if avail < minChunk {
		return 0, time.Duration((minChunk-avail)*125/6) * time.Microsecond
	}
	ratio := t.drift.ratio
	if ratio == 0 {
		ratio = 1
	}
	var n int
	var consumed int64 // whole timeline samples the read position passed
	if ratio == 1 && t.frac == 0 {
		n = int(min(avail, int64(len(out))))
		t.fill(out[:n], t.cursor)
		consumed = int64(n)
	} else {
		step := 1 / ratio
		// Outputs at frac + j·step for j < n, all before cursor+avail.
		n = min(int(math.Ceil((float64(avail)-t.frac)/step)), len(out))
		if n <= 0 {
			return 0, time.Duration(minChunk*125/6) * time.Microsecond
		}
		last := t.frac + float64(n-1)*step
		from := t.cursor - (interpHalf - 1)
		need := int(last) + 2*interpHalf + 1
		if cap(t.scratch) < need {
			t.scratch = make([]float32, need)
		}
		in := t.scratch[:need]
		if t.fill(in, from) {
			interpolate(out[:n], in, t.frac, step)
		} else {
			clear(out[:n]) // silence in, silence out, without the arithmetic
		}
		pos := t.frac + float64(n)*step
		consumed = int64(pos)
		t.frac = pos - float64(consumed)
	}
	t.markPlayed(t.cursor, t.cursor+consumed)
	t.cursor += consumed
	t.emitted += int64(n)
	t.dropBehind()
	return n, 0
}

// fill copies the timeline's samples from tick from into out (zeros where
// nothing is queued) and reports whether any packet overlapped. Called with
// t.mu held.
func (t *timeline) fill(out []float32, from int64) bool {
	clear(out)
	end := from + int64(len(out))
	any := false
	for _, p := range t.packets {
		if p.start >= end {
			break
		}
		pend := p.start + int64(len(p.pcm))
		lo, hi := max(p.start, from), min(pend, end)
		if lo >= hi {
			continue
		}
		copy(out[lo-from:hi-from], p.pcm[lo-p.start:hi-p.start])
		any = true
	}
	return any
}

// markPlayed counts the packets overlapping ticks [from, to) as played and
// moves the end of real audio. Called with t.mu held.
func (t *timeline) markPlayed(from, to int64) {
	for _, p := range t.packets {
		if p.start >= to {
			break
		}
		if p.start+int64(len(p.pcm)) <= from {
			continue
		}
		t.lastTick = max(t.lastTick, min(p.start+int64(len(p.pcm)), to))
		if p.played {
			continue
		}
		p.played = true
		if p.concealed {
			t.metrics.packets.WithLabelValues("concealed").Inc()
			continue
		}
		if st := t.stats[p.stream]; st != nil {
			st.played++
		}
		t.metrics.packets.WithLabelValues("played").Inc()
	}
}

// dropBehind removes packets that end before the cursor, counting the
// never-played ones late.
func (t *timeline) dropBehind() {
	k := 0
	for _, p := range t.packets {
		// The interpolator reads interpHalf samples behind the cursor.
		if p.start+int64(len(p.pcm)) <= t.cursor-interpHalf {
			if !p.played && !p.concealed {
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
	seq     seqState

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
		// lastEnd starts at the start, so a stream whose first frame is
		// still in the queue does not look idle.
		s.tl.stats[ctl.StreamID] = &sinkStats{expected: ctl.Packets, lastEnd: tick(s.tl.now().UnixMicro())}
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
	timer := time.NewTimer(idleCheck)
	defer timer.Stop()
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
		case <-timer.C:
			if s.playing {
				s.concealDue()
				if s.tl.idle() {
					s.suspend()
				}
			}
			// While playing, wake often enough to conceal a missing
			// packet before the device needs it.
			if s.playing {
				timer.Reset(concealCheck)
			} else {
				timer.Reset(idleCheck)
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
		s.dec, s.decFor, s.seq = dec, ctl.StreamID, seqState{}
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

// seqState follows the packet sequence of the stream being decoded, for
// loss concealment.
type seqState struct {
	known bool
	// next is the next packet index the decoder expects; base is the tick
	// at which packet 0 plays.
	next uint32
	base int64
	// run counts consecutive concealed packets; end is the packet count
	// (from the start control or the last frame), 0 when unknown.
	run int
	end uint32
}

func (q *seqState) tickOf(seq uint32) int64 { return q.base + int64(seq)*packetSamples }

// decode turns a frame's packets into timeline entries, in sequence: a
// packet the decoder has already passed (its slot was concealed, or a
// duplicate) is dropped and counted late; a gap before a packet is filled
// with the decoder's loss concealment first, so its state stays continuous
// (RFC 6716 §4.4: the decoder is told of every lost packet, in order).
func (s *sink) decode(f wire.Frame) {
	if f.StreamID != s.decFor || s.dec == nil {
		return
	}
	base := tick(f.PlayAt + int64(f.DelayMS)*1000)
	q := &s.seq
	if !q.known {
		q.known, q.next, q.base = true, f.Seq, base-int64(f.Seq)*packetSamples
	}
	if f.Flags&wire.FlagLast != 0 {
		q.end = f.Seq + uint32(len(f.Packets))
	}
	for i, pkt := range f.Packets {
		seq := f.Seq + uint32(i)
		s.tl.mu.Lock()
		st := s.tl.stats[f.StreamID]
		if st != nil {
			st.maxSeq = max(st.maxSeq, seq+1)
		}
		if seq < q.next {
			if st != nil {
				st.late++
			}
			s.tl.mu.Unlock()
			s.h.metrics.packets.WithLabelValues("late").Inc()
			continue
		}
		s.tl.mu.Unlock()
		if seq > q.next {
			s.conceal(seq)
		}
		n, err := s.dec.DecodeFloat32(pkt, s.pcmBuf)
		q.next = seq + 1
		if err != nil {
			s.tl.mu.Lock()
			if st != nil {
				st.bad++
			}
			s.tl.mu.Unlock()
			s.h.metrics.packets.WithLabelValues("undecodable").Inc()
			continue
		}
		q.run = 0
		pcm := make([]float32, n)
		for j, v := range s.pcmBuf[:n] {
			pcm[j] = v * s.gain
		}
		s.tl.insert(f.StreamID, base+int64(i)*packetSamples, pcm, false)
	}
}

// conceal fills the packets from the expected one up to (not including)
// upTo with the decoder's packet loss concealment, at most maxConceal in a
// row (libopus fades its concealment to silence over about that much
// anyway); later ones stay silent. Concealment whose slot has passed is
// still decoded, to keep the decoder's state in step, but not played.
func (s *sink) conceal(upTo uint32) {
	q := &s.seq
	for ; q.next < upTo; q.next++ {
		if q.run >= maxConceal {
			q.next = upTo
			return
		}
		pcm := make([]float32, packetSamples)
		if err := s.dec.DecodePLCFloat32(pcm); err != nil {
			s.log.Debug("opus concealment", "err", err)
			q.next = upTo
			return
		}
		q.run++
		for j := range pcm {
			pcm[j] *= s.gain
		}
		s.tl.insert(s.decFor, q.tickOf(q.next), pcm, true)
	}
}

// concealDue conceals the expected packet when it has not come by the time
// the device is about to need it (concealGuard before its hand-over): a
// frame lost on the way, or late. Nothing is concealed past the stream's
// end, after its stop, or before its first frame.
func (s *sink) concealDue() {
	q := &s.seq
	if !q.known || s.dec == nil {
		return
	}
	s.tl.mu.Lock()
	due := s.tl.due() + tick(concealGuard.Microseconds())
	st := s.tl.stats[s.decFor]
	stopped := st == nil || st.stopped
	end := q.end
	if st != nil && st.expected > 0 && (end == 0 || st.expected < end) {
		end = st.expected
	}
	s.tl.mu.Unlock()
	if stopped {
		return
	}
	upTo := q.next
	for q.tickOf(upTo) < due && (end == 0 || upTo < end) && int(upTo-q.next) < maxConceal {
		upTo++
	}
	if upTo > q.next {
		s.conceal(upTo)
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
