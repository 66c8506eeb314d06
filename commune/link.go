package commune

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/uplink"
)

// link is the commune's connection to its Mosquitto: MQTT 3.1.1, clean
// session 0 (§3.1.2.4) so the broker queues the villages' QoS 1 events
// while the commune is down, subscriptions at QoS 1 to every village's
// events and presence, QoS 1 publishes of signed commands and QoS 0
// publishes of live chunks.
type link struct {
	connected atomic.Bool
	mu        sync.Mutex
	pc        mqtt.Client
	lastErr   string
	extra     map[string]byte // filters added with Server.Subscribe
}

func (s *Server) eventsFilter() string {
	return "loalang/" + uplink.Version + "/" + s.cfg.Commune.Province + "/" + s.cfg.Commune.ID + "/+/events"
}

func (s *Server) presenceFilter() string {
	return "loalang/" + uplink.Version + "/" + s.cfg.Commune.Province + "/" + s.cfg.Commune.ID + "/+/presence"
}

// siteOf returns the <site> level of a village topic.
func siteOf(topic string) string {
	parts := strings.Split(topic, "/")
	if len(parts) < 6 {
		return ""
	}
	return parts[4]
}

// startMQTT reads the broker password and starts the connection loop.
func (s *Server) startMQTT() error {
	c := s.cfg.Commune
	var pw string
	if c.PasswordFile != "" {
		raw, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return fmt.Errorf("commune.password_file: %w", err)
		}
		pw = strings.TrimSpace(string(raw))
	}
	opts := mqtt.NewClientOptions().AddBroker(c.MQTTURL).
		SetProtocolVersion(4).SetClientID(c.ClientID).SetUsername(c.Username).SetPassword(pw).
		SetCleanSession(false).SetOrderMatters(true).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(2 * time.Second).SetMaxReconnectInterval(30 * time.Second).
		SetConnectTimeout(10 * time.Second).SetKeepAlive(30 * time.Second).SetWriteTimeout(10 * time.Second)
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return fmt.Errorf("commune.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("commune.ca_file %s: no PEM certificate", c.CAFile)
		}
		opts.SetTLSConfig(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	}
	l := &link{extra: map[string]byte{}}
	s.mqtt = l
	// The handlers are registered before the connection so that the
	// session's queued messages, delivered right after CONNACK, are
	// routed (paho's router matches them by filter).
	opts.SetOnConnectHandler(func(pc mqtt.Client) {
		filters := map[string]byte{s.eventsFilter(): 1, s.presenceFilter(): 1}
		l.mu.Lock()
		for f, q := range l.extra {
			filters[f] = q
		}
		l.mu.Unlock()
		tok := pc.SubscribeMultiple(filters, nil)
		if !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
			s.setLinkErr(fmt.Errorf("subscribe: %v", tok.Error()))
			return
		}
		l.connected.Store(true)
		s.health.Set("commune-broker", nil)
		s.log.Info("commune broker connected", "broker", c.MQTTURL)
		s.kickResend()
	}).SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		l.connected.Store(false)
		s.setLinkErr(err)
		s.health.Set("commune-broker", fmt.Errorf("lost %s: %v", c.MQTTURL, err))
	}).SetReconnectingHandler(func(mqtt.Client, *mqtt.ClientOptions) {
		s.health.Set("commune-broker", fmt.Errorf("not connected to %s: village events and commands wait (last error: %s)", c.MQTTURL, s.linkErr()))
	})
	pc := mqtt.NewClient(opts)
	pc.AddRoute(s.eventsFilter(), func(_ mqtt.Client, m mqtt.Message) { s.onEvent(siteOf(m.Topic()), m.Payload()) })
	pc.AddRoute(s.presenceFilter(), func(_ mqtt.Client, m mqtt.Message) { s.onPresence(siteOf(m.Topic()), string(m.Payload())) })
	l.pc = pc
	s.health.Set("commune-broker", fmt.Errorf("connecting to %s", c.MQTTURL))
	connecting := pc.Connect() // retried in the background (SetConnectRetry)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.resendLoop(s.ctx)
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(time.Hour)
		defer t.Stop()
		for {
			s.prune()
			select {
			case <-s.ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-s.ctx.Done()
		l.connected.Store(false)
		pc.Disconnect(250)
		// A Disconnect during paho's connect retries ends them only after
		// the current retry interval: wait for that, so that Close leaves
		// no goroutine behind.
		connecting.WaitTimeout(5 * time.Second)
	}()
	return nil
}

