// Package whepview is a receive-only pion WebRTC viewer for tests of the
// camera relay: it offers video like a browser, depacketizes what arrives
// (RFC 6184 H.264, RFC 7798 H.265) into Annex B access units and lets the
// test inspect them. ICE follows DESIGN.md's loopback facts: loopback
// candidates, UDP4, no mDNS, no STUN.
package whepview

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

// Codec is a video codec the viewer offers.
type Codec struct {
	MIME string
	PT   uint8
	Fmtp string
}

// BrowserH264 is a Chrome-like H.264 offer: several profile-level-ids and
// both packetization modes.
var BrowserH264 = []Codec{
	{webrtc.MimeTypeH264, 102, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f"},
	{webrtc.MimeTypeH264, 104, "level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42001f"},
	{webrtc.MimeTypeH264, 106, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"},
	{webrtc.MimeTypeH264, 112, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f"},
	{webrtc.MimeTypeH264, 127, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f"},
}

// BrowserH265 is an H.265 offer as Chrome makes it where it has H.265.
var BrowserH265 = []Codec{
	{webrtc.MimeTypeH265, 49, "level-id=93;profile-id=1;tier-flag=0;tx-mode=SRST"},
}

// AU is one access unit as the viewer depacketized it.
type AU struct {
	AnnexB []byte
	At     time.Time
	Seq    uint16 // of its first packet
	TS     uint32
}

// Viewer is a pion WHEP viewer. Offer holds its complete SDP offer (ICE
// gathered); pass the answer to Accept.
type Viewer struct {
	Offer string

	t    testing.TB
	pc   *webrtc.PeerConnection
	done chan struct{}

	paused atomic.Bool
	drop   atomic.Bool // NewLossy: drop the next media datagram

	mu      sync.Mutex
	aus     []AU
	packets int
	mime    string
	lastSeq uint16
	seqGaps int
	late    int
}

// dropConn is a UDP socket that loses the next datagram big enough to be
// video (not STUN or RTCP) whenever drop is set.
type dropConn struct {
	*net.UDPConn
	drop *atomic.Bool
}

func (c *dropConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.UDPConn.ReadFrom(p)
		if err == nil && n > 500 && c.drop.CompareAndSwap(true, false) {
			continue
		}
		return n, addr, err
	}
}

// DropNextMedia makes a NewLossy viewer's network lose the next video
// datagram.
func (v *Viewer) DropNextMedia() { v.drop.Store(true) }

// Late counts packets that arrived after a later one: on loopback, only
// retransmissions of lost packets.
func (v *Viewer) Late() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.late
}

// New makes a viewer offering codecs; it closes when the test ends.
func New(t testing.TB, codecs []Codec) *Viewer { return newViewer(t, codecs, false) }

// NewLossy is New with a network that drops one media datagram on each
// DropNextMedia, and pion's NACK generator (RFC 4585 §6.2.1), as a browser
// on a lossy path would ask for what it missed.
func NewLossy(t testing.TB, codecs []Codec) *Viewer { return newViewer(t, codecs, true) }

func newViewer(t testing.TB, codecs []Codec, lossy bool) *Viewer {
	t.Helper()
	v := &Viewer{t: t, done: make(chan struct{})}
	m := &webrtc.MediaEngine{}
	for _, c := range codecs {
		if err := m.RegisterCodec(webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: c.MIME, ClockRate: 90000, SDPFmtpLine: c.Fmtp,
				RTCPFeedback: []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}}},
			PayloadType: webrtc.PayloadType(c.PT),
		}, webrtc.RTPCodecTypeVideo); err != nil {
			t.Fatal(err)
		}
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	reg := &interceptor.Registry{}
	if lossy {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		mux := ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: &dropConn{UDPConn: c, drop: &v.drop}})
		t.Cleanup(func() { _ = mux.Close() })
		se.SetICEUDPMux(mux)
		gen, err := nack.NewGeneratorInterceptor(nack.GeneratorInterval(20 * time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		reg.Add(gen)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(reg))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	v.pc = pc
	t.Cleanup(v.Close)
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
		webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		once.Do(func() {
			v.mu.Lock()
			v.mime = tr.Codec().MimeType
			v.mu.Unlock()
			go v.read(tr)
		})
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
	v.Offer = pc.LocalDescription().SDP
	return v
}

