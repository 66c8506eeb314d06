package speaker

import (
	"math"
	"testing"
	"time"

	"github.com/loalang/loalang/device/wire"
)

func TestSimClockRoundTrip(t *testing.T) {
	c := simClock{boot: time.Now().UnixNano(), offset: int64(1500 * time.Millisecond), skew: 100e-6}
	h := time.Now().Add(time.Hour)
	l := c.local(h)
	want := h.UnixNano() + int64(1500*time.Millisecond) + int64(float64(h.UnixNano()-c.boot)*100e-6)
	if d := l - want; d < -1000 || d > 1000 {
		t.Errorf("local off by %d ns", d)
	}
	if d := c.hostOf(l) - h.UnixNano(); d < -1000 || d > 1000 {
		t.Errorf("hostOf(local(h)) off by %d ns", d)
	}
}

// TestClockFilter feeds exchanges with a drifting true offset where every
// other exchange met a queue on one leg (high delay, biased offset). The
// filter must ignore the queued ones and follow the drift.
func TestClockFilter(t *testing.T) {
	var f clockFilter
	const (
		theta0 = int64(800 * time.Millisecond)
		skew   = -100e-6
	)
	truth := func(local int64) int64 { return theta0 + int64(skew*float64(local)) }
	step := int64(5 * time.Second)
	for i := int64(0); i < 8; i++ {
		local := i * step
		s := clockSample{local: local, offset: truth(local) + (i%3-1)*20_000, delay: 300_000}
		if i%2 == 1 {
			// A 40 ms queue on the way back: delay up 40 ms, offset off by 20 ms.
			s.delay += 40_000_000
			s.offset -= 20_000_000
		}
		f.add(s)
	}
	if math.Abs(f.skew-skew) > 5e-6 {
		t.Errorf("skew %.1f ppm, want %.1f", f.skew*1e6, skew*1e6)
	}
	now := 8 * step
	off, errB, ok := f.offsetAt(now)
	if !ok {
		t.Fatal("no estimate")
	}
	// The accepted samples carry ±20 µs of noise; projected 10 s ahead
	// with a slope good to a few ppm that stays well under 100 µs.
	if d := time.Duration(off - truth(now)); d.Abs() > 100*time.Microsecond {
		t.Errorf("offset off by %v (error bound %v)", d, time.Duration(errB))
	}
	if errB < 150_000 {
		t.Errorf("error bound %v below half the round trip", time.Duration(errB))
	}
	ctrl := int64(100 * time.Second)
	if got := f.toLocal(ctrl, now); time.Duration(got-(ctrl-truth(got))).Abs() > time.Millisecond {
		t.Errorf("toLocal(%d) = %d, off by %v", ctrl, got, time.Duration(got-(ctrl-truth(got))))
	}
}

// fakePlay is a playCtx on an identity clock (controller = speaker = host).
func fakePlay(now int64) *playCtx {
	return &playCtx{
		nowLocal: now,
		toLocal:  func(c int64) int64 { return c },
		hostOf:   func(l int64) int64 { return l },
		gain:     1,
		decode:   true,
	}
}

