package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/loalang/loalang/broker"
	"github.com/loalang/loalang/internal/mqtttest"
)

const (
	probeTopic = "loalang/v1/demo/ctl/probe"
	// acceptance: health turns bad within 10 s of lost subscriptions.
	detectDeadline = 10 * time.Second
)

// healthLog records every OnHealth call in order.
type healthLog struct {
	mu     sync.Mutex
	states []error
	notify chan struct{}
}

func newHealthLog() *healthLog { return &healthLog{notify: make(chan struct{}, 1)} }

func (h *healthLog) set(err error) {
	h.mu.Lock()
	h.states = append(h.states, err)
	h.mu.Unlock()
	select {
	case h.notify <- struct{}{}:
	default:
	}
}

func (h *healthLog) last() (error, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.states) == 0 {
		return nil, false
	}
	return h.states[len(h.states)-1], true
}

// waitFor waits until the latest state matches want (nil = healthy).
func (h *healthLog) waitFor(t *testing.T, want error, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		if got, ok := h.last(); ok && (got == want || errors.Is(got, want) && want != nil) {
			return time.Since(start)
		}
		select {
		case <-h.notify:
		case <-timer.C:
			got, _ := h.last()
			t.Fatalf("health = %v after %v, want %v", got, within, want)
		}
	}
}

// received collects payloads delivered to a handler.
type received struct {
	mu   sync.Mutex
	msgs map[string]bool
	ch   chan struct{}
}

func newReceived() *received { return &received{msgs: map[string]bool{}, ch: make(chan struct{}, 1)} }

func (r *received) handle(m Message) {
	r.mu.Lock()
	r.msgs[string(m.Payload)] = true
	r.mu.Unlock()
	select {
	case r.ch <- struct{}{}:
	default:
	}
}

func (r *received) has(p string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.msgs[p]
}

// startClient connects a bus client with a fast probe, subscribed to dev/+/heartbeat.
func startClient(t *testing.T, url string) (*Client, *healthLog, *received) {
	t.Helper()
	h, rec := newHealthLog(), newReceived()
	c := New(Config{URL: url, ClientID: "loalangd-demo", ProbeTopic: probeTopic, ProbeInterval: 200 * time.Millisecond, OnHealth: h.set},
		slog.New(slog.DiscardHandler))
	c.Subscribe("loalang/v1/demo/dev/+/heartbeat", 0, rec.handle)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	h.waitFor(t, nil, 5*time.Second)
	return c, h, rec
}

// devicePublisher is a plain paho client standing in for a speaker.
func devicePublisher(t *testing.T, url string) mqtt.Client {
	t.Helper()
	pc := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID("spk-1").SetProtocolVersion(4))
	if tok := pc.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("device connect: %v", tok.Error())
	}
	t.Cleanup(func() { pc.Disconnect(50) })
	return pc
}

// waitDelivered publishes heartbeats until one arrives or the deadline passes.
func waitDelivered(t *testing.T, dev mqtt.Client, rec *received, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for i := 0; time.Now().Before(deadline); i++ {
		p := fmt.Sprintf("hb-%d", i)
		dev.Publish("loalang/v1/demo/dev/spk-1/heartbeat", 0, false, p).WaitTimeout(time.Second)
		select {
		case <-rec.ch:
		case <-time.After(100 * time.Millisecond):
		}
		if rec.has(p) {
			return
		}
	}
	t.Fatalf("no heartbeat delivered within %v", within)
}

// TestProbeRecoversDroppedClient puts mochi into the state the takeover
// report left the controller in: the connection is open and answers pings,
// but the broker no longer has the client in its client map, so nothing is
// delivered. Resubscribing cannot fix that; the probe must report it and
// reconnect.
func TestProbeRecoversDroppedClient(t *testing.T) {
	url, srv := mqtttest.StartServer(t)
	c, h, rec := startClient(t, url)
	dev := devicePublisher(t, url)
	waitDelivered(t, dev, rec, 5*time.Second)

	cl, ok := srv.Clients.Get("loalangd-demo")
	if !ok {
		t.Fatal("controller not in the client map")
	}
	srv.Clients.Delete(cl.ID)
	if !c.Connected() {
		t.Fatal("connection closed; the test needs a deaf but open one")
	}
	took := h.waitFor(t, ErrNotDelivering, detectDeadline)
	t.Logf("deafness reported after %v", took)
	took = h.waitFor(t, nil, detectDeadline)
	t.Logf("recovered %v later", took)
	waitDelivered(t, dev, rec, 5*time.Second)
	if _, redials := c.Recoveries(); redials == 0 {
		t.Error("recovered without reconnecting; the dropped client needs a new connection")
	}
}