// Pause stops (true) or resumes (false) reading the track, as a viewer
// whose tab froze would: packets pile up in its receive buffer until
// they are dropped there.
func (v *Viewer) Pause(on bool) { v.paused.Store(on) }

// Accept applies the server's SDP answer.
func (v *Viewer) Accept(answer string) {
	v.t.Helper()
	if err := v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		v.t.Fatal(err)
	}
}

// Close hangs up and waits for the reader; calling it again is harmless.
func (v *Viewer) Close() {
	_ = v.pc.Close()
	if v.MIME() != "" {
		<-v.done
	}
}

// read depacketizes RTP into Annex B access units, ending one at the
// marker bit; padding-only packets are skipped.
func (v *Viewer) read(tr *webrtc.TrackRemote) {
	defer close(v.done)
	isH265 := strings.EqualFold(tr.Codec().MimeType, webrtc.MimeTypeH265)
	var h264 codecs.H264Packet
	var h265 codecs.H265Depacketizer
	var cur []byte
	var first *rtp.Packet
	for {
		for v.paused.Load() {
			time.Sleep(10 * time.Millisecond)
			if v.pc.ConnectionState() == webrtc.PeerConnectionStateClosed {
				return
			}
		}
		p, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		if len(p.Payload) == 0 {
			continue
		}
		v.mu.Lock()
		if v.packets > 0 && int16(p.SequenceNumber-v.lastSeq) < 0 {
			v.late++
			v.mu.Unlock()
			continue // a retransmission; its access unit is gone
		}
		if v.packets > 0 && p.SequenceNumber != v.lastSeq+1 {
			v.seqGaps++
		}
		v.lastSeq = p.SequenceNumber
		v.packets++
		v.mu.Unlock()
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
			v.mu.Lock()
			v.aus = append(v.aus, AU{AnnexB: cur, At: time.Now(), Seq: first.SequenceNumber, TS: first.Timestamp})
			v.mu.Unlock()
			cur, first = nil, nil
		}
	}
}

// MIME is the negotiated codec, empty before the track arrives.
func (v *Viewer) MIME() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.mime
}

// SeqGaps counts RTP sequence number jumps seen so far.
func (v *Viewer) SeqGaps() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.seqGaps
}

// AUs returns the access units received so far.
func (v *Viewer) AUs() []AU {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]AU(nil), v.aus...)
}

// Count returns how many access units arrived.
func (v *Viewer) Count() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.aus)
}

// WaitAUs polls until the viewer holds at least n access units.
func (v *Viewer) WaitAUs(n int, timeout time.Duration) []AU {
	v.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		aus := v.AUs()
		if len(aus) >= n {
			return aus
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("viewer got %d access units in %v, want %d", len(aus), timeout, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// NALTypes lists the H.264 NAL unit types of an Annex B access unit.
func NALTypes(annexB []byte) []int {
	var out []int
	for i := 0; i+3 < len(annexB); i++ {
		if annexB[i] == 0 && annexB[i+1] == 0 && annexB[i+2] == 1 {
			out = append(out, int(annexB[i+3]&0x1f))
			i += 3
		}
	}
	return out
}

// HasIDR reports whether an H.264 access unit holds an IDR slice.
func HasIDR(annexB []byte) bool {
	for _, n := range NALTypes(annexB) {
		if n == 5 {
			return true
		}
	}
	return false
}

// AssertKeyframeFirst checks that an H.264 access unit is an IDR preceded
// by SPS and PPS: decodable by a browser that has seen nothing before.
func AssertKeyframeFirst(t testing.TB, au []byte) {
	t.Helper()
	types := NALTypes(au)
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
		t.Fatalf("access unit NAL types %v: want SPS and PPS before an IDR", types)
	}
}
