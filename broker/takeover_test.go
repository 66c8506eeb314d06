package broker

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/loalang/loalang/device/wire"
)

// runTakeover reproduces the reported attack: a speaker's own credentials
// under the controller's client id. Before client ids were bound to
// accounts both brokers accepted the CONNECT and closed the controller's
// session [MQTT-3.1.4-3]; now the CONNECT is refused and the controller
// keeps receiving.
func runTakeover(t *testing.T, addr string, c creds) {
	ctl := mustDial(t, addr, ServiceUsername, c.svc)
	if code := ctl.subscribe(t, prefix+"dev/+/heartbeat"); code != 1 {
		t.Fatalf("controller subscribe = %#x", code)
	}
	for _, tc := range []struct{ user, pass, id string }{
		{"d1", c.d1, ServiceClientID("demo")}, // a speaker as the controller
		{"d1", c.d1, "d2"},                    // a speaker as another speaker
		{ServiceUsername, c.svc, "d1"},        // even the controller as a speaker
	} {
		cl, err := dial(t, addr, tc.user, tc.pass, func(o *paho.ClientOptions) { o.SetClientID(tc.id) })
		if err == nil {
			cl.Disconnect(0)
			t.Errorf("%s connected under client id %q, want refused", tc.user, tc.id)
		}
	}
	select {
	case <-ctl.lost:
		t.Fatal("the controller's session was taken over")
	default:
	}
	d2 := mustDial(t, addr, "d2", c.d2)
	p := "hb-" + secret(t)
	if !d2.publish(prefix+"dev/d2/heartbeat", 1, false, p) {
		t.Fatal("d2 publish failed")
	}
	if _, ok := ctl.rec.wait(p, ctl.lost); !ok {
		t.Fatal("controller deaf after the refused takeover")
	}
}

func TestEmbeddedTakeoverRefused(t *testing.T) {
	c := newCreds(t)
	runTakeover(t, startEmbedded(t, c.rules).Addr(), c)
}

func TestMosquittoTakeoverRefused(t *testing.T) {
	c := newCreds(t)
	runTakeover(t, startMosquitto(t, c.rules).addr, c)
}

// TestEmbeddedQuickReconnectKeepsDelivery reconnects one identity under its
// own client id while its previous connection is still being torn down, as
// a speaker or the controller does after a network blip. mochi v2.7.9 could
// then drop the new connection from its client map: connected, answering
// pings, receiving nothing (the deaf controller). OnSessionEstablish makes
// the takeover sequential; without it this failed within a few rounds.
func TestEmbeddedQuickReconnectKeepsDelivery(t *testing.T) {
	c := newCreds(t)
	e := startEmbedded(t, c.rules)
	svc := mustDial(t, e.Addr(), ServiceUsername, c.svc)
	var prev *client
	for i := range 100 {
		if prev != nil {
			if i%2 == 0 {
				go prev.Disconnect(0) // a clean leave racing the new CONNECT
			}
			// otherwise the new CONNECT takes the session over
		}
		d1 := mustDial(t, e.Addr(), "d1", c.d1)
		if code := d1.subscribe(t, prefix+"dev/d1/cmd"); code != 1 {
			t.Fatalf("round %d: subscribe = %#x", i, code)
		}
		p := fmt.Sprintf("cmd-%d-%s", i, secret(t))
		if !svc.publish(prefix+"dev/d1/cmd", 1, false, p) {
			t.Fatal("service publish failed")
		}
		if _, ok := d1.rec.wait(p, d1.lost); !ok {
			t.Fatalf("round %d: the reconnected client receives nothing", i)
		}
		prev = d1
	}
}

