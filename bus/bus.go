// Package bus is loalangd's MQTT client (eclipse/paho.mqtt.golang): the same
// code path against the embedded broker, Mosquitto or a cluster. It handles
// the library's known pitfalls (DESIGN.md): subscriptions are renewed in
// OnConnect, handlers never block paho's router, writes time out,
// reconnects are jittered, and the protocol is MQTT 3.1.1. It also proves,
// with a probe message to itself, that its subscriptions still deliver: an
// open connection that answers pings is no proof of that.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// Message is one received message. Received is stamped on paho's
// goroutine, before queueing, so clock-sync answers are not skewed by
// handler backlog.
type Message struct {
	Topic    string
	Payload  []byte
	Received time.Time
}

// Handler processes one message. It runs on the bus's own worker
// goroutine, never on paho's, so a slow handler delays only other messages.
type Handler func(m Message)

// Config selects the broker and identity.
type Config struct {
	URL      string
	ClientID string
	Username string
	Password string
	// Will, if set, is registered as the client's last will.
	WillTopic   string
	WillPayload []byte
	// Queue bounds messages waiting for handlers; beyond it the newest
	// QoS 0 messages are dropped (and counted).
	Queue int
	// ProbeTopic, if set, is a topic only this client publishes and reads.
	// Every ProbeInterval the client sends itself a message there; if the
	// previous one has not come back, its subscriptions are not delivering:
	// it resubscribes, and if that does not help by the next probe, it
	// reconnects.
	ProbeTopic string
	// ProbeInterval is the probe period; 0 means DefaultProbeInterval. A
	// loss of delivery is reported within three periods.
	ProbeInterval time.Duration
	// OnHealth, if set, is called whenever the client's state changes: nil
	// once it is connected and delivering, else ErrNotConnected (wrapped
	// with the reason: a refused dial, a lost connection) or
	// ErrNotDelivering. It runs on paho's, the dialler's or the probe's
	// goroutine and must not block.
	OnHealth func(err error)
}

// DefaultProbeInterval is the probe period when Config.ProbeInterval is 0:
// a lost subscription is reported within three periods (4.5 s, well inside
// the 10 s an operator should wait), for one QoS 0 message of about 20
// bytes every 1.5 s.
const DefaultProbeInterval = 1500 * time.Millisecond

// Reconnect backoff. A broker that comes back (a restart, an outage at
// boot) is found again within about maxBackoff, whatever the outage's
// length: a village hall has one broker, and a 30 s back-off kept speakers
// silent long after it was back. Every wait is jittered. The client redials
// by itself rather than through paho's auto-reconnect, whose first retry
// waits a fixed second and whose backoff is reset by its own rules: a
// broker restarted in one second was found again only 2-2.6 s later.
const (
	minBackoff = 150 * time.Millisecond
	maxBackoff = time.Second
)

type sub struct {
	filter  string
	qos     byte
	handler Handler
}

type message struct {
	h Handler
	m Message
}

// Client is a connected MQTT client.
type Client struct {
	cfg  Config
	log  *slog.Logger
	pc   mqtt.Client
	subs []sub

	queue      chan message
	connected  atomic.Bool
	delivering atomic.Bool                // false from a lost probe until one comes back
	strikes    atomic.Int32               // probes lost in a row; health is bad from 2
	probeNonce string                     // tells this client's probes from any other's
	probeSeen  atomic.Uint64              // highest probe sequence received back
	probeSub   atomic.Pointer[mqtt.Token] // the latest SUBSCRIBE to ProbeTopic
	stateMu    sync.Mutex
	lastState  string // the last state reported to OnHealth ("" = healthy)
	stateSet   bool
	connErr    atomic.Pointer[error] // why the client is not connected, for OnHealth
	attempted  chan struct{}         // closed when the first connection attempt has an answer
	attemptOne sync.Once
	dropped    atomic.Uint64
	resubs     atomic.Uint64
	redials    atomic.Uint64
	wg         sync.WaitGroup
	closeOnce  sync.Once
	lifeMu     sync.Mutex // orders wg.Add after Close began against wg.Wait
	closing    bool
	redialing  atomic.Bool // a reconnect loop runs
	done       chan struct{}
}

// New returns a client for cfg; Subscribe before Connect so the first
// connection already carries every subscription.
func New(cfg Config, log *slog.Logger) *Client {
	if cfg.Queue == 0 {
		cfg.Queue = 4096
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = DefaultProbeInterval
	}
	c := &Client{cfg: cfg, log: log.With("component", "bus"), queue: make(chan message, cfg.Queue), done: make(chan struct{}),
		attempted: make(chan struct{}), probeNonce: strconv.FormatUint(rand.Uint64(), 36)}
	c.delivering.Store(true)
	return c
}

