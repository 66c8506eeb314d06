package device

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/loalang/loalang/device/wire"
)

func TestRegistryPresence(t *testing.T) {
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	var changes []Change
	r := NewRegistry([]Device{{ID: "s1", Kind: wire.KindSpeaker, Zones: []string{"a"}}, {ID: "s2", Kind: wire.KindSpeaker, Zones: []string{"a", "b"}}},
		[]string{"a", "b"}, 30*time.Second, func() time.Time { return now }, func(c Change) { mu.Lock(); changes = append(changes, c); mu.Unlock() })

	if r.HandleStatus("ghost", wire.Status{State: wire.StateOnline, Kind: wire.KindSpeaker}) {
		t.Fatal("unknown device accepted")
	}
	r.HandleStatus("s1", wire.Status{State: wire.StateOnline, Kind: wire.KindSpeaker, Firmware: "1.0", TS: 1})
	r.HandleHeartbeat("s2", wire.Heartbeat{Firmware: "2.0", Volume: 70})
	if !r.Online("s1") || !r.Online("s2") || r.CountOnline()[wire.KindSpeaker] != 2 {
		t.Fatalf("online: %+v", r.List())
	}
	r.HandleStatus("s1", wire.Status{State: wire.StateOffline, Kind: wire.KindSpeaker}) // a will: no ts
	now = now.Add(31 * time.Second)
	r.Sweep() // s2 went silent
	if r.Online("s1") || r.Online("s2") {
		t.Fatalf("still online: %+v", r.List())
	}
	want := []string{"s1 true status", "s2 true heartbeat", "s1 false will", "s2 false silent"}
	if len(changes) != len(want) {
		t.Fatalf("changes %+v", changes)
	}
	for i, c := range changes {
		if got := c.ID + " " + map[bool]string{true: "true", false: "false"}[c.Online] + " " + c.Reason; got != want[i] {
			t.Fatalf("change %d: %q, want %q", i, got, want[i])
		}
	}
	if m := r.Members([]string{"b"}); len(m) != 1 || m[0] != "s2" {
		t.Fatalf("members of b: %v", m)
	}
	if !r.ZoneExists("a") || r.ZoneExists("z") {
		t.Fatal("zones")
	}
}

// loopback answers commands like a device would, or not at all.
type loopback struct {
	c      *Commander
	answer bool
}

func (l *loopback) Publish(ctx context.Context, topic string, qos byte, retained bool, payload []byte) error {
	if retained || qos != 1 {
		return errors.New("commands must be QoS 1 and never retained")
	}
	cmd, err := wire.Decode[wire.Command](payload)
	if err != nil {
		return err
	}
	if l.answer {
		go l.c.HandleReply("s1", wire.Reply{ID: cmd.ID, OK: cmd.Op != wire.OpReboot, Error: map[bool]string{true: "busy"}[cmd.Op == wire.OpReboot]})
	}
	return nil
}

func TestCommanderRepliesAndTimeouts(t *testing.T) {
	lb := &loopback{answer: true}
	c := NewCommander(lb, wire.MustTopics("t"), func(id string) bool { return id == "s1" }, 200*time.Millisecond)
	lb.c = c
	if _, err := c.Send(context.Background(), "s1", wire.Command{Op: wire.OpPing}); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if _, err := c.Send(context.Background(), "s1", wire.Command{Op: wire.OpReboot}); !errors.Is(err, ErrRejected) {
		t.Fatalf("rejected: %v", err)
	}
	if _, err := c.Send(context.Background(), "nobody", wire.Command{Op: wire.OpPing}); !errors.Is(err, ErrUnknown) {
		t.Fatalf("unknown: %v", err)
	}
	lb.answer = false
	start := time.Now()
	if _, err := c.Send(context.Background(), "s1", wire.Command{Op: wire.OpPing}); !errors.Is(err, ErrTimeout) {
		t.Fatalf("silent device: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("timeout took %v", d)
	}
	// A late reply after the timeout is dropped, not delivered to anyone.
	c.HandleReply("s1", wire.Reply{ID: "c-late", OK: true})
}