func TestStreamAccounting(t *testing.T) {
	pkts := encodeTone(t, 0.5, 200) // 10 packets
	base := time.Now()
	start := base.Add(time.Second)
	const delay = 200 * time.Millisecond
	slot := func(seq int) int64 { return start.Add(delay).UnixNano() + int64(seq)*packetNS }
	frame := func(seq int) *wire.Frame {
		return &wire.Frame{StreamID: 9, Seq: uint32(seq), PlayAt: start.Add(time.Duration(seq) * 20 * time.Millisecond).UnixMicro(),
			DelayMS: uint16(delay / time.Millisecond), Packets: pkts[seq : seq+3]}
	}
	st := newStream(9, base, 1<<20)
	st.onStart(wire.StreamControl{Op: wire.StreamStart, StreamID: 9, Codec: wire.CodecOpus, Priority: wire.PriorityNormal,
		StartAt: start.UnixMicro(), PlayoutDelayMS: int(delay / time.Millisecond), Packets: 10}, base)

	st.onFrame(frame(0), slot(0)-int64(time.Millisecond), base) // in time
	// 3..5 never arrive.
	last := frame(9 - 2)
	last.Packets = pkts[7:10]
	last.Flags = wire.FlagLast
	st.onFrame(last, slot(7)-int64(time.Millisecond), base)
	st.onFrame(last, slot(7), base) // the same frame again from a second zone
	if st.playDue(fakePlay(slot(5))) {
		t.Fatal("finished early")
	}
	st.onFrame(frame(6), slot(6)+1, base) // 6..8 after slot 6: 6 is late, 7 and 8 dups of "last"
	if st.playDue(fakePlay(slot(9))) {
		t.Fatal("finished before the grace period")
	}
	if !st.playDue(fakePlay(slot(10) + int64(finalGrace))) {
		t.Fatal("not finished after the last slot and the grace period")
	}
	st.finish(st.lastSeq, "done")
	r := st.report
	want := wire.Report{StreamID: 9, Expected: 10, Played: 6, Late: 1, Lost: 3, Final: true}
	if r != want {
		t.Errorf("report %+v, want %+v", r, want)
	}
	if len(st.out) != 10*packetSamples {
		t.Fatalf("%d samples out, want %d", len(st.out), 10*packetSamples)
	}
	// Concealment: slot 3 repeats slot 2 fading from 1 to 2/3, slot 5 ends
	// in silence, and slot 6 (late, a fourth loss in a row) stays silent.
	rms := func(seq int) float64 {
		var e float64
		for _, v := range st.out[seq*packetSamples : (seq+1)*packetSamples] {
			e += float64(v) * float64(v)
		}
		return math.Sqrt(e / packetSamples)
	}
	if r2, r3, r5 := rms(2), rms(3), rms(5); r3 < 0.6*r2 || r3 > r2 || r5 > 0.25*r2 {
		t.Errorf("concealment RMS: slot 2 %.3f, 3 %.3f, 5 %.3f", r2, r3, r5)
	}
	if tail := st.out[6*packetSamples-10 : 6*packetSamples]; math.Abs(float64(tail[9])) > 0.01 {
		t.Errorf("concealment does not fade to silence: %v", tail)
	}
}

func TestStreamTimeoutTrims(t *testing.T) {
	pkts := encodeTone(t, 0.5, 120)
	now := time.Now()
	st := newStream(5, now, 1<<20)
	at := now.UnixMicro()*1000 - int64(time.Millisecond) // arrived just before slot 0
	st.onFrame(&wire.Frame{StreamID: 5, Seq: 0, PlayAt: now.UnixMicro(), Packets: pkts[:3]}, at, now)
	st.onFrame(&wire.Frame{StreamID: 5, Seq: 3, PlayAt: now.Add(60 * time.Millisecond).UnixMicro(), Packets: pkts[3:6]}, at, now)
	// A live stream of unknown length whose frames stop: the speaker conceals
	// on for a while, then the timeout ends it at the last packet seen.
	st.playDue(fakePlay(now.UnixMicro()*1000 + 20*packetNS))
	if got := st.counts(); got.Expected != 21 || got.Lost != 15 {
		t.Errorf("while concealing: %+v", got)
	}
	st.finish(st.maxSeen, "timeout")
	if r := st.report; r.Expected != 6 || r.Played != 6 || r.Lost != 0 {
		t.Errorf("final %+v, want 6 expected, 6 played", r)
	}
	if len(st.out) != 6*packetSamples || st.outTotal != 6*packetSamples {
		t.Errorf("%d samples kept (%d total), want %d", len(st.out), st.outTotal, 6*packetSamples)
	}
}

func TestEmergencyForcesFullVolume(t *testing.T) {
	s, err := New(Config{ID: "a", Site: "s", Broker: "tcp://127.0.0.1:1", Volume: 40})
	if err != nil {
		t.Fatal(err)
	}
	normal := &stream{ctrl: wire.StreamControl{Priority: wire.PriorityNormal, Volume: 50}}
	emerg := &stream{ctrl: wire.StreamControl{Priority: wire.PriorityEmergency, Volume: 100}}
	if g := s.gain(normal); math.Abs(float64(g)-0.2) > 1e-6 {
		t.Errorf("normal gain %v, want 0.4*0.5", g)
	}
	if g := s.gain(emerg); g != 1 {
		t.Errorf("emergency gain %v, want 1", g)
	}
}
