package speaker

import (
	"time"

	"github.com/loalang/loalang/device/wire"
	"github.com/pion/opus"
)

// packetNS is the duration of one protocol v1 packet.
const packetNS = int64(wire.PacketMS) * int64(time.Millisecond)

// maxSlotsPerTick bounds the work of one play-out tick, so a stream whose
// play-out time lies far in the past cannot stall the speaker.
const maxSlotsPerTick = 500

// concealPackets is how many consecutive lost packets the concealment fades
// over before it falls silent.
const concealPackets = 3

// finalGrace is how long after its last slot a stream of known length stays
// open to count stragglers as late.
const finalGrace = 500 * time.Millisecond

// packet is one received 20 ms Opus packet waiting for its play-out time.
type packet struct {
	data   []byte
	arrive int64 // speaker clock, Unix ns
}

// stream is the play-out state of one stream on one speaker. The speaker's
// run loop owns it; Stats and Played read it under Speaker.mu.
type stream struct {
	id       uint32
	started  bool // a start control was seen
	ctrl     wire.StreamControl
	haveBase bool
	baseC    int64 // controller Unix ns at which seq 0 plays, delay included

	firstSeq int64
	nextSeq  int64 // next slot to play
	lastSeq  int64 // -1 while unknown
	// lastFromStop marks lastSeq as a guess made from a "done" stop before
	// all frames arrived; later frames may extend it.
	lastFromStop bool
	maxSeen      int64

	pending map[int64]packet
	missing map[int64]struct{}

	played, late, malformed, dups uint32

	lastActivity time.Time // host time of the last frame or control
	lastReport   time.Time

	dec     *opus.Decoder
	pcm     []float32 // decode scratch
	prev    []float32 // last decoded packet, before volume, for concealment
	lossRun int

	out      []float32 // what Played returns, capped
	outCap   int
	outTotal int64 // samples produced, including those beyond outCap

	haveFirst   bool
	firstHostNS int64 // host time the first sample played (true clock)
	firstPlayed int64 // seq of the first slot

	rec *recorder
	// marks are the host play times of every MarkEvery-th slot, kept only
	// while recording (Sidecar.Marks).
	marks []SlotMark

	final     bool
	endReason string
	endSeq    int64
	report    wire.Report // the final report once final
}

func newStream(id uint32, now time.Time, outCap int) *stream {
	return &stream{
		id:           id,
		lastSeq:      -1,
		maxSeen:      -1,
		firstSeq:     -1,
		nextSeq:      -1,
		pending:      map[int64]packet{},
		missing:      map[int64]struct{}{},
		lastActivity: now,
		lastReport:   now,
		outCap:       outCap,
	}
}

// onStart merges a start control into the stream, which frames may have
// created already (QoS 0 audio and QoS 1 control are not ordered relative to
// each other, [MQTT-4.6.0-6] orders only within one topic and QoS).
func (st *stream) onStart(c wire.StreamControl, now time.Time) {
	st.lastActivity = now
	if st.started {
		return
	}
	st.started = true
	st.ctrl = c
	if !st.haveBase && c.StartAt > 0 {
		st.baseC = c.StartAt*1000 + int64(c.PlayoutDelayMS)*int64(time.Millisecond)
		st.haveBase = true
	}
	if c.Packets > 0 && (st.lastSeq < 0 || st.lastFromStop) {
		st.lastSeq = int64(c.Packets) - 1
		st.lastFromStop = false
	}
	// Nothing has played yet: the stream starts at packet 0.
	if st.nextSeq == st.firstSeq {
		st.firstSeq, st.nextSeq = 0, 0
	}
}

