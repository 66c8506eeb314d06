package uplink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
)

// Config configures the uplink client.
type Config struct {
	// URL is the upstream broker (tcp://, mqtt://, ssl://, tls://, mqtts://),
	// or a comma-separated list of a cluster's nodes, tried in order.
	URL string
	// CAFile, when set, is the PEM bundle the broker's certificate must
	// chain to.
	CAFile   string
	Username string
	Password string
	ClientID string
	Topics   Topics
	Keys     Keys
	// MinBackoff and MaxBackoff bound the jittered exponential reconnect
	// wait; 0 means 1s and 60s. A province broker that restarts is not
	// stormed by a thousand villages at once.
	MinBackoff, MaxBackoff time.Duration
	// Window is how many events are in flight before their PUBACKs are
	// awaited; 0 means 64.
	Window int
	// AckTimeout bounds the wait for one PUBACK; 0 means 30s.
	AckTimeout time.Duration
	// Now is the clock for command times and events; nil is time.Now.
	Now func() time.Time
}

// Status is the uplink's state for GET /api/v1/uplink and the metrics.
type Status struct {
	Enabled   bool        `json:"enabled"`
	Connected bool        `json:"connected"`
	Broker    string      `json:"broker,omitempty"`
	Outbox    OutboxStats `json:"outbox"`
	// OldestPendingSeconds is the age of the oldest unsent event.
	OldestPendingSeconds float64        `json:"oldest_pending_seconds"`
	LastError            string         `json:"last_error,omitempty"`
	LastErrorAt          time.Time      `json:"last_error_at,omitzero"`
	Connects             uint64         `json:"connects"`
	Commands             map[string]int `json:"commands"`
}

// Client is the uplink: one MQTT connection upstream, the outbox sender
// and the command handler.
type Client struct {
	cfg    Config
	log    *slog.Logger
	outbox *Outbox
	cmds   *Commands
	tlsCfg *tls.Config

	connected atomic.Bool
	connects  atomic.Uint64
	mu        sync.Mutex
	lastErr   string
	lastErrAt time.Time
	pc        mqtt.Client // the current connection, nil while down

	// extra are further subscriptions (camera requests), set before Run.
	extra map[string]func(ctx context.Context, payload []byte)
}

// Subscribe adds a QoS 1 subscription made on every connection, whose
// messages go to fn (which must not block: paho delivers in order on one
// goroutine). Call it before Run.
func (c *Client) Subscribe(topic string, fn func(ctx context.Context, payload []byte)) {
	if c.extra == nil {
		c.extra = map[string]func(context.Context, []byte){}
	}
	c.extra[topic] = fn
}

// Publish sends payload on topic at QoS 1 over the current connection and
// waits for the broker's PUBACK; it fails at once while the uplink is down.
func (c *Client) Publish(ctx context.Context, topic string, payload []byte) error {
	c.mu.Lock()
	pc := c.pc
	c.mu.Unlock()
	if pc == nil {
		return errors.New("uplink publish: not connected")
	}
	if err := wait(ctx, pc.Publish(topic, 1, false, payload), c.cfg.AckTimeout); err != nil {
		return fmt.Errorf("uplink publish %s: %w", topic, err)
	}
	return nil
}

// New returns a client; Run connects it.
func New(cfg Config, outbox *Outbox, cmds *Commands, log *slog.Logger) (*Client, error) {
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 60 * time.Second
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = cfg.MinBackoff
	}
	if cfg.Window <= 0 {
		cfg.Window = 64
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Client{cfg: cfg, log: log.With("component", "uplink"), outbox: outbox, cmds: cmds}
	u, err := url.Parse(strings.TrimSpace(strings.Split(cfg.URL, ",")[0]))
	if err != nil {
		return nil, fmt.Errorf("uplink url: %w", err)
	}
	switch u.Scheme {
	case "ssl", "tls", "mqtts":
		c.tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: u.Hostname()}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("uplink ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("uplink ca_file %s: no PEM certificate", cfg.CAFile)
			}
			c.tlsCfg.RootCAs = pool
		}
	}
	return c, nil
}