// Subscribe registers a handler for filter. It must be called before
// Connect: subscriptions are (re)made in OnConnect, since a clean session
// loses them on every reconnect [MQTT-3.1.2-6].
func (c *Client) Subscribe(filter string, qos byte, h Handler) {
	c.subs = append(c.subs, sub{filter, qos, h})
}

// Connect dials the broker and returns once connected (or ctx ends). Later
// connection losses are repaired in the background with jittered backoff.
func (c *Client) Connect(ctx context.Context) error {
	c.prepare()
	defer c.markAttempted()
	return c.dial(ctx)
}

// ConnectBackground prepares the client at once, so Publish and Connected
// may be called right away, and dials in the background until connected,
// ctx ends or Close. It returns a channel closed once the first connection
// is made, and one that receives the error that ended the dialling, if
// any (a refused login is not retried). Close waits for the dialler.
func (c *Client) ConnectBackground(ctx context.Context) (connected <-chan struct{}, failed <-chan error) {
	c.prepare()
	up, fail := make(chan struct{}), make(chan error, 1)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer c.markAttempted() // after the outcome is on its channel
		if err := c.dial(ctx); err != nil {
			fail <- err
			return
		}
		close(up)
	}()
	return up, fail
}

// Attempted is closed once the first connection attempt has an answer,
// so a caller can tell "the broker is down" from "not tried yet" without
// waiting out a timeout. When that answer ends ConnectBackground's dialling
// (connected, or a refused login), its channel is ready before Attempted
// closes.
func (c *Client) Attempted() <-chan struct{} { return c.attempted }

func (c *Client) markAttempted() { c.attemptOne.Do(func() { close(c.attempted) }) }

// prepare builds the paho client and starts the handler worker and the
// probe.
func (c *Client) prepare() {
	opts := mqtt.NewClientOptions().
		AddBroker(c.cfg.URL).
		SetClientID(c.cfg.ClientID).
		SetUsername(c.cfg.Username).
		SetPassword(c.cfg.Password).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetOrderMatters(false).
		SetWriteTimeout(5 * time.Second).
		SetConnectTimeout(5 * time.Second).
		SetKeepAlive(15 * time.Second).
		SetAutoReconnect(false). // reconnect() does it, see maxBackoff
		SetConnectRetry(false)
	if c.cfg.WillTopic != "" {
		opts.SetBinaryWill(c.cfg.WillTopic, c.cfg.WillPayload, 1, true)
	}
	opts.SetOnConnectHandler(func(pc mqtt.Client) {
		c.connected.Store(true)
		c.connErr.Store(nil)
		c.log.Info("connected", "broker", c.cfg.URL)
		c.subscribeAll(pc)
		c.report()
	})
	opts.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		c.connected.Store(false)
		c.setConnErr(fmt.Errorf("connection to %s lost: %w", c.cfg.URL, err))
		c.log.Warn("connection lost", "err", err)
		c.report()
		c.reconnect()
	})
	c.pc = mqtt.NewClient(opts)

	c.wg.Add(1)
	go c.work()
	if c.cfg.ProbeTopic != "" {
		c.wg.Add(1)
		go c.probe()
	}
}

