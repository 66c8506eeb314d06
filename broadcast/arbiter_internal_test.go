package broadcast

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"gopkg.in/hraban/opus.v2"

	"github.com/loalang/loalang/internal/audiotest"
)

// opusTone encodes ms of a 440 Hz tone into real 20 ms Opus packets
// (RFC 6716, 48 kHz mono) with libopus.
func opusTone(t *testing.T, ms int) [][]byte {
	t.Helper()
	const rate, frame = 48000, 960
	enc, err := opus.NewEncoder(rate, 1, opus.AppAudio)
	if err != nil {
		t.Fatal(err)
	}
	pcm := audiotest.Tone(440, 0.5, rate, ms)
	var out [][]byte
	for i := 0; i+frame <= len(pcm); i += frame {
		buf := make([]byte, 1500)
		n, err := enc.EncodeFloat32(pcm[i:i+frame], buf)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, buf[:n])
	}
	return out
}

// arbRig is an arbiter whose hooks, instead of a stream publisher and a
// recorder, keep what they were handed: the launched segments and every
// recorded state change.
type arbRig struct {
	a        *arbiter
	launched []*segment
	changes  map[string][]State
	cancel   context.CancelFunc
}

func newArbRig(t *testing.T, policy string) *arbRig {
	t.Helper()
	cfg := Config{Site: "test", PreemptPolicy: policy}
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	r := &arbRig{a: newArbiter(cfg, slog.New(slog.DiscardHandler), ctx), changes: map[string][]State{}, cancel: cancel}
	r.a.launched = func(s *segment) { r.launched = append(r.launched, s) }
	r.a.changed = func(b *bcast) {
		if c := r.changes[b.id]; len(c) == 0 || c[len(c)-1] != b.state {
			r.changes[b.id] = append(c, b.state)
		}
	}
	r.a.pruned = func(*bcast) {}
	return r
}

// locked runs f with a's state stable.
func locked(a *arbiter, f func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f()
}

// newBcast is a broadcast as Engine.prepare makes it.
func newBcast(id string, p Priority, pkts [][]byte, zones ...string) *bcast {
	b := &bcast{id: id, req: Request{Priority: p}, zones: zones, rank: p.Rank(), packets: pkts,
		legs: map[string]*leg{}, state: StateQueued, src: SourcePackets}
	for _, z := range zones {
		b.legs[z] = &leg{state: ZoneWaiting}
	}
	return b
}

func (r *arbRig) submit(t *testing.T, b *bcast, now time.Time) {
	t.Helper()
	if err := r.a.submit(b, now, func() {}); err != nil {
		t.Fatalf("submit %s: %v", b.id, err)
	}
}

// zoneStates returns "zone=state" of b's zones, in order.
func zoneStates(b *bcast) []string {
	var out []string
	for _, z := range b.zones {
		out = append(out, fmt.Sprintf("%s=%s", z, b.legs[z].state))
	}
	return out
}

