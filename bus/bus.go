// Package bus is loalangd's MQTT client (eclipse/paho.mqtt.golang): the same
// code path against the embedded broker, Mosquitto or a cluster. It handles
// the library's known pitfalls (DESIGN.md): subscriptions are renewed in
// OnConnect, handlers never block paho's router, writes time out,
// reconnects are jittered, and the protocol is MQTT 3.1.1.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
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
	// OnChange, if set, is told the connection state: nil once connected,
	// the reason whenever the client is not (before the first connection,
	// after a failed attempt, on a lost connection), so the owner can
	// report it. It runs on paho's and the dialler's goroutines and must
	// not block.
	OnChange func(err error)
}

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

	queue     chan message
	connected atomic.Bool
	dropped   atomic.Uint64
	wg        sync.WaitGroup
	closeOnce sync.Once
	done      chan struct{}
}

// Reconnect backoff. A broker that comes back (a restart, an outage at
// boot) is found again within about maxBackoff, whatever the outage's
// length: a village hall has one broker, and a 30 s back-off kept speakers
// silent long after it was back. Every wait is jittered.
const (
	minBackoff = 200 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// ErrNotConnected is the state reported to Config.OnChange before the
// first connection.
var ErrNotConnected = errors.New("not connected yet")

// ErrClosed ends a connection attempt interrupted by Close.
var ErrClosed = errors.New("client closed")

func (c *Client) changed(err error) {
	if c.cfg.OnChange != nil {
		c.cfg.OnChange(err)
	}
}

// New returns a client for cfg; Subscribe before Connect so the first
// connection already carries every subscription.
func New(cfg Config, log *slog.Logger) *Client {
	if cfg.Queue == 0 {
		cfg.Queue = 4096
	}
	return &Client{cfg: cfg, log: log.With("component", "bus"), queue: make(chan message, cfg.Queue), done: make(chan struct{})}
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
		if err := c.dial(ctx); err != nil {
			fail <- err
			return
		}
		close(up)
	}()
	return up, fail
}

// prepare builds the paho client and starts the handler worker.
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
		SetAutoReconnect(true).
		SetMaxReconnectInterval(maxBackoff).
		SetConnectRetry(false)
	// paho has no jitter of its own; a village of speakers reconnecting to
	// a restarted broker must not arrive in lockstep. The cap stays near
	// maxBackoff (see there).
	opts.SetReconnectingHandler(func(_ mqtt.Client, o *mqtt.ClientOptions) {
		o.MaxReconnectInterval = maxBackoff*3/4 + time.Duration(rand.Int64N(int64(maxBackoff/2)))
	})
	if c.cfg.WillTopic != "" {
		opts.SetBinaryWill(c.cfg.WillTopic, c.cfg.WillPayload, 1, true)
	}
	opts.SetOnConnectHandler(func(pc mqtt.Client) {
		c.connected.Store(true)
		c.changed(nil)
		c.log.Info("connected", "broker", c.cfg.URL)
		for _, s := range c.subs {
			s := s
			tok := pc.Subscribe(s.filter, s.qos, func(_ mqtt.Client, m mqtt.Message) { c.enqueue(s.handler, m) })
			go func() {
				if tok.WaitTimeout(10*time.Second) && tok.Error() != nil {
					c.log.Error("subscribe failed", "filter", s.filter, "err", tok.Error())
				}
			}()
		}
	})
	opts.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		c.connected.Store(false)
		c.changed(fmt.Errorf("connection to %s lost: %w", c.cfg.URL, err))
		c.log.Warn("connection lost", "err", err)
	})
	c.pc = mqtt.NewClient(opts)

	c.wg.Add(1)
	go c.work()
}

// dial connects, retrying with capped, jittered backoff until ctx ends.
func (c *Client) dial(ctx context.Context) error {
	c.changed(ErrNotConnected)
	backoff := minBackoff
	for {
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
		if isAuthError(tok.Error()) {
			err := fmt.Errorf("connect %s: %w", c.cfg.URL, tok.Error())
			c.changed(err)
			return err
		}
		c.changed(fmt.Errorf("connect %s: %w", c.cfg.URL, tok.Error()))
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

// Close disconnects cleanly and stops the handler worker. It is idempotent.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		if c.pc != nil {
			c.pc.Disconnect(250)
		}
		close(c.done)
		c.wg.Wait()
	})
	return nil
}