// Run connects and reconnects until ctx ends, sending the outbox while
// connected. Cancellation is not an error.
func (c *Client) Run(ctx context.Context) error {
	fails := 0
	for ctx.Err() == nil {
		pc, lost, err := c.dial(ctx)
		if err != nil {
			c.setErr(err)
			if fails == 0 || fails%10 == 0 {
				c.log.Warn("uplink connect failed", "attempt", fails+1, "err", err)
			}
			fails++
			if !sleep(ctx, backoff(fails, c.cfg.MinBackoff, c.cfg.MaxBackoff)) {
				return nil
			}
			continue
		}
		fails = 0
		c.connects.Add(1)
		c.setPC(pc)
		c.connected.Store(true)
		c.log.Info("uplink connected", "broker", c.cfg.URL)
		err = c.drain(ctx, pc, lost)
		c.connected.Store(false)
		c.setPC(nil)
		if ctx.Err() != nil {
			// A clean DISCONNECT discards the will (MQTT 3.1.1 §3.14.4),
			// so the stop is said explicitly: the commune shows the
			// village offline (docs/commune.md).
			pc.Publish(c.cfg.Topics.Presence(), 1, false, []byte("offline")).WaitTimeout(2 * time.Second)
			pc.Disconnect(250)
			return nil
		}
		c.setErr(err)
		c.log.Warn("uplink lost", "err", err)
		pc.Disconnect(0)
		fails++
		if !sleep(ctx, backoff(fails, c.cfg.MinBackoff, c.cfg.MaxBackoff)) {
			return nil
		}
	}
	return nil
}

// backoff is the wait before attempt n+1: exponential from min, capped at
// max, with full jitter over its upper half.
func backoff(n int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// dial opens one connection with a persistent session (clean session 0,
// MQTT 3.1.1 §3.1.2.4), so QoS 1 commands published while the line was
// down are delivered on return, and subscribes to the command topics.
func (c *Client) dial(ctx context.Context) (mqtt.Client, <-chan error, error) {
	lost := make(chan error, 1)
	t := c.cfg.Topics
	opts := mqtt.NewClientOptions()
	for _, u := range strings.Split(c.cfg.URL, ",") {
		opts.AddBroker(strings.TrimSpace(u))
	}
	// MQTT 3.1.1 stated explicitly: otherwise paho, after a CONNECT to
	// the first node of the list fails, retries it as MQTT 3.1 and keeps
	// 3.1 for the following nodes, which a broker without 3.1 (NATS)
	// closes, so a village could not fail over (found by bench/uplink).
	opts.SetProtocolVersion(4).SetClientID(c.cfg.ClientID).
		SetUsername(c.cfg.Username).SetPassword(c.cfg.Password).
		SetCleanSession(false).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(10*time.Second).SetKeepAlive(30*time.Second).SetWriteTimeout(10*time.Second).
		SetBinaryWill(t.Presence(), []byte("offline"), 1, false).
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) { c.onCommand(ctx, m) }).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			select {
			case lost <- err:
			default:
			}
		})
	if c.tlsCfg != nil {
		opts.SetTLSConfig(c.tlsCfg)
	}
	pc := mqtt.NewClient(opts)
	tok := pc.Connect()
	if err := wait(ctx, tok, 15*time.Second); err != nil {
		pc.Disconnect(0)
		return nil, nil, fmt.Errorf("uplink connect %s: %w", redactURL(c.cfg.URL), c.explain(err))
	}
	filters := map[string]byte{}
	for _, f := range t.CommandTopics() {
		filters[f] = 1
	}
	if err := wait(ctx, pc.SubscribeMultiple(filters, func(_ mqtt.Client, m mqtt.Message) { c.onCommand(ctx, m) }), 15*time.Second); err != nil {
		pc.Disconnect(0)
		return nil, nil, fmt.Errorf("uplink subscribe: %w", err)
	}
	if c.cmds != nil && c.cmds.cfg.Live != nil {
		// Live chunks at QoS 0 (docs/protocol.md, "Live speech"): a late
		// retransmission is useless audio. Deliver drops unknown sessions
		// before verifying, so this callback stays cheap.
		live := c.cmds.cfg.Live
		if err := wait(ctx, pc.Subscribe(t.LiveFilter(), 0, func(_ mqtt.Client, m mqtt.Message) { live.Deliver(m.Topic(), m.Payload()) }), 15*time.Second); err != nil {
			pc.Disconnect(0)
			return nil, nil, fmt.Errorf("uplink subscribe %s: %w", t.LiveFilter(), err)
		}
	}
	for topic, fn := range c.extra {
		if err := wait(ctx, pc.Subscribe(topic, 1, func(_ mqtt.Client, m mqtt.Message) { fn(ctx, m.Payload()) }), 15*time.Second); err != nil {
			pc.Disconnect(0)
			return nil, nil, fmt.Errorf("uplink subscribe %s: %w", topic, err)
		}
	}
	if st, ok := pc.(interface{ IsConnectionOpen() bool }); ok && !st.IsConnectionOpen() {
		pc.Disconnect(0)
		return nil, nil, errors.New("uplink: connection closed after subscribe")
	}
	// Presence is informational; nothing depends on it being retained.
	pc.Publish(t.Presence(), 1, false, []byte("online"))
	return pc, lost, nil
}

