// Package whipphone is a send-only pion WebRTC peer for tests of live
// speech over WHIP (RFC 9725): it stands in for the phone or browser that
// speaks, with one Opus track (RFC 7587) and an offer that carries every
// candidate (no trickle ICE, RFC 9725 §4.3.1). ICE follows DESIGN.md's
// loopback facts: UDP4 and loopback candidates.
package whipphone

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// Phone is the speaking peer: write 20 ms Opus packets to Track once PC is
// connected.
type Phone struct {
	PC    *webrtc.PeerConnection
	Track *webrtc.TrackLocalStaticSample
	// Offer is the SDP offer, its candidates gathered.
	Offer string
}

// New makes a phone and gathers its offer; the test's cleanup closes it.
// With sock, the phone's ICE runs on that socket only, so closing it
// makes the phone vanish (no DTLS close, nothing more sent).
func New(t *testing.T, sock net.PacketConn) *Phone {
	t.Helper()
	se := webrtc.SettingEngine{}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	if sock != nil {
		se.SetICEUDPMux(webrtc.NewICEUDPMux(nil, sock))
	}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "phone")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gathered:
	case <-time.After(20 * time.Second):
		t.Fatal("WHIP offer: ICE gathering did not complete")
	}
	return &Phone{PC: pc, Track: track, Offer: pc.LocalDescription().SDP}
}

// Connect sets the WHIP answer and waits up to within for the peer
// connection to be connected.
func (p *Phone) Connect(t *testing.T, answer string, within time.Duration) {
	t.Helper()
	connected := make(chan struct{})
	var once sync.Once
	p.PC.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
	})
	if err := p.PC.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-connected:
	case <-time.After(within):
		t.Fatal("the phone never connected")
	}
}