func (s *Server) linkErr() string {
	s.mqtt.mu.Lock()
	defer s.mqtt.mu.Unlock()
	if s.mqtt.lastErr == "" {
		return "none"
	}
	return s.mqtt.lastErr
}

func (s *Server) setLinkErr(err error) {
	if err == nil {
		return
	}
	s.mqtt.mu.Lock()
	s.mqtt.lastErr = err.Error()
	s.mqtt.mu.Unlock()
	s.log.Warn("commune broker", "err", err)
}

// publish sends one command envelope at QoS 1 to topic and waits for the
// broker's PUBACK.
func (s *Server) publish(ctx context.Context, topic string, payload []byte) error {
	return s.publishQoS(ctx, topic, 1, payload, 30*time.Second)
}

// publishLive sends one live chunk at QoS 0 (MQTT 3.1.1 §4.3.1, at most
// once): a retransmitted chunk would arrive too late to play, so it waits
// only for paho to write it, at most a second.
func (s *Server) publishLive(ctx context.Context, topic string, payload []byte) error {
	return s.publishQoS(ctx, topic, 0, payload, time.Second)
}

// publishQoS publishes payload, not retained, and waits up to wait for
// paho's token: the PUBACK at QoS 1, the write at QoS 0.
func (s *Server) publishQoS(ctx context.Context, topic string, qos byte, payload []byte, wait time.Duration) error {
	if !s.mqtt.connected.Load() {
		return errNotConnected
	}
	tok := s.mqtt.pc.Publish(topic, qos, false, payload)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("QoS %d publish not done within %s", qos, wait)
	}
}

var errNotConnected = errors.New("not connected to the commune broker")

// Publish sends payload to topic at QoS 1 on the commune's broker
// connection and waits for the PUBACK; it fails at once while the broker
// is unreachable. For packages mounted on the server (docs/commune.md, "Extending the commune server").
func (s *Server) Publish(ctx context.Context, topic string, payload []byte) error {
	return s.publish(ctx, topic, payload)
}

// Subscribe routes messages matching filter (an MQTT 3.1.1 §4.7 filter)
// to h, on the commune's broker connection, at QoS qos, now and after
// every reconnection. h runs on paho's goroutine, in order: it must not
// block. For packages mounted on the server (docs/commune.md, "Extending the commune server").
func (s *Server) Subscribe(filter string, qos byte, h func(topic string, payload []byte)) error {
	l := s.mqtt
	l.pc.AddRoute(filter, func(_ mqtt.Client, m mqtt.Message) { h(m.Topic(), m.Payload()) })
	l.mu.Lock()
	l.extra[filter] = qos
	l.mu.Unlock()
	// Not yet connected: the connect handler, which runs after paho marks
	// the connection open, reads extra and subscribes it. Open: subscribe
	// here, even while that handler may still be waiting for its own
	// SUBACK without this filter; a second SUBSCRIBE of a filter only
	// replaces the first (MQTT 3.1.1 §3.8.4).
	if !l.pc.IsConnectionOpen() {
		return nil
	}
	tok := l.pc.Subscribe(filter, qos, nil)
	if !tok.WaitTimeout(15 * time.Second) {
		return errors.New("subscribe: no SUBACK within 15s")
	}
	return tok.Error()
}

// Connected reports whether the commune's broker connection is up.
func (s *Server) Connected() bool { return s.mqtt.connected.Load() }

// Config is the server's configuration (read-only).
func (s *Server) Config() config.Config { return s.cfg }
