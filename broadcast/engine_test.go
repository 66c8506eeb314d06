package broadcast_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loalang/loalang/broadcast"
	"github.com/loalang/loalang/device/wire"
)

func withClock(c broadcast.Clock) rigOpt {
	return func(_ *rig, _ *broadcast.Config, d *broadcast.Deps) { d.Clock = c }
}

func withPolicy(p string) rigOpt {
	return func(_ *rig, c *broadcast.Config, _ *broadcast.Deps) { c.PreemptPolicy = p }
}

func withHall(zones ...string) rigOpt {
	return func(r *rig, c *broadcast.Config, d *broadcast.Deps) {
		c.WiredZones = zones
		d.Output = r.out
	}
}

// indexOf finds ev in evs.
func indexOf(evs []event, ev event) int {
	return slices.IndexFunc(evs, func(x event) bool {
		return x.at.Equal(ev.at) && x.kind == ev.kind && x.ctl.StreamID == ev.ctl.StreamID && x.frame.StreamID == ev.frame.StreamID && x.frame.Seq == ev.frame.Seq
	})
}

// streamEvents returns zone z's events of stream id.
func streamEvents(evs []event, id uint32) []event {
	var out []event
	for _, ev := range evs {
		if (ev.kind == "frame" && ev.frame.StreamID == id) || (ev.kind != "frame" && ev.ctl.StreamID == id) {
			out = append(out, ev)
		}
	}
	return out
}

// checkStream asserts that evs (one zone, one stream) are a start control,
// frames carrying pkts[from:] in order at 20 ms per packet, and a stop with
// reason. It returns the start control.
func checkStream(t *testing.T, evs []event, pkts [][]byte, from, ppf int, reason string) wire.StreamControl {
	t.Helper()
	if len(evs) < 3 || evs[0].kind != wire.StreamStart || evs[len(evs)-1].kind != wire.StreamStop {
		t.Fatalf("stream events %v: want start, frames, stop", evs)
	}
	start, stop := evs[0].ctl, evs[len(evs)-1].ctl
	if stop.Reason != reason {
		t.Errorf("stop reason %q, want %q", stop.Reason, reason)
	}
	if start.Codec != wire.CodecOpus || int(start.Packets) != len(pkts)-from {
		t.Errorf("start %+v: want codec opus, %d packets", start, len(pkts)-from)
	}
	want := from
	frames := evs[1 : len(evs)-1]
	for i, ev := range frames {
		if ev.kind != "frame" {
			t.Fatalf("event %d is %v, want a frame", i+1, ev)
		}
		f := ev.frame
		seq := want - from
		if int(f.Seq) != seq {
			t.Fatalf("frame %d seq %d, want %d", i, f.Seq, seq)
		}
		if f.PlayAt != start.StartAt+int64(seq)*20000 {
			t.Fatalf("frame %d play-at %d, want start_at+%d·20ms = %d", i, f.PlayAt, seq, start.StartAt+int64(seq)*20000)
		}
		if int(f.DelayMS) != start.PlayoutDelayMS {
			t.Fatalf("frame %d delay %d ms, start says %d", i, f.DelayMS, start.PlayoutDelayMS)
		}
		if len(f.Packets) != min(ppf, len(pkts)-want) {
			t.Fatalf("frame %d has %d packets, want %d", i, len(f.Packets), min(ppf, len(pkts)-want))
		}
		for _, p := range f.Packets {
			if packetIndex(p) != want || string(p) != string(pkts[want]) {
				t.Fatalf("frame %d carries packet %d, want %d", i, packetIndex(p), want)
			}
			want++
		}
		last := i == len(frames)-1
		if (f.Flags&wire.FlagLast != 0) != last {
			t.Fatalf("frame %d FlagLast=%v, want %v", i, !last, last)
		}
	}
	if want != len(pkts) {
		t.Fatalf("zone got packets up to %d, want %d", want, len(pkts))
	}
	return start
}

