package speaker

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net"
	"net/url"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/loalang/loalang/device/wire"
)

// Connection timing.
const (
	connectTimeout = 5 * time.Second
	writeTimeout   = 5 * time.Second
	keepAlive      = 30 * time.Second
	subTimeout     = 5 * time.Second
	// backoffMin and backoffMax bound the reconnect backoff; every wait is
	// drawn uniformly from [d/2, d] so that a village of speakers that lost
	// the broker together does not come back in lockstep.
	backoffMin = 250 * time.Millisecond
	backoffMax = 30 * time.Second
	// replyFlush is how long a reboot waits for its reply to leave.
	replyFlush = 2 * time.Second
)

var errConnLost = errors.New("connection lost")

// connLoop owns the MQTT session: it connects, waits for the connection to
// end, and reconnects with jittered exponential backoff until ctx is done.
// paho's own reconnect is off (it has no jitter, and a fresh client per
// session keeps the dialled net.Conn ours to Drop).
func (s *Speaker) connLoop(ctx context.Context) {
	rng := rand.New(rand.NewSource(s.cfg.Seed + 2))
	backoff := backoffMin
	for {
		for !s.online.Load() {
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
			}
		}
		err := s.session(ctx)
		if ctx.Err() != nil {
			return
		}
		var wait time.Duration
		switch {
		case errors.Is(err, errConnLost):
			backoff = backoffMin
			wait = jitter(rng, backoffMin)
		case errors.Is(err, errRebooting):
			// A reboot takes RebootDelay plus up to a quarter more: boot
			// times vary, and the speaker is off the network throughout.
			backoff = backoffMin
			wait = s.cfg.RebootDelay + time.Duration(rng.Int63n(int64(s.cfg.RebootDelay/4)+1))
			s.bootNS.Store(time.Now().Add(wait).UnixNano())
		default:
			s.log.Warn("connect failed", "err", err, "retry_in", backoff)
			wait = jitter(rng, backoff)
			backoff = min(2*backoff, backoffMax)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-s.wake:
			t.Stop()
		}
	}
}

// jitter draws a wait uniformly from [d/2, d].
func jitter(rng *rand.Rand, d time.Duration) time.Duration {
	return d/2 + time.Duration(rng.Int63n(int64(d/2)+1))
}

var errRebooting = errors.New("rebooting")

// session runs one MQTT connection from CONNECT to its end.
func (s *Speaker) session(ctx context.Context) error {
	statusTopic := s.topics.Device(s.cfg.ID, wire.SufStatus)
	will, err := wire.Encode(wire.Status{State: wire.StateOffline, Kind: wire.KindSpeaker, Firmware: s.cfg.Firmware})
	if err != nil {
		return err
	}
	lost := make(chan error, 1)
	opts := mqtt.NewClientOptions().
		AddBroker(s.cfg.Broker).
		SetClientID(s.cfg.ID).
		SetUsername(s.cfg.Username).
		SetPassword(s.cfg.Password).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(connectTimeout).
		SetWriteTimeout(writeTimeout).
		SetKeepAlive(keepAlive).
		SetOrderMatters(true).
		// [MQTT-3.1.2-8]: the broker publishes the will if the network
		// connection closes without a DISCONNECT, e.g. after Drop.
		SetBinaryWill(statusTopic, will, 1, true).
		SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
			return s.dial(ctx, u)
		}).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			select {
			case lost <- err:
			default:
			}
		}).
		SetOnConnectHandler(s.onConnect)
	client := mqtt.NewClient(opts)
	s.connMu.Lock()
	s.client = client
	s.connMu.Unlock()
	defer func() {
		s.connMu.Lock()
		s.client, s.conn, s.subscribed = nil, nil, false
		s.connMu.Unlock()
	}()

	tok := client.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		client.Disconnect(0)
		return ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return fmt.Errorf("connect %s: %w", s.cfg.Broker, err)
	}
	s.log.Info("connected", "broker", s.cfg.Broker)
	if !s.online.Load() {
		s.Drop() // SetOnline(false) raced with the connect
	}

	select {
	case <-ctx.Done():
		// A clean shutdown: say so, then DISCONNECT, which discards the will
		// ([MQTT-3.1.2-10]).
		off, _ := wire.Encode(wire.Status{State: wire.StateOffline, Kind: wire.KindSpeaker,
			Firmware: s.cfg.Firmware, TS: time.Now().UnixMilli()})
		client.Publish(statusTopic, 1, true, off).WaitTimeout(time.Second)
		client.Disconnect(250)
		s.log.Info("disconnected")
		return nil
	case err := <-lost:
		s.log.Info("connection lost", "err", err)
		return fmt.Errorf("%w: %v", errConnLost, err)
	case tok := <-s.reboot:
		tok.WaitTimeout(replyFlush)
		s.log.Info("rebooting", "delay", s.cfg.RebootDelay)
		s.Drop()
		select {
		case <-lost:
		case <-time.After(connectTimeout):
		}
		return errRebooting
	}
}