// TestProbeResubscribes removes the client's subscriptions in the broker
// while the connection stays up; one resubscription, made at the first lost
// probe, is enough, and /healthz is not bothered with it (health turns bad
// only from the second lost probe in a row).
func TestProbeResubscribes(t *testing.T) {
	url, srv := mqtttest.StartServer(t)
	c, h, rec := startClient(t, url)
	dev := devicePublisher(t, url)
	waitDelivered(t, dev, rec, 5*time.Second)
	// Every SUBSCRIBE must have reached the broker before the test removes
	// the subscriptions; a late one would restore what the test took away.
	waitProbeBack(t, c)

	cl, _ := srv.Clients.Get("loalangd-demo")
	for filter := range cl.State.Subscriptions.GetAll() {
		srv.Topics.Unsubscribe(filter, cl.ID)
		cl.State.Subscriptions.Delete(filter)
	}
	deadline := time.Now().Add(detectDeadline)
	for resubs, _ := c.Recoveries(); resubs == 0; resubs, _ = c.Recoveries() {
		if time.Now().After(deadline) {
			t.Fatal("lost subscriptions not noticed")
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	waitDelivered(t, dev, rec, 5*time.Second)
	if resubs, redials := c.Recoveries(); resubs != 1 || redials != 0 {
		t.Errorf("recoveries: %d resubscribes, %d reconnects; want one resubscription alone", resubs, redials)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, st := range h.states[1:] { // [0] is the initial healthy report
		t.Logf("health went %v while resubscribing", st)
	}
}

// TestHealthFollowsConnection reports a lost connection and the recovery
// after the broker comes back on the same address.
func TestHealthFollowsConnection(t *testing.T) {
	url, srv := mqtttest.StartServer(t)
	c, h, _ := startClient(t, url)
	cl, _ := srv.Clients.Get("loalangd-demo")
	cl.Stop(errors.New("test: cut"))
	h.waitFor(t, ErrNotConnected, detectDeadline)
	if c.Delivering() {
		t.Error("Delivering() true while disconnected")
	}
	// paho's own reconnect (first retry after about 1 s) brings it back.
	h.waitFor(t, nil, 30*time.Second)
	if !c.Delivering() {
		t.Error("Delivering() false after recovery")
	}
}

// TestCloseStopsProbe ends with no goroutine of the client left running
// (the wait group covers the worker, the probe and subscribe loggers).
func TestCloseStopsProbe(t *testing.T) {
	url, _ := mqtttest.StartServer(t)
	c, _, _ := startClient(t, url)
	done := make(chan struct{})
	go func() { c.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hung")
	}
	c.Close() // idempotent
}

// waitProbeBack waits until one of the client's probes has come back, which
// shows that its subscriptions were acknowledged and deliver.
func waitProbeBack(t *testing.T, c *Client) {
	t.Helper()
	deadline := time.Now().Add(detectDeadline)
	for c.probeSeen.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no probe came back")
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

// TestConnectBackgroundRefusedLogin checks that a refused login ends the
// background dialling and is on the failed channel before Attempted
// closes, so loalangd fails its start on a wrong password instead of
// serving "degraded" for ever.
func TestConnectBackgroundRefusedLogin(t *testing.T) {
	hash, err := broker.HashPassword("the-right-secret")
	if err != nil {
		t.Fatal(err)
	}
	emb, err := broker.NewEmbedded(broker.EmbeddedConfig{Addr: "127.0.0.1:0"}, broker.Rules{Site: "demo", Accounts: []broker.Account{
		{Username: "loalangd", PasswordHash: hash, Role: broker.RoleService, ClientID: "loalangd-demo"},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := emb.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emb.Close() })
	c := New(Config{URL: "tcp://" + emb.Addr(), ClientID: "loalangd-demo", Username: "loalangd", Password: "a-wrong-secret"},
		slog.New(slog.DiscardHandler))
	t.Cleanup(func() { c.Close() })
	up, failed := c.ConnectBackground(context.Background())
	select {
	case <-c.Attempted():
	case <-time.After(10 * time.Second):
		t.Fatal("first attempt never answered")
	}
	select {
	case err := <-failed:
		if !isAuthError(errors.Unwrap(err)) {
			t.Fatalf("failed with %v, want a refused login", err)
		}
	case <-up:
		t.Fatal("connected with a wrong password")
	default:
		t.Fatal("Attempted closed before the refusal was on its channel")
	}
}