// TestBroadcastTwoZones sends 1 s of audio to two zones on the real clock:
// each zone gets start, every frame once and in order with play-at times
// 20 ms per packet apart, published ahead of their play-out, then stop.
func TestBroadcastTwoZones(t *testing.T) {
	r := newRig(t, withHall("b"))
	pkts := packets(50)
	b, err := r.e.Start(context.Background(), broadcast.Request{Packets: pkts, Zones: []string{"a", "b"}, Volume: 70, Actor: "head"})
	if err != nil {
		t.Fatal(err)
	}
	if b.State != broadcast.StatePlaying || len(b.StreamIDs) != 1 || b.StreamIDs[0] == 0 || !strings.HasPrefix(b.ID, "b-") {
		t.Fatalf("started %+v", b)
	}
	sid := b.StreamIDs[0]
	b = r.waitState(t, b.ID, 10*time.Second, broadcast.StateDone)
	r.marker(t, "a")
	r.marker(t, "b")
	r.l.check(t)
	for _, z := range []string{"a", "b"} {
		evs := r.l.zone(z)
		evs = evs[:len(evs)-1] // marker
		if len(streamEvents(evs, sid)) != len(evs) {
			t.Fatalf("zone %s: foreign events %v", z, evs)
		}
		start := checkStream(t, evs, pkts, 0, 3, broadcast.ReasonDone)
		if start.Volume != 70 || start.Priority != wire.PriorityNormal || start.PlayoutDelayMS != 500 {
			t.Errorf("zone %s start %+v", z, start)
		}
		if n := len(evs) - 2; n != 17 {
			t.Errorf("zone %s: %d frames, want 17 (one publish per frame)", z, n)
		}
		// Paced: every frame arrives before it must play, and none more than
		// a couple of frames early.
		for _, ev := range evs[1 : len(evs)-1] {
			at := ev.at.UnixMicro()
			if at > ev.frame.PlayAt+int64(ev.frame.DelayMS)*1000 {
				t.Errorf("zone %s seq %d arrived %d µs after its play-out time", z, ev.frame.Seq, at-ev.frame.PlayAt-int64(ev.frame.DelayMS)*1000)
			}
			if at < ev.frame.PlayAt-100_000 {
				t.Errorf("zone %s seq %d arrived %d µs early: not paced", z, ev.frame.Seq, ev.frame.PlayAt-at)
			}
		}
		// The stop waits until the last frame has played out.
		stopAt := evs[len(evs)-1].at.UnixMicro()
		if end := start.StartAt + 50*20000 + 500_000; stopAt < end-30_000 {
			t.Errorf("zone %s stop %d µs before play-out ended", z, end-stopAt)
		}
	}
	if b.ZoneState[0].State != broadcast.ZoneDone || b.ZoneState[1].State != broadcast.ZoneDone {
		t.Errorf("zone states %+v", b.ZoneState)
	}
	// Three speakers expected, none reported: visible as zeros.
	if len(b.Devices) != 3 || b.Devices[0].ID != "sa1" || b.Devices[0].FramesPlayed != 0 {
		t.Errorf("devices %+v", b.Devices)
	}
	// Bandwidth accounting matches the PUBLISH packets exactly.
	st := r.e.Stats()
	for _, z := range []string{"a", "b"} {
		var want uint64
		for _, ev := range r.l.zone(z) {
			if ev.kind == "frame" {
				topic := topics.ZoneAudio(z)
				rl := 2 + len(topic) + ev.packet
				want += uint64(1 + 2 + rl) // remaining length 128–16383: 2 bytes
			}
		}
		if zs := st.Zones[z]; zs.AudioMessages != 17 || zs.AudioBytes != want || zs.ControlMessages != 2 {
			t.Errorf("zone %s stats %+v, want 17 messages, %d bytes, 2 controls", z, zs, want)
		}
	}
	// The hall output played the wired zone b.
	r.out.mu.Lock()
	if len(r.out.starts) != 1 || !slices.Equal(r.out.starts[0], []string{"b"}) || len(r.out.frames) != 17 || !slices.Equal(r.out.stops, []uint32{sid}) {
		t.Errorf("hall output: starts %v, %d frames, stops %v", r.out.starts, len(r.out.frames), r.out.stops)
	}
	r.out.mu.Unlock()
	if got := r.rec.states(b.ID); !slices.Equal(got, []broadcast.State{broadcast.StatePlaying, broadcast.StateDone}) {
		t.Errorf("recorded states %v", got)
	}
}

// preemptRun starts a normal broadcast in a and b, waits until zone b has
// frames, then an emergency in b.
func preemptRun(t *testing.T, r *rig) (normal, emergency broadcast.Broadcast, pkts, epkts [][]byte) {
	t.Helper()
	ctx := context.Background()
	pkts, epkts = packets(150), packets(50)
	var err error
	normal, err = r.e.Start(ctx, broadcast.Request{Packets: pkts, Zones: []string{"a", "b"}, Volume: 60})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "zone b frames", func() bool {
		return r.l.count("b", func(ev event) bool { return ev.kind == "frame" }) >= 10
	})
	emergency, err = r.e.Start(ctx, broadcast.Request{Packets: epkts, Zones: []string{"b"}, Priority: wire.PriorityEmergency, Volume: 20})
	if err != nil {
		t.Fatal(err)
	}
	if emergency.State != broadcast.StatePlaying || emergency.Volume != 100 {
		t.Fatalf("emergency %+v", emergency)
	}
	return normal, emergency, pkts, epkts
}