// TestArbitrationDecisions checks who gets a zone when a new broadcast
// meets one already playing: pre-emption by a higher priority (resumable
// or interrupted), queueing behind an equal or higher one, and live speech
// that is refused instead of queued.
func TestArbitrationDecisions(t *testing.T) {
	pkts := opusTone(t, 2000)
	type held struct {
		prio  Priority
		zones []string
	}
	cases := []struct {
		name   string
		policy string
		held   held
		prio   Priority
		zones  []string
		live   bool

		wantErr      error
		wantNew      State
		wantNewZones []string
		wantOld      State
		wantOldZones []string
		wantStops    map[string]string // zone -> reason of the stop queued for the old stream
	}{
		{name: "free zone starts at once", held: held{PriorityNormal, []string{"a"}}, prio: PriorityNormal, zones: []string{"b"},
			wantNew: StatePlaying, wantNewZones: []string{"b=playing"}, wantOld: StatePlaying, wantOldZones: []string{"a=playing"}},
		{name: "emergency pre-empts normal in the shared zone, resumable", held: held{PriorityNormal, []string{"a", "b"}}, prio: PriorityEmergency, zones: []string{"b"},
			wantNew: StatePlaying, wantNewZones: []string{"b=playing"}, wantOld: StatePlaying, wantOldZones: []string{"a=playing", "b=suspended"},
			wantStops: map[string]string{"b": ReasonPreempted}},
		{name: "pre-empted everywhere is preempted", held: held{PriorityBackground, []string{"a"}}, prio: PriorityPriority, zones: []string{"a"},
			wantNew: StatePlaying, wantNewZones: []string{"a=playing"}, wantOld: StatePreempted, wantOldZones: []string{"a=suspended"},
			wantStops: map[string]string{"a": ReasonPreempted}},
		{name: "interrupt policy ends the zone", policy: PolicyInterrupt, held: held{PriorityNormal, []string{"a", "b"}}, prio: PriorityEmergency, zones: []string{"b"},
			wantNew: StatePlaying, wantNewZones: []string{"b=playing"}, wantOld: StatePlaying, wantOldZones: []string{"a=playing", "b=interrupted"},
			wantStops: map[string]string{"b": ReasonPreempted}},
		{name: "interrupted everywhere is interrupted", policy: PolicyInterrupt, held: held{PriorityNormal, []string{"a"}}, prio: PriorityEmergency, zones: []string{"a"},
			wantNew: StatePlaying, wantNewZones: []string{"a=playing"}, wantOld: StateInterrupted, wantOldZones: []string{"a=interrupted"},
			wantStops: map[string]string{"a": ReasonPreempted}},
		{name: "equal priority queues for all its zones", held: held{PriorityNormal, []string{"a"}}, prio: PriorityNormal, zones: []string{"a", "b"},
			wantNew: StateQueued, wantNewZones: []string{"a=waiting", "b=waiting"}, wantOld: StatePlaying, wantOldZones: []string{"a=playing"}},
		{name: "lower priority queues", held: held{PriorityEmergency, []string{"a"}}, prio: PriorityBackground, zones: []string{"a"},
			wantNew: StateQueued, wantNewZones: []string{"a=waiting"}, wantOld: StatePlaying, wantOldZones: []string{"a=playing"}},
		{name: "live speech is refused, not queued", held: held{PriorityPriority, []string{"a"}}, prio: PriorityNormal, zones: []string{"a"}, live: true,
			wantErr: ErrBusy, wantOld: StatePlaying, wantOldZones: []string{"a=playing"}},
		{name: "live emergency pre-empts", held: held{PriorityPriority, []string{"a"}}, prio: PriorityEmergency, zones: []string{"a"}, live: true,
			wantNew: StatePlaying, wantNewZones: []string{"a=playing"}, wantOld: StatePreempted, wantOldZones: []string{"a=suspended"},
			wantStops: map[string]string{"a": ReasonPreempted}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newArbRig(t, tc.policy)
			now := time.Now()
			old := newBcast("old", tc.held.prio, pkts, tc.held.zones...)
			r.submit(t, old, now)
			oldSeg := r.launched[0]

			var nb *bcast
			if tc.live {
				nb = newBcast("new", tc.prio, nil, tc.zones...)
				nb.src = SourceLive
				nb.live = &Live{id: nb.id, done: make(chan struct{})}
				err := r.a.submitLive(nb, now.Add(time.Second))
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("submitLive: %v, want %v", err, tc.wantErr)
				}
			} else {
				nb = newBcast("new", tc.prio, pkts, tc.zones...)
				r.submit(t, nb, now.Add(time.Second))
			}
			locked(r.a, func() {
				if tc.wantErr == nil {
					if nb.state != tc.wantNew || !slices.Equal(zoneStates(nb), tc.wantNewZones) {
						t.Errorf("new: %s %v, want %s %v", nb.state, zoneStates(nb), tc.wantNew, tc.wantNewZones)
					}
					if _, ok := r.a.all[nb.id]; !ok {
						t.Error("new broadcast not registered")
					}
				} else if _, ok := r.a.all[nb.id]; ok {
					t.Error("refused broadcast registered")
				}
				if old.state != tc.wantOld || !slices.Equal(zoneStates(old), tc.wantOldZones) {
					t.Errorf("old: %s %v, want %s %v", old.state, zoneStates(old), tc.wantOld, tc.wantOldZones)
				}
				stops := map[string]string{}
				for z, msgs := range r.a.zoneStops {
					for _, m := range msgs {
						if m.stream != oldSeg.id {
							t.Errorf("stop queued in %s for stream %d, not the old one", z, m.stream)
						}
						stops[z] = m.reason
					}
				}
				if len(stops) != len(tc.wantStops) {
					t.Errorf("stops %v, want %v", stops, tc.wantStops)
				}
				for z, reason := range tc.wantStops {
					if stops[z] != reason {
						t.Errorf("stop in %s: %q, want %q", z, stops[z], reason)
					}
				}
				// The invariant: owner[z] == s exactly when s holds z.
				for z, s := range r.a.owner {
					if !s.zones[z] || s.removed {
						t.Errorf("zone %s owned by stream %d that does not hold it", z, s.id)
					}
				}
				for _, s := range r.launched {
					for z := range s.zones {
						if !s.removed && r.a.owner[z] != s {
							t.Errorf("stream %d holds %s but does not own it", s.id, z)
						}
					}
				}
			})
		})
	}
}

