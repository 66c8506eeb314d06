package harness

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/loalang/loalang/device/wire"
)

// PublishLead is how long before a frame's PlayAt the engine publishes it
// (docs/broadcast.md, "Streaming"): the reference instant of every latency.
const PublishLead = 20 * time.Millisecond

// Probe is a bare paho subscriber on zone topics. For every audio frame it
// records receipt time minus (PlayAt − PublishLead), read from the frame
// header (docs/protocol.md), and it counts the MQTT bytes it received.
type Probe struct {
	client mqtt.Client
	up     *upstream // nil unless the probe emulates a speaker's upstream

	mu      sync.Mutex
	lat     []float64 // ms
	sendLat []float64 // ms, from the send stamp in a baseline payload
	frames  int
	bytes   int64 // whole PUBLISH packets, MQTT 3.1.1 §3.3
	first   time.Time
	last    time.Time
}

// ProbeConfig describes one probe connection.
type ProbeConfig struct {
	Broker             string // tcp://host:port
	ClientID           string
	Username, Password string
	// Filters maps topic filters to subscribe to their QoS.
	Filters map[string]byte
	// SendStamp says the first 8 bytes of the first packet carry the sender's
	// Unix ns (baseline payloads).
	SendStamp bool
	// Upstream, when set, makes the probe publish what a speaker publishes
	// (status, heartbeats, clock requests, delivery reports) and subscribe
	// to its own cmd and time topics (baseline subscribers).
	Upstream *Upstream
}

// NewProbe connects and subscribes (in OnConnect, so a reconnect would
// resubscribe), waiting up to 20 s for both.
func NewProbe(cfg ProbeConfig) (*Probe, error) {
	p := &Probe{}
	filters := cfg.Filters
	if cfg.Upstream != nil {
		p.up = newUpstream(*cfg.Upstream)
		filters = p.up.filters(filters)
	}
	subscribed := make(chan error, 1)
	opts := mqtt.NewClientOptions().AddBroker(cfg.Broker).SetClientID(cfg.ClientID).
		SetUsername(cfg.Username).SetPassword(cfg.Password).SetProtocolVersion(4).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).
		SetKeepAlive(60 * time.Second).SetWriteTimeout(5 * time.Second).
		SetConnectTimeout(20 * time.Second)
	if p.up != nil {
		p.up.will(opts)
	}
	opts.SetOnConnectHandler(func(c mqtt.Client) {
		tok := c.SubscribeMultiple(filters, p.handler(cfg.SendStamp))
		var err error
		if !tok.WaitTimeout(20 * time.Second) {
			err = fmt.Errorf("subscribe: timeout")
		} else {
			err = tok.Error()
		}
		if err == nil && p.up != nil {
			p.up.start(c)
		}
		select {
		case subscribed <- err:
		default:
		}
	})
	p.client = mqtt.NewClient(opts)
	tok := p.client.Connect()
	if !tok.WaitTimeout(25 * time.Second) {
		return nil, fmt.Errorf("probe %s: connect timeout", cfg.ClientID)
	}
	if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("probe %s: connect: %w", cfg.ClientID, err)
	}
	select {
	case err := <-subscribed:
		if err != nil {
			p.Close()
			return nil, fmt.Errorf("probe %s: %w", cfg.ClientID, err)
		}
	case <-time.After(25 * time.Second):
		p.Close()
		return nil, fmt.Errorf("probe %s: subscribe timeout", cfg.ClientID)
	}
	return p, nil
}

// handler never blocks: it timestamps, parses 20 header bytes and appends.
func (p *Probe) handler(sendStamp bool) mqtt.MessageHandler {
	return func(_ mqtt.Client, m mqtt.Message) {
		now := time.Now()
		b := m.Payload()
		if p.up != nil {
			p.up.onMessage(m.Topic(), b)
		}
		size := wire.PublishSize(m.Topic(), m.Qos(), len(b))
		p.mu.Lock()
		defer p.mu.Unlock()
		p.bytes += int64(size)
		if !strings.HasSuffix(m.Topic(), "/audio") || len(b) < wire.FrameHeaderLen || binary.BigEndian.Uint16(b) != wire.FrameMagic {
			return
		}
		playAt := int64(binary.BigEndian.Uint64(b[12:]))
		pub := time.UnixMicro(playAt).Add(-PublishLead)
		p.lat = append(p.lat, float64(now.Sub(pub))/float64(time.Millisecond))
		if sendStamp && len(b) >= wire.FrameHeaderLen+2+8 {
			sent := int64(binary.BigEndian.Uint64(b[wire.FrameHeaderLen+2:]))
			p.sendLat = append(p.sendLat, float64(now.UnixNano()-sent)/1e6)
		}
		p.frames++
		if p.first.IsZero() {
			p.first = now
		}
		p.last = now
	}
}

// ProbeSample is what a probe gathered since its last Reset.
type ProbeSample struct {
	LatencyMS     []float64
	SendLatencyMS []float64
	Frames        int
	Bytes         int64
	// ClockReplies counts clock responses received (Upstream probes only).
	ClockReplies int
}

// Take returns the samples gathered since the last Take and resets them.
func (p *Probe) Take() ProbeSample {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := ProbeSample{LatencyMS: p.lat, SendLatencyMS: p.sendLat, Frames: p.frames, Bytes: p.bytes}
	p.lat, p.sendLat, p.frames, p.bytes = nil, nil, 0, 0
	p.first, p.last = time.Time{}, time.Time{}
	if p.up != nil {
		s.ClockReplies = p.up.takeReplies()
	}
	return s
}

// Close stops the upstream messages, if any, and disconnects.
func (p *Probe) Close() {
	if p.up != nil {
		p.up.close()
	}
	p.client.Disconnect(100)
}

// ConnectProbes opens probes in parallel (at most 16 connecting at once),
// closing all of them if one fails.
func ConnectProbes(cfgs []ProbeConfig) ([]*Probe, error) {
	out := make([]*Probe, len(cfgs))
	errs := make([]error, len(cfgs))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i, c := range cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			// Spread connects a little, as a real fleet would not SYN at once.
			time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
			out[i], errs[i] = NewProbe(c)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			CloseProbes(out)
			return nil, err
		}
	}
	return out, nil
}

// CloseProbes disconnects every non-nil probe.
func CloseProbes(ps []*Probe) {
	var wg sync.WaitGroup
	for _, p := range ps {
		if p != nil {
			wg.Add(1)
			go func() { defer wg.Done(); p.Close() }()
		}
	}
	wg.Wait()
}