// explain adds to a refused CONNECT (its CONNACK return code, MQTT 3.1.1
// §3.2.2.3) which of the village's settings the broker turned down; paho's
// own text ("not Authorized") does not say.
func (c *Client) explain(err error) error {
	switch {
	case errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword), errors.Is(err, packets.ErrorRefusedNotAuthorised):
		return fmt.Errorf("the broker refused the credentials (uplink.username %q, uplink.password_file): %w", c.cfg.Username, err)
	case errors.Is(err, packets.ErrorRefusedIDRejected):
		return fmt.Errorf("the broker rejected the client id (uplink.client_id %q): %w", c.cfg.ClientID, err)
	}
	var verr *tls.CertificateVerificationError
	if errors.As(err, &verr) || strings.Contains(err.Error(), "x509: ") {
		// paho flattens the TLS error into its text.
		return fmt.Errorf("the broker's certificate is not trusted (uplink.ca_file %q): %w", c.cfg.CAFile, err)
	}
	return err
}

func (c *Client) onCommand(ctx context.Context, m mqtt.Message) {
	// A persistent session may deliver a queued message before its
	// subscription's route is registered again: route it by topic here.
	if fn := c.extra[m.Topic()]; fn != nil {
		fn(ctx, m.Payload())
		return
	}
	if c.cmds == nil {
		return
	}
	c.cmds.Enqueue(ctx, m.Payload())
}

// wait waits for tok within d or ctx.
func wait(ctx context.Context, tok mqtt.Token, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errors.New("timed out")
	}
}

// drain sends the outbox in order while the connection lasts. Up to
// Window events are published back to back; their PUBACKs are awaited in
// order and only the acknowledged prefix is removed. On any failure the
// rest is sent again on the next connection, so an event may arrive
// twice (receivers de-duplicate by id) but never out of order: a broken
// TCP connection loses a suffix of the stream, never a middle.
func (c *Client) drain(ctx context.Context, pc mqtt.Client, lost <-chan error) error {
	topic := c.cfg.Topics.Events()
	for {
		batch, err := c.outbox.Peek(c.cfg.Window)
		if err != nil {
			return err
		}
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				return nil
			case err := <-lost:
				return fmt.Errorf("connection lost: %w", err)
			case <-c.outbox.Notify():
			}
			continue
		}
		toks := make([]mqtt.Token, len(batch))
		for i, e := range batch {
			toks[i] = pc.Publish(topic, 1, false, []byte(e.Data))
		}
		var acked []uint64
		var failed error
		for i, tok := range toks {
			if err := wait(ctx, tok, c.cfg.AckTimeout); err != nil {
				failed = fmt.Errorf("publish event %d: %w", batch[i].Seq, err)
				break
			}
			acked = append(acked, batch[i].Seq)
		}
		if err := c.outbox.Ack(acked); err != nil {
			return err
		}
		if failed != nil {
			return failed
		}
		select {
		case err := <-lost:
			return fmt.Errorf("connection lost: %w", err)
		default:
		}
	}
}

func (c *Client) setPC(pc mqtt.Client) {
	c.mu.Lock()
	c.pc = pc
	c.mu.Unlock()
}

func (c *Client) setErr(err error) {
	if err == nil {
		return
	}
	c.mu.Lock()
	c.lastErr = err.Error()
	c.lastErrAt = c.cfg.Now()
	c.mu.Unlock()
}

// Connected reports whether the upstream connection is open.
func (c *Client) Connected() bool { return c.connected.Load() }

// Status returns the uplink's state.
func (c *Client) Status() Status {
	s := Status{Enabled: true, Connected: c.Connected(), Broker: redactURL(c.cfg.URL), Outbox: c.outbox.Stats(), Connects: c.connects.Load()}
	if !s.Outbox.Oldest.IsZero() {
		s.OldestPendingSeconds = max(c.cfg.Now().Sub(s.Outbox.Oldest).Seconds(), 0)
	}
	c.mu.Lock()
	s.LastError, s.LastErrorAt = c.lastErr, c.lastErrAt
	c.mu.Unlock()
	if c.cmds != nil {
		s.Commands = c.cmds.Seen()
	}
	return s
}

// redactURL drops any userinfo from a broker URL or list.
func redactURL(raw string) string {
	var out []string
	for _, one := range strings.Split(raw, ",") {
		u, err := url.Parse(strings.TrimSpace(one))
		if err != nil {
			out = append(out, "(invalid url)")
			continue
		}
		u.User = nil
		out = append(out, u.String())
	}
	return strings.Join(out, ",")
}