// dial connects, retrying with capped, jittered backoff until ctx ends or
// Close. A refused login is not retried: it is a configuration error.
func (c *Client) dial(ctx context.Context) error {
	c.report()
	backoff := minBackoff
	for {
		if c.pc.IsConnectionOpen() {
			return nil // connected meanwhile (paho refuses a second CONNECT)
		}
		tok := c.pc.Connect()
		select {
		case <-tok.Done():
		case <-ctx.Done():
			return c.abandon(tok, ctx.Err())
		case <-c.done:
			return c.abandon(tok, ErrClosed)
		}
		if tok.Error() == nil {
			return nil
		}
		err := fmt.Errorf("connect %s: %w", c.cfg.URL, tok.Error())
		c.setConnErr(err)
		c.report()
		if isAuthError(tok.Error()) {
			return err
		}
		c.markAttempted() // the broker is unreachable: dialling goes on
		c.log.Warn("connect failed", "broker", c.cfg.URL, "err", tok.Error(), "retry_in", backoff)
		t := time.NewTimer(backoff*3/4 + time.Duration(rand.Int64N(int64(backoff/2))))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("connect %s: %w", c.cfg.URL, ctx.Err())
		case <-c.done:
			t.Stop()
			return fmt.Errorf("connect %s: %w", c.cfg.URL, ErrClosed)
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// abandon gives up a connection attempt still under way: it waits for
// paho to finish it (bounded by the connect timeout) and disconnects, so
// no connection outlives the caller's interest.
func (c *Client) abandon(tok mqtt.Token, cause error) error {
	if tok.WaitTimeout(6*time.Second) && tok.Error() == nil {
		c.pc.Disconnect(0)
	}
	return fmt.Errorf("connect %s: %w", c.cfg.URL, cause)
}

// reconnect dials again, in the background, after the connection was lost
// or dropped by the probe. One loop runs at a time; a loss that comes while
// it finishes starts it again.
func (c *Client) reconnect() {
	if !c.redialing.CompareAndSwap(false, true) {
		return
	}
	c.lifeMu.Lock()
	if c.closing {
		c.lifeMu.Unlock()
		c.redialing.Store(false)
		return
	}
	c.wg.Add(1)
	c.lifeMu.Unlock()
	go func() {
		defer c.wg.Done()
		for {
			err := c.dial(context.Background())
			c.redialing.Store(false)
			if err != nil {
				if !errors.Is(err, ErrClosed) {
					c.log.Error("reconnect abandoned", "err", err)
				}
				return
			}
			// Connected() would lag: OnConnect runs on its own goroutine.
			if c.pc.IsConnectionOpen() || !c.redialing.CompareAndSwap(false, true) {
				return
			}
		}
	}()
}

// setConnErr records why the client is not connected.
func (c *Client) setConnErr(err error) { c.connErr.Store(&err) }

// subscribeAll (re)makes every subscription on pc without waiting: it runs
// in paho's OnConnect, which must not block. Failures are logged; the probe
// notices what they cost.
func (c *Client) subscribeAll(pc mqtt.Client) {
	for _, s := range c.subs {
		s := s
		tok := pc.Subscribe(s.filter, s.qos, func(_ mqtt.Client, m mqtt.Message) { c.enqueue(s.handler, m) })
		c.logSubscribeError(s.filter, tok)
	}
	if c.cfg.ProbeTopic != "" {
		// Handled on paho's goroutine, not queued: a backlog of device
		// messages must not look like a deaf connection.
		// It goes last: once its SUBACK is in, the broker has processed
		// every SUBSCRIBE before it on this connection.
		tok := pc.Subscribe(c.cfg.ProbeTopic, 0, func(_ mqtt.Client, m mqtt.Message) { c.probeReceived(m.Payload()) })
		c.probeSub.Store(&tok)
		c.logSubscribeError(c.cfg.ProbeTopic, tok)
	}
}

// logSubscribeError logs a failed SUBSCRIBE once it completes, from a
// goroutine the client's wait group owns.
func (c *Client) logSubscribeError(filter string, tok mqtt.Token) {
	// paho may call OnConnect while Close waits: no new goroutine then.
	c.lifeMu.Lock()
	if c.closing {
		c.lifeMu.Unlock()
		return
	}
	c.wg.Add(1)
	c.lifeMu.Unlock()
	go func() {
		defer c.wg.Done()
		select {
		case <-tok.Done():
			if err := tok.Error(); err != nil {
				c.log.Error("subscribe failed", "filter", filter, "err", err)
			}
		case <-c.done:
		case <-time.After(10 * time.Second):
		}
	}()
}

// probeReceived records a probe that came back.
func (c *Client) probeReceived(payload []byte) {
	nonce, seqStr, ok := strings.Cut(string(payload), " ")
	if !ok || nonce != c.probeNonce {
		return
	}
	seq, err := strconv.ParseUint(seqStr, 10, 64)
	if err != nil {
		return
	}
	for {
		cur := c.probeSeen.Load()
		if seq <= cur || c.probeSeen.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// subscribed reports whether the latest subscriptions were acknowledged,
// so a probe sent now can only be lost by the broker, not by arriving
// before its own SUBSCRIBE.
func (c *Client) subscribed() bool {
	tok := c.probeSub.Load()
	if tok == nil {
		return false
	}
	select {
	case <-(*tok).Done():
		return true
	default:
		return false
	}
}

// reconnectDue reports whether the n-th lost probe in a row should make
// the client reconnect: the 2nd, 4th, 8th, 16th, then every 32nd, so a
// broker that refuses delivery for good is not hammered with connections.
func reconnectDue(n int) bool {
	return n >= 2 && (n&(n-1) == 0 || n%32 == 0)
}

// probe sends the client a message on ProbeTopic every ProbeInterval and
// checks at the next tick that it came back. The first lost probe makes it
// resubscribe (a broker that dropped the subscriptions) and probe again at
// once; the second in a row marks it not delivering (ErrNotDelivering) and
// makes it reconnect, as do later ones, with backoff (a broker that lost
// the client itself, as mochi did after a session takeover). One late probe
// on a loaded machine therefore costs a resubscription, not a health alarm,
// and a real loss is reported within three periods. The first probe that
// comes back clears the fault.
func (c *Client) probe() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.ProbeInterval)
	defer t.Stop()
	var seq, sent uint64
	failures := 0
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		if !c.Connected() {
			sent = 0 // reconnect() runs; OnConnect resubscribes
			continue
		}
		if !c.subscribed() {
			sent = 0 // probe only once the broker acknowledged the subscriptions
			continue
		}
		if sent != 0 {
			if c.probeSeen.Load() >= sent {
				if failures > 0 {
					c.log.Info("subscriptions deliver again", "after_failed_probes", failures)
				}
				failures = 0
				c.delivering.Store(true)
				c.strikes.Store(0)
				c.report()
			} else {
				failures++
				c.delivering.Store(false)
				c.strikes.Store(int32(min(failures, 1<<20)))
				c.report()
				switch {
				case failures == 1:
					c.log.Info("probe lost: resubscribing", "topic", c.cfg.ProbeTopic)
					c.resubs.Add(1)
					c.subscribeAll(c.pc)
					c.awaitSubscribed()
				case !reconnectDue(failures):
					c.log.Debug("probe lost", "failed_probes", failures)
				default:
					c.log.Warn("subscriptions not delivering: reconnecting", "failed_probes", failures)
					c.redials.Add(1)
					c.pc.Disconnect(100)
					c.connected.Store(false)
					c.report()
					c.reconnect()
					sent = 0
					continue
				}
			}
		}
		seq++
		tok := c.pc.Publish(c.cfg.ProbeTopic, 0, false, c.probeNonce+" "+strconv.FormatUint(seq, 10))
		select {
		case <-tok.Done():
		case <-c.done:
			return
		case <-t.C: // a write stuck for a whole period counts as lost
		}
		sent = seq
	}
}

// awaitSubscribed waits, at most half a probe period, for the broker to
// acknowledge the subscriptions just made, so the next probe cannot overtake
// them.
func (c *Client) awaitSubscribed() {
	deadline := time.NewTimer(c.cfg.ProbeInterval / 2)
	defer deadline.Stop()
	for !c.subscribed() {
		tok := c.probeSub.Load()
		if tok == nil {
			return
		}
		select {
		case <-(*tok).Done():
		case <-deadline.C:
			return
		case <-c.done:
			return
		}
	}
}

// health returns the client's state as OnHealth reports it.
func (c *Client) health() error {
	switch {
	case !c.Connected():
		if why := c.connErr.Load(); why != nil {
			return fmt.Errorf("%w: %v", ErrNotConnected, *why)
		}
		return ErrNotConnected
	case c.strikes.Load() >= 2:
		return ErrNotDelivering
	}
	return nil
}

// report calls OnHealth if the state changed since the last call.
func (c *Client) report() {
	if c.cfg.OnHealth == nil {
		return
	}
	c.stateMu.Lock()
	defer c.stateMu.Unlock()
	err := c.health()
	state := ""
	if err != nil {
		state = err.Error()
	}
	if c.stateSet && state == c.lastState {
		return
	}
	c.stateSet, c.lastState = true, state
	c.cfg.OnHealth(err)
}

func isAuthError(err error) bool {
	return errors.Is(err, packets.ErrorRefusedNotAuthorised) || errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword)
}

