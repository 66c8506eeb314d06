package broadcast_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loalang/loalang/internal/mqtttest"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/loalang/loalang/broadcast"
	"github.com/loalang/loalang/device/wire"
)

const site = "test"

var topics = wire.MustTopics(site)

var clientSeq atomic.Int64

func connect(t *testing.T, addr string, onConnect paho.OnConnectHandler) paho.Client {
	t.Helper()
	opts := paho.NewClientOptions().
		AddBroker(addr).
		SetClientID(fmt.Sprintf("c%d", clientSeq.Add(1))).
		SetProtocolVersion(4).
		SetWriteTimeout(2 * time.Second).
		SetConnectTimeout(5 * time.Second).
		SetAutoReconnect(false).
		SetOrderMatters(true)
	if onConnect != nil {
		opts.SetOnConnectHandler(onConnect)
	}
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", addr, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// pahoPublisher is the Publisher the daemon uses, over a real paho client.
type pahoPublisher struct{ c paho.Client }

func (p pahoPublisher) Publish(ctx context.Context, topic string, qos byte, retained bool, payload []byte) error {
	tok := p.c.Publish(topic, qos, retained, payload)
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// event is one message a zone subscriber received, decoded.
type event struct {
	zone   string
	kind   string // start, stop, frame, marker
	ctl    wire.StreamControl
	frame  wire.Frame
	at     time.Time
	packet int // size of the raw payload
}

func (ev event) String() string {
	switch ev.kind {
	case "frame":
		return fmt.Sprintf("%s frame s=%d seq=%d n=%d", ev.zone, ev.frame.StreamID, ev.frame.Seq, len(ev.frame.Packets))
	case "marker":
		return ev.zone + " marker"
	}
	return fmt.Sprintf("%s %s s=%d %s", ev.zone, ev.kind, ev.ctl.StreamID, ev.ctl.Reason)
}

// listener is a paho subscriber to every zone topic of the site.
type listener struct {
	mu     sync.Mutex
	events []event
	errs   []string
}

func listen(t *testing.T, addr string) *listener {
	t.Helper()
	l := &listener{}
	ready := make(chan error, 1)
	filter := topics.Prefix() + "zone/#"
	connect(t, addr, func(c paho.Client) {
		tok := c.Subscribe(filter, 1, l.handle)
		tok.Wait()
		ready <- tok.Error()
	})
	select {
	case err := <-ready:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("subscribe timed out")
	}
	return l
}

func (l *listener) handle(_ paho.Client, m paho.Message) {
	now := time.Now()
	zone, kind, ok := topics.ParseZone(m.Topic())
	ev := event{zone: zone, at: now, packet: len(m.Payload())}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case strings.HasSuffix(m.Topic(), "/marker"):
		ev.zone = strings.TrimSuffix(strings.TrimPrefix(m.Topic(), topics.Prefix()+"zone/"), "/marker")
		ev.kind = "marker"
	case !ok:
		l.errs = append(l.errs, "bad topic "+m.Topic())
		return
	case kind == "stream":
		var c wire.StreamControl
		if err := json.Unmarshal(m.Payload(), &c); err != nil || c.Validate() != nil {
			l.errs = append(l.errs, fmt.Sprintf("bad control %q", m.Payload()))
			return
		}
		ev.kind, ev.ctl = c.Op, c
	default:
		var f wire.Frame
		b := append([]byte(nil), m.Payload()...)
		if err := f.UnmarshalBinary(b); err != nil {
			l.errs = append(l.errs, err.Error())
			return
		}
		ev.kind, ev.frame = "frame", f
	}
	l.events = append(l.events, ev)
}

// zone returns the events of one zone so far.
func (l *listener) zone(z string) []event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []event
	for _, ev := range l.events {
		if ev.zone == z {
			out = append(out, ev)
		}
	}
	return out
}

func (l *listener) check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) > 0 {
		t.Fatalf("subscriber errors: %v", l.errs)
	}
}