// TestArbitrationResumesFromHeardPacket pre-empts a clip part-way and
// checks that it resumes, once the emergency has ended, from the packet
// the speakers were playing when it was cut.
func TestArbitrationResumesFromHeardPacket(t *testing.T) {
	pkts := opusTone(t, 2000) // 100 packets
	r := newArbRig(t, PolicyResume)
	t0 := time.Now()
	normal := newBcast("normal", PriorityNormal, pkts, "a", "b")
	r.submit(t, normal, t0)
	seg := r.launched[0]
	r.a.begin(seg, t0)
	r.a.progress(seg, 60) // published ahead of play-out
	cut := t0.Add(r.a.playout + 10*packetDur + packetDur/2)

	emergency := newBcast("emergency", PriorityEmergency, pkts[:5], "a", "b")
	r.submit(t, emergency, cut)
	if got := zoneStates(normal); !slices.Equal(got, []string{"a=suspended", "b=suspended"}) {
		t.Fatalf("normal zones %v", got)
	}
	if normal.legs["a"].cutAt != 10 {
		t.Fatalf("cut at packet %d, want 10", normal.legs["a"].cutAt)
	}
	if !seg.removed {
		t.Error("the pre-empted segment still runs")
	}
	eseg := r.launched[1]
	r.a.segmentEnded(eseg, ZoneDone, cut.Add(time.Second))

	if len(r.launched) != 3 {
		t.Fatalf("%d segments launched, want a resume", len(r.launched))
	}
	resumed := r.launched[2]
	if resumed.b != normal || resumed.base != 10 || !resumed.zones["a"] || !resumed.zones["b"] {
		t.Errorf("resumed segment of %s from %d in %v", resumed.b.id, resumed.base, resumed.zones)
	}
	if got, want := r.changes["normal"], []State{StatePlaying, StatePreempted, StatePlaying}; !slices.Equal(got, want) {
		t.Errorf("normal states %v, want %v", got, want)
	}
	if got, want := r.changes["emergency"], []State{StatePlaying, StateDone}; !slices.Equal(got, want) {
		t.Errorf("emergency states %v, want %v", got, want)
	}
}

// TestArbitrationQueueOrder frees a zone with two broadcasts waiting: the
// higher priority starts first even though it came later, and stopping a
// queued broadcast ends it without a stop control.
func TestArbitrationQueueOrder(t *testing.T) {
	pkts := opusTone(t, 200)
	r := newArbRig(t, PolicyResume)
	t0 := time.Now()
	holder := newBcast("holder", PriorityEmergency, pkts, "a")
	r.submit(t, holder, t0)
	bg := newBcast("bg", PriorityBackground, pkts, "a")
	r.submit(t, bg, t0.Add(time.Second))
	nm := newBcast("nm", PriorityNormal, pkts, "a")
	r.submit(t, nm, t0.Add(2*time.Second))
	if bg.state != StateQueued || nm.state != StateQueued || len(r.a.queue) != 2 {
		t.Fatalf("queued: bg %s nm %s, queue %d", bg.state, nm.state, len(r.a.queue))
	}
	r.a.segmentEnded(r.launched[0], ZoneDone, t0.Add(3*time.Second))
	if nm.state != StatePlaying || bg.state != StateQueued || len(r.a.queue) != 1 {
		t.Fatalf("after the holder ended: nm %s bg %s, queue %d", nm.state, bg.state, len(r.a.queue))
	}
	zones, err := r.a.stop("bg", "stopped by test", t0.Add(4*time.Second))
	if err != nil || len(zones) != 0 {
		t.Fatalf("stop queued: zones %v, %v", zones, err)
	}
	if bg.state != StateStopped || !bg.terminal || len(r.a.queue) != 0 {
		t.Errorf("stopped queued broadcast: %s terminal=%v, queue %d", bg.state, bg.terminal, len(r.a.queue))
	}
	if _, err := r.a.stop("bg", "again", t0.Add(5*time.Second)); !errors.Is(err, ErrNotActive) {
		t.Errorf("stop again: %v, want ErrNotActive", err)
	}
	zones, err = r.a.stop("nm", "stopped by test", t0.Add(5*time.Second))
	if err != nil || !slices.Equal(zones, []string{"a"}) || r.a.zoneStops["a"][0].reason != ReasonStopped {
		t.Errorf("stop playing: zones %v, stops %v, %v", zones, r.a.zoneStops, err)
	}
}