// onFrame files the packets of a frame that arrived at speaker time arrive.
func (st *stream) onFrame(f *wire.Frame, arrive int64, now time.Time) {
	st.lastActivity = now
	seq0 := int64(f.Seq)
	end := seq0 + int64(len(f.Packets)) - 1
	st.baseC = f.PlayAt*1000 + int64(f.DelayMS)*int64(time.Millisecond) - seq0*packetNS
	st.haveBase = true
	if st.firstSeq < 0 {
		st.firstSeq, st.nextSeq = seq0, seq0
	}
	if f.Flags&wire.FlagLast != 0 && (st.lastSeq < 0 || st.lastFromStop) {
		st.lastSeq, st.lastFromStop = end, false
	}
	if st.lastFromStop && end > st.lastSeq {
		st.lastSeq = end
	}
	st.maxSeen = max(st.maxSeen, end)
	for i, p := range f.Packets {
		seq := seq0 + int64(i)
		switch {
		case seq < st.firstSeq, st.lastSeq >= 0 && seq > st.lastSeq:
			continue
		case seq < st.nextSeq:
			// Its slot has been played already: a late packet if it was
			// missing then, otherwise a duplicate (second zone, redelivery).
			if _, miss := st.missing[seq]; miss {
				delete(st.missing, seq)
				st.late++
			} else {
				st.dups++
			}
			continue
		}
		if _, dup := st.pending[seq]; dup {
			st.dups++
			continue
		}
		st.pending[seq] = packet{data: p, arrive: arrive}
	}
}

// playCtx is what play-out needs from the speaker.
type playCtx struct {
	nowLocal int64
	toLocal  func(ctrl int64) int64
	hostOf   func(local int64) int64
	gain     float32
	decode   bool
	record   func(st *stream) *recorder
}

// due returns the speaker-clock play time of slot seq.
func (st *stream) due(seq int64, pc *playCtx) int64 {
	return pc.toLocal(st.baseC + seq*packetNS)
}

// playDue plays every slot whose time has come. A slot whose packet arrived
// in time is decoded and played; one that arrived after its play time is
// late; one that never arrived is lost. Both are concealed. It reports true
// once the last slot of a stream of known length has played.
func (st *stream) playDue(pc *playCtx) bool {
	for n := 0; n < maxSlotsPerTick; n++ {
		if st.lastSeq >= 0 && st.nextSeq > st.lastSeq {
			// Wait a little past the end so that packets arriving just after
			// their slot count as late rather than lost.
			return st.haveBase && pc.nowLocal >= st.due(st.lastSeq+1, pc)+int64(finalGrace)
		}
		if !st.haveBase || st.firstSeq < 0 {
			return false
		}
		seq := st.nextSeq
		at := st.due(seq, pc)
		if at > pc.nowLocal {
			return false
		}
		if !st.haveFirst {
			st.haveFirst = true
			st.firstPlayed = seq
			st.firstHostNS = pc.hostOf(at)
		}
		if pc.record != nil && (seq-st.firstPlayed)%MarkEvery == 0 {
			st.marks = append(st.marks, SlotMark{Seq: uint32(seq), HostNS: pc.hostOf(at)})
		}
		p, ok := st.pending[seq]
		delete(st.pending, seq)
		switch {
		case ok && p.arrive <= at:
			if st.playPacket(p.data, pc) {
				st.played++
			} else {
				st.malformed++
				st.missing[seq] = struct{}{}
			}
		case ok:
			st.late++
			st.conceal(pc)
		default:
			st.missing[seq] = struct{}{}
			st.conceal(pc)
		}
		st.nextSeq++
	}
	return false
}

// playPacket decodes one packet and emits it; it reports false if the packet
// did not decode, in which case it has been concealed.
func (st *stream) playPacket(data []byte, pc *playCtx) bool {
	if !pc.decode {
		st.lossRun = 0
		st.emit(nil, pc)
		return true
	}
	st.ensureDecoder()
	n, err := st.dec.DecodeToFloat32(data, st.pcm)
	if err != nil || n <= 0 {
		st.conceal(pc)
		return false
	}
	// A protocol v1 slot is 20 ms; pad or trim anything else so that slots
	// stay aligned with the play-out clock.
	frame := st.pcm[:packetSamples]
	if n < packetSamples {
		clear(frame[n:])
	}
	if st.prev == nil {
		st.prev = make([]float32, packetSamples)
	}
	copy(st.prev, frame)
	st.lossRun = 0
	st.emit(frame, pc)
	return true
}

