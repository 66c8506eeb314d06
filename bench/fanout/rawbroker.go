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
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/loalang/loalang/device/wire"
)

// Baseline payload shape: the engine's frames at 24 kbit/s, 3 packets of
// 60 B (docs/broadcast.md, "Bandwidth").
const (
	basePackets    = 3
	basePacketSize = 60
	frameInterval  = basePackets * wire.PacketMS * time.Millisecond
)

// runRawBroker is the baseline child: a bare mochi broker (allow-all, no
// ACL hook, default capabilities) on a loopback port and, in the same
// process as loalangd has its own paho client next to its broker, a bare
// paho publisher. It prints "addr HOST:PORT", then for each stdin line
// "pub FRAMES TOPIC[,TOPIC...]" publishes FRAMES frames to every topic at
// the engine's pace and prints "done PUBLISHED ERRORS". It exits on EOF.
//
// With external set (a broker URL, the -broker mosquitto baseline), it
// starts no broker and publishes to that one instead.
func runRawBroker(stdin io.Reader, stdout io.Writer, external string) error {
	if external != "" {
		return rawPublisher(stdin, stdout, external)
	}
	s := mochi.New(&mochi.Options{
		InlineClient: false,
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
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
	return rawPublisher(stdin, stdout, "tcp://"+l.Address())
}

// rawPublisher is the baseline's bare paho publisher on broker url.
func rawPublisher(stdin io.Reader, stdout io.Writer, url string) error {
	addr := strings.TrimPrefix(url, "tcp://")
	opts := mqtt.NewClientOptions().AddBroker(url).SetClientID("raw-publisher").
		SetProtocolVersion(4).SetCleanSession(true).SetAutoReconnect(false).
		SetWriteTimeout(5 * time.Second).SetKeepAlive(60 * time.Second)
	pub := mqtt.NewClient(opts)
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return fmt.Errorf("publisher connect: %v", tok.Error())
	}
	defer pub.Disconnect(100)
	fmt.Fprintf(stdout, "addr %s\n", addr)
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[0] != "pub" {
			return fmt.Errorf("bad command %q", sc.Text())
		}
		frames, err := strconv.Atoi(f[1])
		if err != nil || frames <= 0 {
			return fmt.Errorf("bad frame count %q", f[1])
		}
		sent, errs := publishFrames(pub, frames, strings.Split(f[2], ","))
		fmt.Fprintf(stdout, "done %d %d\n", sent, errs)
	}
	return sc.Err()
}

// publishFrames sends frames wire.Frames to every topic, frame k when the
// clock reaches t0 + k·60 ms (computed from t0, never by adding sleeps, as
// the engine does), with PlayAt = that instant + PublishLead and the actual
// send time in the first 8 bytes of packet 0.
func publishFrames(c mqtt.Client, frames int, topics []string) (sent, errs int) {
	pkts := make([][]byte, basePackets)
	for i := range pkts {
		pkts[i] = make([]byte, basePacketSize)
		for j := range pkts[i] {
			pkts[i][j] = byte(j*7 + i)
		}
	}
	t0 := time.Now()
	for k := 0; k < frames; k++ {
		due := t0.Add(time.Duration(k) * frameInterval)
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		f := wire.Frame{StreamID: 1, Seq: uint32(k * basePackets), DelayMS: 500,
			PlayAt: due.Add(20 * time.Millisecond).UnixMicro(), Packets: pkts}
		if k == frames-1 {
			f.Flags |= wire.FlagLast
		}
		binary.BigEndian.PutUint64(pkts[0], uint64(time.Now().UnixNano()))
		payload, err := f.MarshalBinary()
		if err != nil {
			errs++
			continue
		}
		for _, t := range topics {
			tok := c.Publish(t, 0, false, payload)
			if !tok.WaitTimeout(250*time.Millisecond) || tok.Error() != nil {
				errs++
				continue
			}
			sent++
		}
	}
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
