package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/mochi-mqtt/server/v2/system"

	"github.com/loalang/loalang/bench/fanout/harness"
	"github.com/loalang/loalang/device/wire"
)

// basePacketSize is the baseline's packet size when the clip's sizes are
// not given: 60 B, a 20 ms packet of 24 kbit/s Opus.
const basePacketSize = 60

// upstreamFilters are the device topics loalangd's own client subscribes
// to, with its QoS (daemon/daemon.go, subscribe): the baseline publisher
// subscribes to the same ones.
var upstreamFilters = map[string]byte{
	wire.SufStatus:    1,
	wire.SufHeartbeat: 0,
	wire.SufReply:     1,
	wire.SufClock:     0,
	wire.SufReport:    1,
}

// probeInterval is how often loalangd's client sends itself a message on
// ctl/probe (bus.DefaultProbeInterval); the baseline publisher does the same.
const probeInterval = 1500 * time.Millisecond

// runRawBroker is the baseline child: a bare mochi broker (allow-all, no
// ACL hook, default capabilities, $SYS every 10 minutes as loalangd's) on a
// loopback port and, in the same
// process as loalangd has its own paho client next to its broker, a bare
// paho publisher. The publisher subscribes to the speakers' upstream
// topics as loalangd does, answers every clock request on the device's
// time topic, and sends itself a probe message every 1.5 s.
//
// It prints "addr HOST:PORT", then for each stdin line
// "pub FRAMES PPF SIZES TOPICS" (SIZES: comma-separated packet sizes in
// bytes, cycled; TOPICS: comma-separated zone audio topics) publishes a
// stream start on each zone's stream topic, FRAMES frames of PPF packets to
// every audio topic at the engine's pace, and a stream stop, then prints
// "done PUBLISHED ERRORS IN OUT": IN and OUT are the PUBLISH messages the
// broker received and sent over that window (mochi's Info counters), -1
// when unknown. It exits on EOF.
//
// With external set (a broker URL, the -broker mosquitto baseline), it
// starts no broker and publishes to that one instead.
func runRawBroker(stdin io.Reader, stdout io.Writer, external string) error {
	if external != "" {
		return rawPublisher(stdin, stdout, external, nil)
	}
	s := mochi.New(&mochi.Options{
		InlineClient: false,
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		// As loalangd's broker (broker/embedded.go): $SYS refreshed every
		// 10 minutes, not every second, so that both brokers do the same
		// background work.
		SysTopicResendInterval: 600,
	})
	if err := s.AddHook(new(allowAll), nil); err != nil {
		return fmt.Errorf("add allow hook: %w", err)
	}
	l := listeners.NewTCP(listeners.Config{ID: "tcp", Address: "127.0.0.1:0"})
	if err := s.AddListener(l); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if err := s.Serve(); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer s.Close()
	return rawPublisher(stdin, stdout, "tcp://"+l.Address(), s.Info)
}

// rawPublisher is the baseline's bare paho publisher on broker url; info,
// when set, is the broker's counters.
func rawPublisher(stdin io.Reader, stdout io.Writer, url string, info *system.Info) error {
	addr := strings.TrimPrefix(url, "tcp://")
	topics := wire.MustTopics(site)
	opts := mqtt.NewClientOptions().AddBroker(url).SetClientID("raw-publisher").
		SetProtocolVersion(4).SetCleanSession(true).SetAutoReconnect(false).
		SetWriteTimeout(5 * time.Second).SetKeepAlive(60 * time.Second)
	pub := mqtt.NewClient(opts)
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return fmt.Errorf("publisher connect: %v", tok.Error())
	}
	defer pub.Disconnect(100)
	filters := map[string]byte{topics.ControllerProbe(): 0}
	for suf, qos := range upstreamFilters {
		filters[topics.DeviceAll(suf)] = qos
	}
	tok := pub.SubscribeMultiple(filters, func(c mqtt.Client, m mqtt.Message) {
		if strings.HasSuffix(m.Topic(), "/"+wire.SufClock) {
			answerClock(c, topics, m)
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return fmt.Errorf("publisher subscribe: %v", tok.Error())
	}
	stopProbe := make(chan struct{})
	defer close(stopProbe)
	go func() {
		t := time.NewTicker(probeInterval)
		defer t.Stop()
		for seq := 1; ; seq++ {
			select {
			case <-stopProbe:
				return
			case <-t.C:
				pub.Publish(topics.ControllerProbe(), 0, false, "0123456789abcdef "+strconv.Itoa(seq))
			}
		}
	}()
	fmt.Fprintf(stdout, "addr %s\n", addr)
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 64<<10), 16<<20) // a 10-minute clip has 30,000 sizes
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 5 || f[0] != "pub" {
			return fmt.Errorf("bad command %q", sc.Text())
		}
		frames, err := strconv.Atoi(f[1])
		if err != nil || frames <= 0 {
			return fmt.Errorf("bad frame count %q", f[1])
		}
		ppf, err := strconv.Atoi(f[2])
		if err != nil || ppf <= 0 || ppf > wire.MaxPacketsPerFrame {
			return fmt.Errorf("bad packets per frame %q", f[2])
		}
		var sizes []int
		for _, v := range strings.Split(f[3], ",") {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 || n > wire.MaxOpusPacket {
				return fmt.Errorf("bad packet size %q", v)
			}
			sizes = append(sizes, n)
		}
		in0, out0 := counts(info)
		sent, errs := publishStream(pub, topics, frames, ppf, sizes, strings.Split(f[4], ","))
		in1, out1 := counts(info)
		in, out := in1-in0, out1-out0
		if info == nil {
			in, out = -1, -1
		}
		fmt.Fprintf(stdout, "done %d %d %d %d\n", sent, errs, in, out)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read commands: %w", err)
	}
	return nil
}

