package broadcast

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/internal/mqtttest"
)

// pahoPub publishes over a real paho client, as the daemon does.
type pahoPub struct{ c paho.Client }

func (p pahoPub) Publish(ctx context.Context, topic string, qos byte, retained bool, payload []byte) error {
	tok := p.c.Publish(topic, qos, retained, payload)
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func pahoClient(t *testing.T, url, id string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(id).SetProtocolVersion(4).
		SetAutoReconnect(false).SetOrderMatters(true).SetConnectTimeout(5 * time.Second))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// zoneMsg is one message a zone subscriber received.
type zoneMsg struct {
	ctl   *wire.StreamControl
	frame *wire.Frame
}

// TestStreamPublisher runs the stream publisher on its own (an arbiter
// hands it a segment; no Engine) against a real MQTT broker and checks
// what a speaker in each zone receives: the start control, then every real
// Opus packet once, in frames of PacketsPerFrame with play-at times
// stamped start_at + seq·20 ms, the last frame flagged, then stop "done";
// and that its publish counters match what was received.
func TestStreamPublisher(t *testing.T) {
	pkts := opusTone(t, 500) // 25 packets
	url := mqtttest.StartBroker(t)
	topics := wire.MustTopics("test")

	var mu sync.Mutex
	got := map[string][]zoneMsg{}
	sub := pahoClient(t, url, "speaker")
	for _, z := range []string{"a", "b"} {
		for _, topic := range []string{topics.ZoneStream(z), topics.ZoneAudio(z)} {
			tok := sub.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) {
				var msg zoneMsg
				if m.Topic() == topics.ZoneAudio(z) {
					var f wire.Frame
					if err := f.UnmarshalBinary(m.Payload()); err != nil {
						t.Errorf("frame on %s: %v", z, err)
						return
					}
					msg.frame = &f
				} else {
					c, err := wire.Decode[wire.StreamControl](m.Payload())
					if err != nil {
						t.Errorf("control on %s: %v", z, err)
						return
					}
					msg.ctl = &c
				}
				mu.Lock()
				got[z] = append(got[z], msg)
				mu.Unlock()
			})
			if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("subscribe %s: %v", topic, tok.Error())
			}
		}
	}

	cfg := Config{Site: "test", PlayoutDelay: 100 * time.Millisecond}
	if err := cfg.defaults(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	arb := newArbiter(cfg, log, ctx)
	p := &streamer{ppf: cfg.PacketsPerFrame, playout: cfg.PlayoutDelay, liveDelay: cfg.LiveDelay,
		pub: pahoPub{pahoClient(t, url, "controller")}, clock: realClock{}, topics: topics, wired: map[string]bool{},
		log: log, arb: arb, ctx: ctx, zoneLocks: map[string]*sync.Mutex{}, stats: map[string]*ZoneStats{}, since: time.Now()}
	ended := make(chan struct{})
	var once sync.Once
	arb.launched = p.start
	arb.changed = func(b *bcast) {
		if b.terminal {
			once.Do(func() { close(ended) })
		}
	}
	arb.pruned = func(*bcast) {}

	b := newBcast("b-1", PriorityNormal, pkts, "a", "b")
	if err := arb.submit(b, time.Now(), func() {}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatal("the stream did not end within 30 s")
	}
	p.wg.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got["a"]) + len(got["b"])
		mu.Unlock()
		// start + 9 frames (3+3+…+1) + stop per zone
		if n >= 2*11 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	locked(arb, func() {
		if b.state != StateDone {
			t.Errorf("broadcast %s, want done", b.state)
		}
	})

	mu.Lock()
	defer mu.Unlock()
	stats := p.counters()
	for _, z := range []string{"a", "b"} {
		msgs := got[z]
		if len(msgs) != 11 || msgs[0].ctl == nil || msgs[len(msgs)-1].ctl == nil {
			t.Fatalf("zone %s: %d messages, want start, 9 frames, stop", z, len(msgs))
		}
		start, stop := msgs[0].ctl, msgs[len(msgs)-1].ctl
		if start.Op != wire.StreamStart || int(start.Packets) != len(pkts) || start.PlayoutDelayMS != 100 || start.Priority != wire.PriorityNormal {
			t.Errorf("zone %s start %+v", z, start)
		}
		if stop.Op != wire.StreamStop || stop.Reason != ReasonDone || stop.StreamID != start.StreamID {
			t.Errorf("zone %s stop %+v", z, stop)
		}
		next := 0
		for i, m := range msgs[1 : len(msgs)-1] {
			f := m.frame
			if f == nil || f.StreamID != start.StreamID || int(f.Seq) != next {
				t.Fatalf("zone %s message %d: %+v, want frame seq %d", z, i+1, m, next)
			}
			if f.PlayAt != start.StartAt+int64(next)*20000 {
				t.Errorf("zone %s frame %d play-at %d, want %d", z, f.Seq, f.PlayAt, start.StartAt+int64(next)*20000)
			}
			if len(f.Packets) != min(3, len(pkts)-next) {
				t.Errorf("zone %s frame %d: %d packets", z, f.Seq, len(f.Packets))
			}
			for _, pk := range f.Packets {
				if string(pk) != string(pkts[next]) {
					t.Fatalf("zone %s packet %d differs from the Opus packet sent", z, next)
				}
				next++
			}
			if last := next == len(pkts); (f.Flags&wire.FlagLast != 0) != last {
				t.Errorf("zone %s frame %d FlagLast wrong", z, f.Seq)
			}
		}
		if next != len(pkts) {
			t.Errorf("zone %s got %d packets, want %d", z, next, len(pkts))
		}
		if s := stats.Zones[z]; s.AudioMessages != 9 || s.ControlMessages != 2 || s.Errors != 0 {
			t.Errorf("zone %s counters %+v, want 9 audio and 2 control messages", z, s)
		}
	}
}