func TestPreemptResume(t *testing.T) {
	r := newRig(t, withClock(newFastClock(3)))
	normal, emer, pkts, epkts := preemptRun(t, r)
	nid, eid := normal.StreamIDs[0], emer.StreamIDs[0]
	got, err := r.e.Get(normal.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != broadcast.StatePlaying || got.ZoneState[1].State != broadcast.ZoneSuspended {
		t.Fatalf("normal after pre-emption: %+v", got)
	}
	// A speaker of zone b comes back online: the emergency start is re-sent.
	waitFor(t, 5*time.Second, "emergency start", func() bool {
		return r.l.count("b", func(ev event) bool { return ev.kind == wire.StreamStart && ev.ctl.StreamID == eid }) == 1
	})
	r.e.DeviceOnline("sb1")
	r.e.DeviceOnline("sa1") // not in the emergency's zone: nothing
	done := r.waitState(t, normal.ID, 20*time.Second, broadcast.StateDone, broadcast.StateInterrupted)
	if done.State != broadcast.StateDone || len(done.StreamIDs) != 2 {
		t.Fatalf("normal ended %+v", done)
	}
	r.waitState(t, emer.ID, 5*time.Second, broadcast.StateDone)
	rid := done.StreamIDs[1]
	r.marker(t, "a")
	r.marker(t, "b")
	r.l.check(t)

	// Zone a never noticed.
	checkStream(t, streamEvents(r.l.zone("a"), nid), pkts, 0, 3, broadcast.ReasonDone)
	if n := len(r.l.zone("a")); n != len(streamEvents(r.l.zone("a"), nid))+1 {
		t.Errorf("zone a got other streams")
	}
	// Zone b: normal, stop(preempted), emergency at volume 100, then the
	// normal broadcast resumes on a new stream where it was cut.
	evs := r.l.zone("b")
	cut := slices.IndexFunc(evs, func(ev event) bool { return ev.kind == wire.StreamStop && ev.ctl.StreamID == nid })
	if cut < 0 || evs[cut].ctl.Reason != broadcast.ReasonPreempted {
		t.Fatalf("zone b: no stop(preempted) for the normal stream: %v", evs)
	}
	if evs[cut+1].kind != wire.StreamStart || evs[cut+1].ctl.StreamID != eid || evs[cut+1].ctl.Volume != 100 || evs[cut+1].ctl.Priority != wire.PriorityEmergency {
		t.Fatalf("zone b after the cut: %v %+v", evs[cut+1], evs[cut+1].ctl)
	}
	for _, ev := range evs[cut:] {
		if ev.kind == "frame" && ev.frame.StreamID == nid {
			t.Fatalf("zone b: frame of the pre-empted stream after its stop")
		}
	}
	eev := streamEvents(evs, eid)
	starts := 0
	for _, ev := range eev {
		if ev.kind == wire.StreamStart {
			starts++
		}
	}
	if starts != 2 {
		t.Errorf("emergency start sent %d times in zone b, want 2 (re-sent on DeviceOnline)", starts)
	}
	eev = slices.DeleteFunc(eev, func(ev event) bool { return ev.kind == wire.StreamStart && ev.at.After(eev[0].at) })
	checkStream(t, eev, epkts, 0, 3, broadcast.ReasonDone)
	eStop := slices.IndexFunc(evs, func(ev event) bool { return ev.kind == wire.StreamStop && ev.ctl.StreamID == eid })
	rev := streamEvents(evs, rid)
	if len(rev) == 0 || indexOf(evs, rev[0]) < eStop {
		t.Fatalf("resumed stream must start after the emergency ends")
	}
	// The resumed stream starts at the packet that was playing at the cut,
	// never after what zone b had received.
	first := packetIndex(rev[1].frame.Packets[0])
	var lastBefore int
	for _, ev := range evs[:cut] {
		if ev.kind == "frame" {
			lastBefore = packetIndex(ev.frame.Packets[len(ev.frame.Packets)-1])
		}
	}
	if first > lastBefore+1 {
		t.Errorf("resumed at packet %d but zone b had only received up to %d", first, lastBefore)
	}
	checkStream(t, rev, pkts, first, 3, broadcast.ReasonDone)
	if done.ZoneState[1].StreamID != rid || done.ZoneState[1].State != broadcast.ZoneDone {
		t.Errorf("zone b state %+v", done.ZoneState[1])
	}
}

func TestPreemptInterrupt(t *testing.T) {
	r := newRig(t, withClock(newFastClock(3)), withPolicy(broadcast.PolicyInterrupt))
	normal, emer, pkts, _ := preemptRun(t, r)
	nid := normal.StreamIDs[0]
	done := r.waitState(t, normal.ID, 20*time.Second, broadcast.StateDone, broadcast.StateInterrupted)
	r.waitState(t, emer.ID, 10*time.Second, broadcast.StateDone)
	r.marker(t, "a")
	r.marker(t, "b")
	if done.State != broadcast.StateInterrupted || done.ZoneState[0].State != broadcast.ZoneDone || done.ZoneState[1].State != broadcast.ZoneInterrupted {
		t.Fatalf("normal ended %+v", done)
	}
	checkStream(t, streamEvents(r.l.zone("a"), nid), pkts, 0, 3, broadcast.ReasonDone)
	for _, ev := range r.l.zone("b") {
		if ev.kind == wire.StreamStart && ev.ctl.StreamID != nid && ev.ctl.StreamID != emer.StreamIDs[0] {
			t.Fatalf("zone b: unexpected resume %+v", ev.ctl)
		}
	}
	if got := r.rec.states(normal.ID); got[len(got)-1] != broadcast.StateInterrupted {
		t.Errorf("recorded states %v", got)
	}
}

// TestEqualPriorityQueues: a second normal broadcast in a busy zone waits
// and starts after the first one's stop; a lower one waits behind both.
func TestEqualPriorityQueues(t *testing.T) {
	r := newRig(t, withClock(newFastClock(3)))
	ctx := context.Background()
	p1, p2, p3 := packets(40), packets(30), packets(200)
	b1, err := r.e.Start(ctx, broadcast.Request{Packets: p1, Zones: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	b2, err := r.e.Start(ctx, broadcast.Request{Packets: p2, Zones: []string{"a", "c"}})
	if err != nil {
		t.Fatal(err)
	}
	b3, err := r.e.Start(ctx, broadcast.Request{Packets: p3, Zones: []string{"c"}, Priority: wire.PriorityBackground})
	if err != nil {
		t.Fatal(err)
	}
	if b1.State != broadcast.StatePlaying || b2.State != broadcast.StateQueued || b3.State != broadcast.StatePlaying {
		t.Fatalf("states %s %s %s, want playing queued playing", b1.State, b2.State, b3.State)
	}
	if len(b2.StreamIDs) != 0 {
		t.Fatalf("queued broadcast has streams %v", b2.StreamIDs)
	}
	for _, id := range []string{b1.ID, b2.ID} {
		r.waitState(t, id, 20*time.Second, broadcast.StateDone)
	}
	g3 := r.waitState(t, b3.ID, 20*time.Second, broadcast.StateDone, broadcast.StateInterrupted)
	g2, _ := r.e.Get(b2.ID)
	r.marker(t, "a")
	r.marker(t, "c")
	evs := r.l.zone("a")
	s1 := streamEvents(evs, b1.StreamIDs[0])
	s2 := streamEvents(evs, g2.StreamIDs[0])
	checkStream(t, s1, p1, 0, 3, broadcast.ReasonDone)
	checkStream(t, s2, p2, 0, 3, broadcast.ReasonDone)
	if !s2[0].at.After(s1[len(s1)-1].at) && indexOf(evs, s2[0]) < indexOf(evs, s1[len(s1)-1]) {
		t.Fatalf("queued broadcast started before the first one stopped")
	}
	// b2 (normal) pre-empted the background b3 in zone c when it started,
	// and b3 resumed after it.
	if g3.State != broadcast.StateDone || len(g3.StreamIDs) != 2 {
		t.Fatalf("background %+v", g3)
	}
	cEvs := r.l.zone("c")
	checkStream(t, streamEvents(cEvs, g2.StreamIDs[0]), p2, 0, 3, broadcast.ReasonDone)
	resumed := streamEvents(cEvs, g3.StreamIDs[1])
	checkStream(t, resumed, p3, packetIndex(resumed[1].frame.Packets[0]), 3, broadcast.ReasonDone)
	if got := r.rec.states(b3.ID); !slices.Equal(got, []broadcast.State{broadcast.StatePlaying, broadcast.StatePreempted, broadcast.StatePlaying, broadcast.StateDone}) {
		t.Errorf("recorded states of the background broadcast %v", got)
	}
	if got := r.rec.states(b2.ID); !slices.Equal(got, []broadcast.State{broadcast.StateQueued, broadcast.StatePlaying, broadcast.StateDone}) {
		t.Errorf("recorded states of the queued broadcast %v", got)
	}
}

// TestStopAll: the kill switch stops playing, pre-empted, queued and live
// broadcasts; the last stop control reaches the subscriber within 1 s of the
// call, and no frame of a stopped stream follows its stop.
func TestStopAll(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	long := packets(3000) // 60 s
	b1, err := r.e.Start(ctx, broadcast.Request{Packets: long, Zones: []string{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	b2, err := r.e.Start(ctx, broadcast.Request{Packets: long, Zones: []string{"b"}, Priority: wire.PriorityPriority})
	if err != nil {
		t.Fatal(err)
	}
	b3, err := r.e.Start(ctx, broadcast.Request{Packets: long, Zones: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	live, err := r.e.Live(ctx, broadcast.Request{Zones: []string{"c"}, Actor: "head"})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	for i := range 6 {
		if err := live.WritePacket(packets(6)[i], t0.Add(time.Duration(i)*20*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "frames in a, b and c", func() bool {
		for _, z := range []string{"a", "b", "c"} {
			if r.l.count(z, func(ev event) bool { return ev.kind == "frame" }) < 2 {
				return false
			}
		}
		return true
	})
	call := time.Now()
	n, err := r.e.StopAll(ctx, "police")
	returned := time.Since(call)
	if err != nil || n != 4 {
		t.Fatalf("StopAll = %d, %v; want 4", n, err)
	}
	if returned > 900*time.Millisecond {
		t.Errorf("StopAll took %s", returned)
	}
	want := []string{"a", "b", "c"}
	var last time.Time
	waitFor(t, 2*time.Second, "stop_all in every zone", func() bool {
		for _, z := range want {
			i := slices.IndexFunc(r.l.zone(z), func(ev event) bool {
				return ev.kind == wire.StreamStop && ev.ctl.Reason == broadcast.ReasonStopAll
			})
			if i < 0 {
				return false
			}
			if at := r.l.zone(z)[i].at; at.After(last) {
				last = at
			}
		}
		return true
	})
	if d := last.Sub(call); d > time.Second {
		t.Errorf("last stop control arrived %s after the call", d)
	}
	t.Logf("StopAll returned in %s; last stop control received %s after the call", returned, last.Sub(call))
	for _, id := range []string{b1.ID, b2.ID, b3.ID, live.ID()} {
		b, _ := r.e.Get(id)
		if b.State != broadcast.StateStopped || !strings.Contains(b.Reason, "police") {
			t.Errorf("%s: %s %q", id, b.State, b.Reason)
		}
	}
	if err := live.WritePacket([]byte{1}, time.Time{}); !errors.Is(err, broadcast.ErrEnded) {
		t.Errorf("WritePacket after stop all: %v", err)
	}
	for _, z := range want {
		r.marker(t, z)
		evs := r.l.zone(z)
		stopped := map[uint32]bool{}
		for _, ev := range evs {
			switch {
			case ev.kind == wire.StreamStop:
				stopped[ev.ctl.StreamID] = true
			case ev.kind == "frame" && stopped[ev.frame.StreamID]:
				t.Errorf("zone %s: frame of stream %d after its stop", z, ev.frame.StreamID)
			}
		}
	}
	// The queued broadcast never started.
	if g, _ := r.e.Get(b3.ID); len(g.StreamIDs) != 0 {
		t.Errorf("queued broadcast got streams %v", g.StreamIDs)
	}
	if err := r.e.Stop(ctx, b1.ID, "head"); !errors.Is(err, broadcast.ErrNotActive) {
		t.Errorf("Stop after StopAll: %v", err)
	}
}

// TestLive sends live packets with capture times and checks frames, flags,
// the live delay and the clean end.
func TestLive(t *testing.T) {
	r := newRig(t)
	l, err := r.e.Live(context.Background(), broadcast.Request{Zones: []string{"a"}, Priority: wire.PriorityPriority, Actor: "head"})
	if err != nil {
		t.Fatal(err)
	}
	pk := packets(10)
	t0 := time.Now()
	for i, p := range pk {
		if err := l.WritePacket(p, t0.Add(time.Duration(i)*20*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b := r.waitState(t, l.ID(), 5*time.Second, broadcast.StateDone)
	if b.Source != broadcast.SourceLive || b.Origin != broadcast.OriginLive || b.Packets != 10 {
		t.Errorf("live %+v", b)
	}
	r.marker(t, "a")
	evs := streamEvents(r.l.zone("a"), b.StreamIDs[0])
	if len(evs) < 3 || evs[0].kind != wire.StreamStart || evs[len(evs)-1].ctl.Reason != broadcast.ReasonDone {
		t.Fatalf("live events %v", evs)
	}
	// The play-out delay starts at (3−1)·20 ms + 40 ms margin + 4 × the
	// 10 ms jitter prior, and adapts within [80 ms, LiveDelay] (jitter.go).
	if evs[0].ctl.StartAt != t0.UnixMicro() || evs[0].ctl.PlayoutDelayMS != 120 || evs[0].ctl.Packets != 0 {
		t.Errorf("live start %+v", evs[0].ctl)
	}
	next := 0
	for i, ev := range evs[1 : len(evs)-1] {
		f := ev.frame
		if f.Flags&wire.FlagLive == 0 || int(f.Seq) != next || f.PlayAt != t0.UnixMicro()+int64(next)*20000 || f.DelayMS < 80 || f.DelayMS > 250 {
			t.Fatalf("live frame %d: %+v", i, f)
		}
		for _, p := range f.Packets {
			if packetIndex(p) != next {
				t.Fatalf("live frame %d packet %d, want %d", i, packetIndex(p), next)
			}
			next++
		}
		if last := i == len(evs)-3; (f.Flags&wire.FlagLast != 0) != last {
			t.Fatalf("live frame %d FlagLast wrong", i)
		}
	}
	if next != 10 {
		t.Fatalf("live delivered %d packets, want 10", next)
	}
	if err := l.WritePacket(pk[0], time.Time{}); !errors.Is(err, broadcast.ErrEnded) {
		t.Errorf("write after close: %v", err)
	}
	// Live is never queued.
	b1, err := r.e.Start(context.Background(), broadcast.Request{Packets: packets(500), Zones: []string{"b"}, Priority: wire.PriorityPriority})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.e.Live(context.Background(), broadcast.Request{Zones: []string{"b"}}); !errors.Is(err, broadcast.ErrBusy) || !strings.Contains(err.Error(), `"b"`) {
		t.Errorf("live into a busy zone: %v", err)
	}
	if err := r.e.Stop(context.Background(), b1.ID, "head"); err != nil {
		t.Fatal(err)
	}
}

// TestReports: delivery reports land on the right broadcast and device.
func TestReports(t *testing.T) {
	r := newRig(t, withClock(newFastClock(4)))
	b, err := r.e.Start(context.Background(), broadcast.Request{Packets: packets(30), Zones: []string{"a"}, Actor: "head"})
	if err != nil {
		t.Fatal(err)
	}
	sid := b.StreamIDs[0]
	r.e.HandleReport("sa1", wire.Report{StreamID: sid, Expected: 12, Played: 10, Late: 1, Lost: 1, ClockErrorUS: 900})
	r.e.HandleReport("sa1", wire.Report{StreamID: sid, Expected: 30, Played: 27, Late: 2, Lost: 1, ClockErrorUS: 400})
	r.e.HandleReport("sa2", wire.Report{StreamID: sid + 1, Expected: 30, Played: 30}) // another stream
	r.e.HandleReport("sa2", wire.Report{StreamID: sid, Expected: 1, Played: 90})      // invalid
	r.waitState(t, b.ID, 10*time.Second, broadcast.StateDone)
	r.e.HandleReport("sa1", wire.Report{StreamID: sid, Expected: 30, Played: 28, Late: 1, Lost: 1, ClockErrorUS: 350, Final: true})
	g, err := r.e.Get(b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Devices) != 2 {
		t.Fatalf("devices %+v", g.Devices)
	}
	d1, d2 := g.Devices[0], g.Devices[1]
	if d1.ID != "sa1" || d1.FramesExpected != 30 || d1.FramesPlayed != 28 || d1.FramesLate != 1 || d1.FramesLost != 1 || d1.ClockErrorUS != 350 || d1.LastReport.IsZero() || !d1.OnlineAtStart {
		t.Errorf("sa1 %+v", d1)
	}
	if d2.ID != "sa2" || d2.FramesExpected != 0 || d2.FramesPlayed != 0 || !d2.LastReport.IsZero() {
		t.Errorf("sa2 (never reported) %+v", d2)
	}
	waitFor(t, 5*time.Second, "final delivery recorded", func() bool {
		rec, ok := r.rec.last(b.ID)
		return ok && rec.State == broadcast.StateDone && len(rec.Devices) == 2 && rec.Devices[0].FramesPlayed == 28
	})
	if got := r.e.List(); len(got) != 1 || got[0].ID != b.ID {
		t.Errorf("List %+v", got)
	}
}

func TestInvalidRequests(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	pk := packets(5)
	cases := []struct {
		name  string
		req   broadcast.Request
		err   error
		field string
	}{
		{"unknown zone", broadcast.Request{Packets: pk, Zones: []string{"a", "nowhere"}}, broadcast.ErrUnknownZone, `"nowhere"`},
		{"wildcard zone", broadcast.Request{Packets: pk, Zones: []string{"a/#"}}, broadcast.ErrUnknownZone, `"a/#"`},
		{"no zones", broadcast.Request{Packets: pk}, broadcast.ErrInvalid, "zones"},
		{"bad priority", broadcast.Request{Packets: pk, Zones: []string{"a"}, Priority: "urgent"}, broadcast.ErrInvalid, "priority"},
		{"volume high", broadcast.Request{Packets: pk, Zones: []string{"a"}, Volume: 101}, broadcast.ErrInvalid, "volume"},
		{"volume negative", broadcast.Request{Packets: pk, Zones: []string{"a"}, Volume: -1}, broadcast.ErrInvalid, "volume"},
		{"two sources", broadcast.Request{Packets: pk, Text: "xin chào", Zones: []string{"a"}}, broadcast.ErrInvalid, "source"},
		{"no source", broadcast.Request{Zones: []string{"a"}}, broadcast.ErrInvalid, "source"},
		{"empty packet", broadcast.Request{Packets: [][]byte{{1}, {}}, Zones: []string{"a"}}, broadcast.ErrInvalid, "packets[1]"},
		{"bad origin", broadcast.Request{Packets: pk, Zones: []string{"a"}, Origin: "mars"}, broadcast.ErrInvalid, "origin"},
		{"no media library", broadcast.Request{MediaID: "m1", Zones: []string{"a"}}, broadcast.ErrUnavailable, "m1"},
		{"no tts", broadcast.Request{Text: "xin chào", Zones: []string{"a"}}, broadcast.ErrUnavailable, "text"},
	}
	for _, c := range cases {
		_, err := r.e.Start(ctx, c.req)
		if !errors.Is(err, c.err) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: %v, want %v naming %s", c.name, err, c.err, c.field)
		}
	}
	if _, err := r.e.Live(ctx, broadcast.Request{Packets: pk, Zones: []string{"a"}}); !errors.Is(err, broadcast.ErrInvalid) {
		t.Errorf("live with packets: %v", err)
	}
	if _, err := r.e.Get("b-nope"); !errors.Is(err, broadcast.ErrNotFound) {
		t.Errorf("get: %v", err)
	}
	if err := r.e.Stop(ctx, "b-nope", "x"); !errors.Is(err, broadcast.ErrNotFound) {
		t.Errorf("stop: %v", err)
	}
	if len(r.e.List()) != 0 {
		t.Errorf("invalid requests were registered")
	}
	if _, err := broadcast.New(broadcast.Config{Site: "a/b"}, broadcast.Deps{}, nil); err == nil {
		t.Errorf("New accepted a bad site")
	}
	if _, err := broadcast.New(broadcast.Config{Site: "s", PreemptPolicy: "maybe"}, broadcast.Deps{}, nil); err == nil {
		t.Errorf("New accepted a bad policy")
	}
}

// TestLiveMaxDuration: a runaway live stream is ended with stop(expired).
func TestLiveMaxDuration(t *testing.T) {
	clk := newFastClock(4)
	r := newRig(t, withClock(clk), func(_ *rig, c *broadcast.Config, _ *broadcast.Deps) { c.MaxDuration = 2 * time.Second })
	l, err := r.e.Live(context.Background(), broadcast.Request{Zones: []string{"c"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.WritePacket(packets(1)[0], clk.Now()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("live stream outlived its maximum duration")
	}
	b := r.waitState(t, l.ID(), time.Second, broadcast.StateStopped)
	if !strings.Contains(b.Reason, "maximum duration") {
		t.Errorf("reason %q", b.Reason)
	}
	r.marker(t, "c")
	evs := streamEvents(r.l.zone("c"), b.StreamIDs[0])
	if last := evs[len(evs)-1]; last.kind != wire.StreamStop || last.ctl.Reason != broadcast.ReasonExpired {
		t.Errorf("last event %v, want stop(expired)", last)
	}
	if !errors.Is(l.WritePacket(packets(1)[0], time.Time{}), broadcast.ErrEnded) {
		t.Errorf("write after expiry accepted")
	}
}

// speakerFunc is a Speaker from a function.
type speakerFunc func(ctx context.Context, text string) ([][]byte, error)

func (f speakerFunc) SpeakPackets(ctx context.Context, text, _ string) ([][]byte, error) {
	return f(ctx, text)
}

// TestWiredStartWaitsForHall: a broadcast to an IP zone and a wired zone
// whose amplifier needs 1.5 s starts, in both zones, when the hall is
// ready (1.5 s less the 500 ms play-out delay from now), and the hall was
// asked to pre-warm before the speech was synthesised.
func TestWiredStartWaitsForHall(t *testing.T) {
	var prewarmsAtSpeech int
	var r *rig
	r = newRig(t, withHall("b"), func(r0 *rig, _ *broadcast.Config, d *broadcast.Deps) {
		r0.out.readyIn = 1500 * time.Millisecond
		d.Speaker = speakerFunc(func(context.Context, string) ([][]byte, error) {
			r0.out.mu.Lock()
			prewarmsAtSpeech = r0.out.prewarms
			r0.out.mu.Unlock()
			return packets(10), nil
		})
	})
	asked := time.Now()
	b, err := r.e.Start(context.Background(), broadcast.Request{Text: "Bão sắp đến", Zones: []string{"a", "b"}, Priority: wire.PriorityEmergency})
	if err != nil {
		t.Fatal(err)
	}
	if prewarmsAtSpeech != 1 {
		t.Errorf("prewarms before speech synthesis: %d, want 1", prewarmsAtSpeech)
	}
	b = r.waitState(t, b.ID, 10*time.Second, broadcast.StateDone)
	r.marker(t, "a")
	r.marker(t, "b")
	var starts []int64
	for _, z := range []string{"a", "b"} {
		evs := streamEvents(r.l.zone(z), b.StreamIDs[0])
		start := checkStream(t, evs, packets(10), 0, 3, broadcast.ReasonDone)
		starts = append(starts, start.StartAt)
	}
	if starts[0] != starts[1] {
		t.Fatalf("zones start apart: %d vs %d", starts[0], starts[1])
	}
	firstSample := time.UnixMicro(starts[0]).Add(500 * time.Millisecond)
	t.Logf("first sample %v after the request (hall ready in 1.5 s)", firstSample.Sub(asked).Round(time.Millisecond))
	if firstSample.Before(asked.Add(1500 * time.Millisecond)) {
		t.Fatalf("first sample %v after the request, before the hall is ready (1.5 s)", firstSample.Sub(asked))
	}
	if firstSample.After(asked.Add(2500 * time.Millisecond)) {
		t.Fatalf("first sample %v after the request: waited too long", firstSample.Sub(asked))
	}
	// The hall output was started with the same start time, before it.
	r.out.mu.Lock()
	defer r.out.mu.Unlock()
	if len(r.out.ctls) == 0 || r.out.ctls[0].StartAt != starts[0] {
		t.Fatalf("hall starts %+v, want start_at %d", r.out.ctls, starts[0])
	}
}

// TestLiveWaitsForHall: live speech to a wired zone whose amplifier needs
// 1 s buffers its first words: the stream starts 1 s less the 250 ms live
// delay after the first packet's capture, and every packet keeps its
// place in sequence (none is dropped or skipped to catch up).
func TestLiveWaitsForHall(t *testing.T) {
	r := newRig(t, withHall("b"), func(r0 *rig, _ *broadcast.Config, _ *broadcast.Deps) { r0.out.readyIn = time.Second })
	l, err := r.e.Live(context.Background(), broadcast.Request{Zones: []string{"a", "b"}, Priority: wire.PriorityPriority})
	if err != nil {
		t.Fatal(err)
	}
	r.out.mu.Lock()
	prewarms := r.out.prewarms
	r.out.mu.Unlock()
	if prewarms != 1 {
		t.Errorf("prewarms at the live request: %d, want 1", prewarms)
	}
	t0 := time.Now()
	pk := packets(10)
	for i, p := range pk {
		if err := l.WritePacket(p, t0.Add(time.Duration(i)*20*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b := r.waitState(t, l.ID(), 5*time.Second, broadcast.StateDone)
	r.marker(t, "a")
	r.marker(t, "b")
	for _, z := range []string{"a", "b"} {
		evs := streamEvents(r.l.zone(z), b.StreamIDs[0])
		if len(evs) < 3 || evs[0].kind != wire.StreamStart {
			t.Fatalf("zone %s events %v", z, evs)
		}
		start := time.UnixMicro(evs[0].ctl.StartAt)
		if wait := start.Sub(t0); wait < 700*time.Millisecond || wait > 1500*time.Millisecond {
			t.Errorf("zone %s: live start %v after the first capture, want about 750 ms (hall ready in 1 s, live delay 250 ms)", z, wait)
		}
		next := 0
		for _, ev := range evs[1 : len(evs)-1] {
			if int(ev.frame.Seq) != next || ev.frame.PlayAt != evs[0].ctl.StartAt+int64(next)*20000 {
				t.Fatalf("zone %s frame %+v, want seq %d on the buffered timeline", z, ev.frame, next)
			}
			next += len(ev.frame.Packets)
		}
		if next != len(pk) {
			t.Errorf("zone %s got %d packets, want %d", z, next, len(pk))
		}
	}
}