// counts reads the broker's PUBLISH counters (0, 0 without a broker).
func counts(info *system.Info) (in, out int64) {
	if info == nil {
		return 0, 0
	}
	return atomic.LoadInt64(&info.MessagesReceived), atomic.LoadInt64(&info.MessagesSent)
}

// answerClock answers a clock request as loalangd does (daemon.answerClock):
// T2 when it arrived, T3 when the answer goes, QoS 0 on the device's time
// topic, waiting for the token up to 1 s.
func answerClock(c mqtt.Client, topics wire.Topics, m mqtt.Message) {
	t2 := time.Now().UnixMicro()
	id, _, ok := topics.ParseDevice(m.Topic())
	if !ok {
		return
	}
	req, err := wire.Decode[wire.ClockRequest](m.Payload())
	if err != nil {
		return
	}
	resp := wire.ClockResponse{Seq: req.Seq, T1: req.T1, T2: t2, T3: max(time.Now().UnixMicro(), t2)}
	payload, err := wire.Encode(resp)
	if err != nil {
		return
	}
	c.Publish(topics.Device(id, wire.SufTime), 0, false, payload).WaitTimeout(time.Second)
}

// publishStream sends, like the engine, a QoS 1 stream start on every
// zone's stream topic, then frames wire.Frames of ppf packets (sizes taken
// in turn from sizes) to every audio topic, frame k when the clock reaches
// t0 + k·ppf·20 ms (computed from t0, never by adding sleeps, as the engine
// does), with PlayAt = that instant + PublishLead and the actual send time
// in the first 8 bytes of packet 0, then a QoS 1 stop ("done").
func publishStream(c mqtt.Client, topics wire.Topics, frames, ppf int, sizes []int, audio []string) (sent, errs int) {
	interval := time.Duration(ppf) * wire.PacketMS * time.Millisecond
	var stream []string
	for _, t := range audio {
		if zone, _, ok := topics.ParseZone(t); ok {
			stream = append(stream, topics.ZoneStream(zone))
		}
	}
	const streamID = 1
	control := func(ctl wire.StreamControl) {
		b, err := wire.Encode(ctl)
		if err != nil {
			errs++
			return
		}
		for _, t := range stream {
			tok := c.Publish(t, 1, false, b)
			if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				errs++
			}
		}
	}
	t0 := time.Now()
	control(wire.StreamControl{Op: wire.StreamStart, StreamID: streamID, Codec: wire.CodecOpus, Priority: wire.PriorityNormal,
		Volume: 80, StartAt: t0.Add(harness.PublishLead).UnixMicro(), PlayoutDelayMS: 500, Packets: uint32(frames * ppf)})
	buf := make([]byte, wire.MaxOpusPacket)
	for i := range buf {
		buf[i] = byte(i*7 + 1)
	}
	pkts := make([][]byte, ppf)
	stamp := make([]byte, 8)
	for k := 0; k < frames; k++ {
		due := t0.Add(time.Duration(k) * interval)
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		for i := range pkts {
			n := sizes[(k*ppf+i)%len(sizes)]
			pkts[i] = buf[:n:n]
		}
		// The stamp goes in a copy of packet 0 (at least 8 bytes), so buf
		// stays the same for the other packets.
		binary.BigEndian.PutUint64(stamp, uint64(time.Now().UnixNano()))
		p0 := append(append(make([]byte, 0, max(8, len(pkts[0]))), stamp...), pkts[0][min(8, len(pkts[0])):]...)
		pkts[0] = p0
		f := wire.Frame{StreamID: streamID, Seq: uint32(k * ppf), DelayMS: 500,
			PlayAt: due.Add(harness.PublishLead).UnixMicro(), Packets: pkts}
		if k == frames-1 {
			f.Flags |= wire.FlagLast
		}
		payload, err := f.MarshalBinary()
		if err != nil {
			errs++
			continue
		}
		for _, t := range audio {
			tok := c.Publish(t, 0, false, payload)
			if !tok.WaitTimeout(250*time.Millisecond) || tok.Error() != nil {
				errs++
				continue
			}
			sent++
		}
	}
	control(wire.StreamControl{Op: wire.StreamStop, StreamID: streamID, Reason: "done"})
	return sent, errs
}

// allowAll admits every client and allows every topic, like mochi's
// auth.AllowHook (whose package would pull a YAML module into go.sum).
type allowAll struct{ mochi.HookBase }

func (h *allowAll) ID() string { return "allow-all" }

func (h *allowAll) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}

func (h *allowAll) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }

func (h *allowAll) OnACLCheck(*mochi.Client, string, bool) bool { return true }
