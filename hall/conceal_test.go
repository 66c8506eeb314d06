package hall

import (
	"testing"
	"time"

	"github.com/loalang/loalang/device/wire"
	"gopkg.in/hraban/opus.v2"
)

// TestConcealAtPlayTime: the stream stalls (frame 4 and everything after
// it never arrives) while the card keeps playing on a simulated clock. The
// sink conceals the missing packets with libopus's PLC shortly before the
// card needs them, at most maxConceal in a row, so the gap window carries
// the decaying tone instead of silence, and nothing is counted played.
func TestConcealAtPlayTime(t *testing.T) {
	h, err := New(Config{}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	clk := &simClock{t: time.Unix(1_800_000_000, 0)}
	tl := newSimTimeline(clk, 100*time.Millisecond)
	tl.metrics = h.metrics
	dec, err := opus.NewDecoder(sampleRate, 1)
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{h: h, log: h.log, tl: tl, dec: dec, decFor: 1, gain: 1, pcmBuf: make([]float32, packetSamples*6)}
	card := newSimCard(tl, 0)
	var out []float32
	card.onPlay = func(_ int64, chunk []float32) { out = append(out, chunk...) }

	const amp, delayMS, perFrame, sent = 0.5, 300, 3, 4 // frames 0-3 arrive
	pkts := encodeTone(t, amp, 1000)
	startAt := clk.t
	for k := 0; k < sent; k++ {
		seq := k * perFrame
		s.decode(wire.Frame{StreamID: 1, Seq: uint32(seq), DelayMS: delayMS,
			PlayAt: startAt.Add(time.Duration(seq) * wire.PacketMS * time.Millisecond).UnixMicro(), Packets: pkts[seq : seq+perFrame]})
	}
	// Run the card and the sink's concealment check every 10 ms for 1 s.
	for i := 0; i < 1000; i++ {
		clk.t = clk.t.Add(time.Millisecond)
		if i%10 == 0 {
			s.concealDue()
		}
		card.advance(clk.t)
	}
	// The tone's first sample in the card's output.
	onset := -1
	for i := range out {
		if out[i] > 0.1 || out[i] < -0.1 {
			onset = i
			break
		}
	}
	if onset < 0 {
		t.Fatal("no tone played")
	}
	ms := func(m int) int { return onset + m*sampleRate/1000 }
	heard := rms(out[ms(20):ms(220)])
	gap := rms(out[ms(sent*60):ms(sent*60+60)])
	after := rms(out[ms(sent*60+150):ms(sent*60+250)])
	st := tl.stats[1]
	conc := metricValue(t, h.metrics.packets.WithLabelValues("concealed"))
	t.Logf("tone rms %.3f; gap window (60 ms after the last packet) rms %.3f; 150-250 ms later %.4f; concealed %v packets, played %d", heard, gap, after, conc, st.played)
	if gap < 0.25*heard {
		t.Errorf("gap window rms %.3f: silence, not concealment (tone %.3f)", gap, heard)
	}
	if conc != maxConceal {
		t.Errorf("concealed %v packets, want %d (then silence)", conc, maxConceal)
	}
	if after > 0.01 {
		t.Errorf("concealment did not stop: rms %.4f 150 ms after the last packet", after)
	}
	if st.played != sent*perFrame {
		t.Errorf("played %d, want %d (concealment is not counted played)", st.played, sent*perFrame)
	}
}