// runRetainedBound replays the memory attack: a device publishing many
// large retained messages under its own topic tree. Only the protocol's
// topics are writable, so at most one retained message per device topic
// survives (on Mosquitto, up to MaxPacketSize each; on the embedded
// broker, only the status, within wire.MaxStatusPayload).
func runRetainedBound(t *testing.T, addr string, c creds, mosq bool) {
	big := strings.Repeat("x", 60<<10) // fits MaxPacketSize, over every device limit
	var topics []string
	for _, r := range wire.DeviceTopicRules {
		topics = append(topics, prefix+"dev/d1/"+r.Suffix)
	}
	for i := range 50 {
		topics = append(topics, fmt.Sprintf("%sdev/d1/x%d", prefix, i))
	}
	d1 := mustDial(t, addr, "d1", c.d1)
	for _, topic := range topics {
		if !d1.publish(topic, 0, true, big) {
			d1 = mustDial(t, addr, "d1", c.d1)
		}
	}
	// Larger than a packet: refused outright by both brokers.
	huge := strings.Repeat("y", 512<<10)
	d1.Publish(prefix+"dev/d1/status", 0, true, huge).WaitTimeout(waitTimeout)
	// The device's own small status is still stored.
	d1 = mustDial(t, addr, "d1", c.d1)
	status := `{"state":"online","kind":"speaker","ts":1}`
	if !d1.publish(prefix+"dev/d1/status", 1, true, status) {
		t.Fatal("status publish failed")
	}

	obs := mustDial(t, addr, ServiceUsername, c.svc)
	obs.subscribe(t, prefix+"dev/d1/#")
	marker := "marker-" + secret(t)
	obs.publish(prefix+"test/m", 1, false, marker)
	obs.subscribe(t, prefix+"test/m")
	obs.publish(prefix+"test/m", 1, false, marker)
	if _, ok := obs.rec.wait(marker, nil); !ok {
		t.Fatal("marker not received")
	}
	obs.rec.mu.Lock()
	defer obs.rec.mu.Unlock()
	n, bytes := 0, 0
	for _, m := range obs.rec.msgs {
		if m.retained && strings.HasPrefix(m.topic, prefix+"dev/d1/") {
			n++
			bytes += len(m.payload)
			if !mosq && m.topic != prefix+"dev/d1/status" {
				t.Errorf("embedded broker retained %s", m.topic)
			}
		}
	}
	limit, maxN := wire.MaxStatusPayload, 1
	if mosq {
		maxN = len(Rules{Site: "demo"}.Grants(Account{Username: "d1", Role: RoleDevice})) // write and read grants bound it
		limit = maxN * MaxPacketSize
	}
	t.Logf("retained for d1: %d messages, %d bytes", n, bytes)
	if n == 0 || n > maxN || bytes > limit {
		t.Errorf("retained for d1: %d messages, %d bytes; want 1..%d and at most %d bytes", n, bytes, maxN, limit)
	}
}

func TestEmbeddedRetainedBound(t *testing.T) {
	c := newCreds(t)
	runRetainedBound(t, startEmbedded(t, c.rules).Addr(), c, false)
}

func TestMosquittoRetainedBound(t *testing.T) {
	c := newCreds(t)
	runRetainedBound(t, startMosquitto(t, c.rules).addr, c, true)
}

// TestMaxPacketSizeFitsProtocol pins MaxPacketSize against the largest
// message of the protocol: a full audio frame on the longest topic.
func TestMaxPacketSizeFitsProtocol(t *testing.T) {
	longest := strings.Repeat("t", wire.MaxTopicLen)
	if n := wire.PublishSize(longest, 1, wire.MaxFramePayload); n > MaxPacketSize {
		t.Fatalf("largest audio PUBLISH is %d bytes, over MaxPacketSize %d", n, MaxPacketSize)
	}
}

// TestEmbeddedRetainedMemory replays the reported memory attack on the
// embedded broker in this process: 200 retained 512 KiB messages under the
// device's own tree (which took loalangd from 35 MB to 281 MB), then the
// same with 60 KiB messages, which fit a packet. Only the device's own
// small status may stay, and the heap must not grow with the payloads.
func TestEmbeddedRetainedMemory(t *testing.T) {
	c := newCreds(t)
	e := startEmbedded(t, c.rules)
	before := heapInuse()
	topic := func(i int) string {
		if i%2 == 0 {
			return prefix + "dev/d1/status"
		}
		return fmt.Sprintf("%sdev/d1/r%d", prefix, i)
	}
	// Over MaxPacketSize: the broker closes each connection.
	huge := strings.Repeat("m", 512<<10)
	for i := range 200 {
		d1 := mustDial(t, e.Addr(), "d1", c.d1)
		d1.Publish(topic(i), 0, true, huge)
		select {
		case <-d1.lost:
		case <-time.After(waitTimeout):
			t.Fatalf("message %d: a 512 KiB packet did not close the connection", i)
		}
	}
	// Within a packet, over every device limit: dropped (QoS 0).
	big := strings.Repeat("m", 60<<10)
	d1 := mustDial(t, e.Addr(), "d1", c.d1)
	for i := range 200 {
		if !d1.publish(topic(i), 0, true, big) {
			t.Fatalf("message %d: connection lost", i)
		}
	}
	// The device's real status is still kept.
	if !d1.publish(prefix+"dev/d1/status", 1, true, `{"state":"online","kind":"speaker"}`) {
		t.Fatal("status publish failed")
	}
	d1.Disconnect(0)
	after := heapInuse()
	retained := 0
	for topic := range e.server.Topics.Retained.GetAll() {
		if strings.HasPrefix(topic, prefix) { // mochi retains its own $SYS topics too
			retained++
		}
	}
	t.Logf("heap in use %.1f MiB -> %.1f MiB; retained messages in the broker: %d", float64(before)/(1<<20), float64(after)/(1<<20), retained)
	// The 200 test clients' own buffers account for a few MiB; the old
	// broker kept about 50 MiB of payloads here (100 distinct topics).
	if grow := int64(after) - int64(before); grow > 16<<20 {
		t.Errorf("heap grew by %.1f MiB", float64(grow)/(1<<20))
	}
	if retained != 1 {
		t.Errorf("%d retained messages, want d1's status alone", retained)
	}
}

// heapInuse returns the heap in use after a collection.
func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