func (c *Client) enqueue(h Handler, m mqtt.Message) {
	select {
	case c.queue <- message{h, Message{m.Topic(), m.Payload(), time.Now()}}:
	default:
		c.dropped.Add(1)
	}
}

func (c *Client) work() {
	defer c.wg.Done()
	for {
		select {
		case m := <-c.queue:
			m.h(m.m)
		case <-c.done:
			return
		}
	}
}

// Publish sends one message, waiting for the broker's acknowledgement at
// QoS 1 (or the local write at QoS 0) until ctx ends.
func (c *Client) Publish(ctx context.Context, topic string, qos byte, retained bool, payload []byte) error {
	tok := c.pc.Publish(topic, qos, retained, payload)
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return fmt.Errorf("publish %s: %w", topic, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("publish %s: %w", topic, ctx.Err())
	}
}

// Connected reports whether the client is connected now.
func (c *Client) Connected() bool {
	return c.connected.Load() && c.pc != nil && c.pc.IsConnectionOpen()
}

// Dropped returns how many messages were dropped because handlers lagged.
func (c *Client) Dropped() uint64 { return c.dropped.Load() }

// Delivering reports whether the client is connected and its latest probe
// came back (always true while connected if there is no ProbeTopic).
func (c *Client) Delivering() bool { return c.Connected() && c.delivering.Load() }

// Recoveries returns how often the probe made the client resubscribe and
// how often it made it reconnect.
func (c *Client) Recoveries() (resubscribes, reconnects uint64) {
	return c.resubs.Load(), c.redials.Load()
}

// Close stops the handler worker and the probe, then disconnects cleanly.
// The probe stops first so that it cannot dial again after the disconnect.
// It is idempotent.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.lifeMu.Lock()
		c.closing = true
		c.lifeMu.Unlock()
		close(c.done)
		c.wg.Wait()
		if c.pc != nil {
			c.pc.Disconnect(250)
		}
	})
	return nil
}
