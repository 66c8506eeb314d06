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
		SetMaxReconnectInterval(30 * time.Second).
		SetConnectRetry(false)
	// paho has no jitter of its own; a village of speakers reconnecting to
	// a restarted broker must not arrive in lockstep.
	opts.SetReconnectingHandler(func(_ mqtt.Client, o *mqtt.ClientOptions) {
		o.MaxReconnectInterval = 20*time.Second + time.Duration(rand.Int64N(int64(10*time.Second)))
	})
	if c.cfg.WillTopic != "" {
		opts.SetBinaryWill(c.cfg.WillTopic, c.cfg.WillPayload, 1, true)
	}
	opts.SetOnConnectHandler(func(pc mqtt.Client) {
		c.connected.Store(true)
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
		c.log.Warn("connection lost", "err", err)
	})
	c.pc = mqtt.NewClient(opts)

	c.wg.Add(1)
	go c.work()

	backoff := 200 * time.Millisecond
	for {
		tok := c.pc.Connect()
		select {
		case <-tok.Done():
		case <-ctx.Done():
			return fmt.Errorf("connect %s: %w", c.cfg.URL, ctx.Err())
		}
		if tok.Error() == nil {
			return nil
		}
		if isAuthError(tok.Error()) {
			return fmt.Errorf("connect %s: %w", c.cfg.URL, tok.Error())
		}
		c.log.Warn("connect failed", "broker", c.cfg.URL, "err", tok.Error(), "retry_in", backoff)
		select {
		case <-time.After(backoff + time.Duration(rand.Int64N(int64(backoff/2)))):
		case <-ctx.Done():
			return fmt.Errorf("connect %s: %w", c.cfg.URL, ctx.Err())
		}
		backoff = min(backoff*2, 10*time.Second)
	}
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
