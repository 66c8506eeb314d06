package camera

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loalang/loalang/firmware-sim/camsim"
	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("CAMERA_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// startSim starts a simulated camera on an ephemeral loopback port.
func startSim(t *testing.T, opts camsim.Options) (*camsim.Sim, string) {
	t.Helper()
	s, err := camsim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	url, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, url
}

func testConfig() Config {
	return Config{
		UDPPort:            0,
		ListenIP:           "127.0.0.1",
		LoopbackCandidates: true,
		HandshakeTimeout:   10 * time.Second,
		IdleClose:          300 * time.Millisecond,
		ReconnectMin:       100 * time.Millisecond,
		ReconnectMax:       400 * time.Millisecond,
	}
}

func newRelay(t *testing.T, cfg Config, cams ...Camera) *Relay {
	t.Helper()
	r, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("close relay: %v", err)
		}
	})
	r.SetCameras(cams)
	return r
}

// clientCodec is a codec a test viewer offers.
type clientCodec struct {
	mime string
	pt   uint8
	fmtp string
}

// Chrome-like H.264 offer: several profile-level-ids, both packetization modes.
var browserH264 = []clientCodec{
	{webrtc.MimeTypeH264, 102, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f"},
	{webrtc.MimeTypeH264, 104, "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f"},
	{webrtc.MimeTypeH264, 106, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"},
	{webrtc.MimeTypeH264, 112, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f"},
	{webrtc.MimeTypeH264, 127, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f"},
}

var browserH265 = []clientCodec{
	{webrtc.MimeTypeH265, 49, "level-id=93;profile-id=1;tier-flag=0;tx-mode=SRST"},
}

// receivedAU is one access unit as the test viewer depacketized it.
type receivedAU struct {
	annexB []byte
	at     time.Time
	seq    uint16 // first packet
	ts     uint32
}

// client is a pion WHEP viewer, as a browser would be.
type client struct {
	t     *testing.T
	pc    *webrtc.PeerConnection
	offer string
	done  chan struct{}

	mu      sync.Mutex
	aus     []receivedAU
	packets int
	mime    string
	lastSeq uint16
	seqGaps int
}

func newClient(t *testing.T, cs []clientCodec) *client {
	t.Helper()
	m := &webrtc.MediaEngine{}
	for _, c := range cs {
		if err := m.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: c.mime, ClockRate: 90000, SDPFmtpLine: c.fmtp,
				RTCPFeedback: []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}}},
			PayloadType: webrtc.PayloadType(c.pt),
		}, webrtc.RTPCodecTypeVideo); err != nil {
			t.Fatal(err)
		}
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, pc: pc, done: make(chan struct{})}
	t.Cleanup(c.close)
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
		webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		once.Do(func() { go c.read(tr) })
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	c.offer = pc.LocalDescription().SDP
	return c
}

func (c *client) accept(answer string) {
	c.t.Helper()
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) close() {
	_ = c.pc.Close()
	c.mu.Lock()
	started := c.mime != ""
	c.mu.Unlock()
	if started {
		<-c.done
	}
}

// read depacketizes RTP (RFC 6184 / RFC 7798) into Annex B access units,
// ending an access unit at the marker bit.
func (c *client) read(tr *webrtc.TrackRemote) {
	c.mu.Lock()
	c.mime = tr.Codec().MimeType
	c.mu.Unlock()
	defer close(c.done)
	isH265 := strings.EqualFold(tr.Codec().MimeType, webrtc.MimeTypeH265)
	var h264 codecs.H264Packet
	var h265 codecs.H265Depacketizer
	var cur []byte
	var first *rtp.Packet
	for {
		p, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		if len(p.Payload) == 0 {
			continue
		}
		c.mu.Lock()
		if c.packets > 0 && p.SequenceNumber != c.lastSeq+1 {
			c.seqGaps++
		}
		c.lastSeq = p.SequenceNumber
		c.packets++
		c.mu.Unlock()
		var out []byte
		if isH265 {
			out, err = h265.Unmarshal(p.Payload)
		} else {
			out, err = h264.Unmarshal(p.Payload)
		}
		if err != nil {
			continue
		}
		if first == nil {
			first = p
		}
		cur = append(cur, out...)
		if p.Marker && len(cur) > 0 {
			c.mu.Lock()
			c.aus = append(c.aus, receivedAU{annexB: cur, at: time.Now(), seq: first.SequenceNumber, ts: first.Timestamp})
			c.mu.Unlock()
			cur, first = nil, nil
		}
	}
}

func (c *client) snapshot() []receivedAU {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]receivedAU(nil), c.aus...)
}

// waitAUs polls until the viewer holds at least n access units.
func (c *client) waitAUs(n int, timeout time.Duration) []receivedAU {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		aus := c.snapshot()
		if len(aus) >= n {
			return aus
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("viewer got %d access units in %v, want %d", len(aus), timeout, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nalTypes lists the H.264 NAL unit types of an Annex B access unit.
func nalTypes(annexB []byte) []int {
	var out []int
	for i := 0; i+3 < len(annexB); i++ {
		if annexB[i] == 0 && annexB[i+1] == 0 && annexB[i+2] == 1 {
			out = append(out, int(annexB[i+3]&0x1f))
			i += 3
		}
	}
	return out
}

func hasIDR(annexB []byte) bool {
	for _, n := range nalTypes(annexB) {
		if n == 5 {
			return true
		}
	}
	return false
}

// assertKeyframeFirst checks that an access unit is an IDR preceded by SPS and PPS.
func assertKeyframeFirst(t *testing.T, au []byte) {
	t.Helper()
	types := nalTypes(au)
	sps, pps, idr := -1, -1, -1
	for i, ty := range types {
		switch {
		case ty == 7 && sps < 0:
			sps = i
		case ty == 8 && pps < 0:
			pps = i
		case ty == 5 && idr < 0:
			idr = i
		}
	}
	if idr < 0 || sps < 0 || pps < 0 || sps > idr || pps > idr {
		t.Fatalf("first access unit NAL types %v: want SPS and PPS before an IDR", types)
	}
}

// decodeFrames decodes H.264 Annex B with ffmpeg and returns the number of
// decoded frames.
func decodeFrames(t *testing.T, aus []receivedAU) int {
	t.Helper()
	var buf bytes.Buffer
	for _, au := range aus {
		buf.Write(au.annexB)
	}
	path := filepath.Join(t.TempDir(), "viewer.h264")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v: %s", err, out)
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.Split(string(out), "\n")[0]))
	if err != nil {
		t.Fatalf("ffprobe output %q: %v", out, err)
	}
	return n
}

// watch offers from a new client and accepts the answer.
func watch(t *testing.T, r *Relay, camID string, cs []clientCodec) (*client, Session, time.Time) {
	t.Helper()
	c := newClient(t, cs)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	sess, err := r.Offer(ctx, camID, c.offer, "police-1")
	if err != nil {
		t.Fatalf("offer: %v", err)
	}
	c.accept(sess.AnswerSDP)
	return c, sess, start
}

func requireFFprobe(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ffprobe"); err != nil {
		t.Skip("ffprobe not installed (apt install ffmpeg)")
	}
}