// count returns how many events of zone match.
func (l *listener) count(z string, match func(event) bool) int {
	n := 0
	for _, ev := range l.zone(z) {
		if match(ev) {
			n++
		}
	}
	return n
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// directory is a static zone table; every speaker is online.
type directory struct{ zones map[string][]string }

func (d directory) ZoneExists(z string) bool { _, ok := d.zones[z]; return ok }
func (d directory) Online(string) bool       { return true }
func (d directory) Members(zones []string) []string {
	var out []string
	for _, z := range zones {
		for _, m := range d.zones[z] {
			if !slices.Contains(out, m) {
				out = append(out, m)
			}
		}
	}
	return out
}

// recorder keeps every record it is given.
type recorder struct {
	mu   sync.Mutex
	recs []broadcast.Record
}

func (r *recorder) SaveBroadcast(_ context.Context, rec broadcast.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	return nil
}

func (r *recorder) states(id string) []broadcast.State {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []broadcast.State
	for _, rec := range r.recs {
		if rec.ID == id && (len(out) == 0 || out[len(out)-1] != rec.State) {
			out = append(out, rec.State)
		}
	}
	return out
}

func (r *recorder) last(id string) (broadcast.Record, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.recs) - 1; i >= 0; i-- {
		if r.recs[i].ID == id {
			return r.recs[i], true
		}
	}
	return broadcast.Record{}, false
}

// fastClock runs k times faster than the wall clock, so streams whose
// pacing is not under test finish quickly while staying paced.
type fastClock struct {
	base time.Time
	real time.Time
	k    int
}

func newFastClock(k int) *fastClock {
	now := time.Now()
	return &fastClock{base: now, real: now, k: k}
}

func (c *fastClock) Now() time.Time {
	return c.base.Add(time.Since(c.real) * time.Duration(c.k))
}

func (c *fastClock) After(d time.Duration) <-chan time.Time {
	return time.After(d / time.Duration(c.k))
}

// packets makes n distinct fake Opus packets; packet i carries i in its
// first two bytes so a receiver can tell which one it got.
func packets(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		p := make([]byte, 60)
		binary.BigEndian.PutUint16(p, uint16(i))
		p[2] = 0xFC
		out[i] = p
	}
	return out
}

func packetIndex(p []byte) int { return int(binary.BigEndian.Uint16(p)) }

type rig struct {
	e   *broadcast.Engine
	l   *listener
	rec *recorder
	pub paho.Client
	out *output
}

type rigOpt func(*rig, *broadcast.Config, *broadcast.Deps)

func newRig(t *testing.T, opts ...rigOpt) *rig {
	t.Helper()
	addr := mqtttest.StartBroker(t)
	l := listen(t, addr)
	pub := connect(t, addr, nil)
	r := &rig{l: l, rec: &recorder{}, pub: pub, out: &output{}}
	cfg := broadcast.Config{Site: site}
	deps := broadcast.Deps{
		Publisher: pahoPublisher{pub},
		Directory: directory{zones: map[string][]string{
			"a": {"sa1", "sa2"}, "b": {"sb1"}, "c": {"sc1"}, "hall": {},
		}},
		Recorder: r.rec,
	}
	for _, o := range opts {
		o(r, &cfg, &deps)
	}
	log := slog.New(slog.DiscardHandler)
	if os.Getenv("BROADCAST_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	e, err := broadcast.New(cfg, deps, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		_ = e.Close()
	})
	r.e = e
	return r
}

func (r *rig) waitState(t *testing.T, id string, d time.Duration, states ...broadcast.State) broadcast.Broadcast {
	t.Helper()
	var b broadcast.Broadcast
	waitFor(t, d, id+" state "+fmt.Sprint(states), func() bool {
		var err error
		b, err = r.e.Get(id)
		return err == nil && slices.Contains(states, b.State)
	})
	return b
}

// marker publishes a message on zone/<z>/marker through the engine's own
// client; once the subscriber has it, everything the engine published
// before has arrived too (one connection, in order).
func (r *rig) marker(t *testing.T, z string) {
	t.Helper()
	tok := r.pub.Publish(topics.Prefix()+"zone/"+z+"/marker", 1, false, []byte("m"))
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("marker: %v", tok.Error())
	}
	waitFor(t, 5*time.Second, "marker on "+z, func() bool {
		return r.l.count(z, func(ev event) bool { return ev.kind == "marker" }) > 0
	})
}

// output is a hall Output that records what it is given.
type output struct {
	mu     sync.Mutex
	starts [][]string
	ctls   []wire.StreamControl
	frames []wire.Frame
	stops  []uint32
	// readyIn is what ReadyIn answers (a cold amplifier), prewarms counts
	// Prewarm calls.
	readyIn  time.Duration
	prewarms int
}

func (o *output) Prewarm() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.prewarms++
}

func (o *output) ReadyIn([]string) time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.readyIn
}

func (o *output) Start(_ context.Context, ctl wire.StreamControl, zones []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.starts = append(o.starts, zones)
	o.ctls = append(o.ctls, ctl)
}

func (o *output) Frame(f wire.Frame) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.frames = append(o.frames, f)
}

func (o *output) Stop(id uint32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.stops = append(o.stops, id)
}