// ensureDecoder creates the decoder on the first slot of a stream, so that
// streams a speaker never plays cost no decoder state.
func (st *stream) ensureDecoder() {
	if st.dec != nil {
		return
	}
	// pion/opus decodes every mode (SILK, Hybrid, CELT) straight to the
	// requested 48 kHz mono; SILK's internal 8/12/16 kHz is upsampled by the
	// RFC 6716 reference resampler inside the decoder.
	d := opus.NewDecoder()
	st.dec = &d
	st.pcm = make([]float32, 120*SampleRate/1000) // longest Opus packet, 120 ms
}

// conceal emits a replacement for a missing packet: the previous packet
// repeated with a linear fade that reaches silence after concealPackets
// consecutive losses (a crude form of the packet-loss concealment that RFC
// 6716 §4.4 leaves to the decoder).
func (st *stream) conceal(pc *playCtx) {
	st.lossRun++
	if !pc.decode {
		st.emit(nil, pc)
		return
	}
	st.ensureDecoder()
	buf := st.pcm[:packetSamples]
	if st.prev == nil {
		clear(buf)
		st.emit(buf, pc)
		return
	}
	g0 := max(0, 1-float32(st.lossRun-1)/concealPackets)
	g1 := max(0, 1-float32(st.lossRun)/concealPackets)
	for i := range buf {
		buf[i] = st.prev[i] * (g0 + (g1-g0)*float32(i)/packetSamples)
	}
	st.emit(buf, pc)
}

// emit scales one slot by the volume and hands it to Played and the
// recorder. A nil frame (decoding disabled) only advances the counters.
func (st *stream) emit(frame []float32, pc *playCtx) {
	st.outTotal += packetSamples
	if frame == nil {
		return
	}
	if pc.gain != 1 {
		for i := range frame {
			frame[i] *= pc.gain
		}
	}
	if room := st.outCap - len(st.out); room > 0 {
		st.out = append(st.out, frame[:min(room, len(frame))]...)
	}
	if st.rec == nil && pc.record != nil {
		st.rec = pc.record(st)
	}
	if st.rec != nil {
		st.rec.write(frame)
	}
}

// counts returns the report counters. Expected counts slots from the first
// to the last one played so far (or to endSeq once final).
func (st *stream) counts() wire.Report {
	r := wire.Report{StreamID: st.id, Played: st.played, Late: st.late, Malformed: st.malformed}
	if st.final {
		return st.report
	}
	if st.firstSeq >= 0 && st.nextSeq > st.firstSeq {
		r.Expected = uint32(st.nextSeq - st.firstSeq)
	}
	r.Lost = uint32(len(st.missing))
	return r
}

// finish ends the stream at endSeq: slots after it that were played (as
// concealment while waiting) are trimmed, slots up to it that never played
// are lost.
func (st *stream) finish(endSeq int64, reason string) {
	if st.final {
		return
	}
	if st.firstSeq < 0 {
		st.firstSeq, st.nextSeq = 0, 0
	}
	endSeq = max(endSeq, st.firstSeq-1)
	for seq := range st.missing {
		if seq > endSeq {
			delete(st.missing, seq)
		}
	}
	lost := uint32(len(st.missing))
	if endSeq >= st.nextSeq {
		lost += uint32(endSeq - st.nextSeq + 1)
	}
	keep := max(0, min(st.nextSeq, endSeq+1)-max(st.firstPlayed, st.firstSeq)) * packetSamples
	if !st.haveFirst {
		keep = 0
	}
	if int64(len(st.out)) > keep {
		st.out = st.out[:keep]
	}
	st.outTotal = min(st.outTotal, keep)
	st.final = true
	st.endReason = reason
	st.endSeq = endSeq
	st.report = wire.Report{
		StreamID:  st.id,
		Expected:  uint32(endSeq - st.firstSeq + 1),
		Played:    st.played,
		Late:      st.late,
		Lost:      lost,
		Malformed: st.malformed,
		Final:     true,
	}
	st.pending = nil
	st.dec = nil
	st.pcm = nil
	st.prev = nil
}