// dial opens the TCP connection for paho and keeps it so that Drop can
// close it abruptly.
func (s *Speaker) dial(ctx context.Context, u *url.URL) (net.Conn, error) {
	switch u.Scheme {
	case "tcp", "mqtt":
	default:
		return nil, fmt.Errorf("%w: %q", ErrScheme, u.Scheme)
	}
	d := net.Dialer{Timeout: connectTimeout, KeepAlive: keepAlive}
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", u.Host, err)
	}
	dc := &dropConn{Conn: conn}
	s.connMu.Lock()
	s.conn = dc
	s.connMu.Unlock()
	return dc, nil
}

// errDropped is what reads and writes return after Drop.
var errDropped = errors.New("connection dropped (simulated link failure)")

// dropConn lets Drop close the socket in a way paho notices. paho treats
// "use of closed network connection" as its own orderly close and would
// neither report the loss nor stop; a distinct error makes it run its
// connection-lost path, as a peer reset would.
type dropConn struct {
	net.Conn
	dropped atomic.Bool
}

func (c *dropConn) drop() error {
	c.dropped.Store(true)
	return c.Conn.Close()
}

func (c *dropConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && c.dropped.Load() {
		err = errDropped
	}
	return n, err
}

func (c *dropConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err != nil && c.dropped.Load() {
		err = errDropped
	}
	return n, err
}

// onConnect subscribes and announces presence. paho runs it on its own
// goroutine, so waiting for the SUBACKs here blocks no message delivery.
// With CleanSession the broker forgets subscriptions on every disconnect
// ([MQTT-3.1.2-6]), so they are made again on every connection.
func (s *Speaker) onConnect(c mqtt.Client) {
	filters := map[string]byte{
		s.topics.Device(s.cfg.ID, wire.SufCmd):  1,
		s.topics.Device(s.cfg.ID, wire.SufTime): 0,
	}
	for _, z := range s.cfg.Zones {
		filters[s.topics.ZoneStream(z)] = 1
		filters[s.topics.ZoneAudio(z)] = 0
	}
	for f, qos := range filters {
		kind, zone := s.kindOf(f)
		tok := c.Subscribe(f, qos, s.handler(kind, zone))
		if !tok.WaitTimeout(subTimeout) || tok.Error() != nil {
			s.log.Warn("subscribe failed", "topic", f, "err", tok.Error())
			s.Drop() // reconnect and try again rather than sit deaf
			return
		}
	}
	online, _ := wire.Encode(wire.Status{State: wire.StateOnline, Kind: wire.KindSpeaker,
		Firmware: s.cfg.Firmware, TS: time.Now().UnixMilli()})
	c.Publish(s.topics.Device(s.cfg.ID, wire.SufStatus), 1, true, online)
	s.connMu.Lock()
	if s.client == c {
		s.subscribed = true
	}
	s.connMu.Unlock()
	select {
	case s.connected <- struct{}{}:
	default:
	}
}

func (s *Speaker) kindOf(filter string) (msgKind, string) {
	if zone, kind, ok := s.topics.ParseZone(filter); ok {
		if kind == "audio" {
			return kindAudio, zone
		}
		return kindStream, zone
	}
	if _, suf, ok := s.topics.ParseDevice(filter); ok && suf == wire.SufTime {
		return kindTime, ""
	}
	return kindCmd, ""
}

// handler returns a message handler that only timestamps the message and
// queues it for the run loop: paho delivers messages from one goroutine, and
// a handler that blocks stalls the whole connection.
func (s *Speaker) handler(kind msgKind, zone string) mqtt.MessageHandler {
	return func(_ mqtt.Client, m mqtt.Message) {
		select {
		case s.inbox <- inMsg{kind: kind, zone: zone, payload: m.Payload(), recv: time.Now()}:
		default:
			s.overflow.Add(1)
		}
	}
}

// publish sends a message on the current connection without waiting. It
// returns nil when there is none.
func (s *Speaker) publish(topic string, qos byte, retained bool, v any) mqtt.Token {
	b, err := wire.Encode(v)
	if err != nil {
		s.log.Error("encode", "err", err)
		return nil
	}
	s.connMu.Lock()
	c, ok := s.client, s.subscribed
	s.connMu.Unlock()
	if c == nil || !ok {
		return nil
	}
	return c.Publish(topic, qos, retained, b)
}
