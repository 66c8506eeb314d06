package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// readerStats is what a baseline child reports on a "stats" line.
type readerStats struct {
	Lat []float64 `json:"lat_ms"`
}

// openReader starts a plain gortsplib client on raw that decodes every
// access unit (as the relay's ingest does) and calls onAU with it, and
// onRTP with every RTP packet.
func openReader(raw string, onAU func([][]byte), onRTP func(*rtp.Packet)) (*gortsplib.Client, error) {
	u, err := base.ParseURL(raw)
	if err != nil {
		return nil, err
	}
	c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, OnTransportSwitch: func(error) {}}
	if err := c.Start(); err != nil {
		return nil, err
	}
	desc, _, err := c.Describe(u)
	if err != nil {
		c.Close()
		return nil, err
	}
	var f *format.H264
	medi := desc.FindFormat(&f)
	if medi == nil {
		c.Close()
		return nil, errors.New("no H.264")
	}
	dec, err := f.CreateDecoder()
	if err != nil {
		c.Close()
		return nil, err
	}
	if _, err := c.Setup(desc.BaseURL, medi, 0, 0); err != nil {
		c.Close()
		return nil, err
	}
	c.OnPacketRTP(medi, f, func(p *rtp.Packet) {
		if onRTP != nil {
			onRTP(p)
		}
		if au, err := dec.Decode(p); err == nil {
			onAU(au)
		}
	})
	if _, err := c.Play(nil); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// latencyOf returns the camera send -> now latency of an access unit in ms,
// or false when it carries no send-time SEI.
func latencyOf(au [][]byte) (float64, bool) {
	var buf []byte
	for _, n := range au {
		buf = append(append(buf, 0, 0, 1), n...)
	}
	now := time.Now()
	if sent, _ := auInfo(buf); !sent.IsZero() {
		return float64(now.Sub(sent)) / 1e6, true
	}
	return 0, false
}

// serveStats answers "stats" lines on stdin with the latencies collected
// since the last one, until stdin closes.
func serveStats(mu *sync.Mutex, lat *[]float64) {
	enc := json.NewEncoder(os.Stdout)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if sc.Text() != "stats" {
			continue
		}
		mu.Lock()
		out := readerStats{Lat: *lat}
		*lat = nil
		mu.Unlock()
		_ = enc.Encode(out)
	}
}

// runReaders is the raw-reader baseline child: perCam plain RTSP readers of
// each URL. It prints "ready" once all play.
func runReaders(urls []string, perCam int) error {
	var mu sync.Mutex
	var lat []float64
	var clients []*gortsplib.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for _, u := range urls {
		for k := 0; k < perCam; k++ {
			c, err := openReader(u, func(au [][]byte) {
				if ms, ok := latencyOf(au); ok {
					mu.Lock()
					lat = append(lat, ms)
					mu.Unlock()
				}
			}, nil)
			if err != nil {
				return err
			}
			clients = append(clients, c)
		}
	}
	fmt.Println("ready")
	serveStats(&mu, &lat)
	return nil
}

// runSRTPBase is the 1 x N baseline child: one raw RTSP reader (decoding,
// as above) whose RTP packets are forwarded unchanged to bare pion SRTP
// senders, one peer connection per viewer: a TrackLocalStaticRTP with no
// interceptors (no NACK buffer, no RTCP reports), no GOP cache, no
// repacketising. Viewers connect over a minimal WHEP endpoint (POST offer,
// 201 answer) on 127.0.0.1. It prints the endpoint URL, then "ready".
func runSRTPBase(url string) error {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := webrtc.NewICEUDPMux(nil, conn)
	defer mux.Close()
	se := webrtc.SettingEngine{}
	se.SetICEUDPMux(mux)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"},
		PayloadType: 106,
	}, webrtc.RTPCodecTypeVideo); err != nil {
		return err
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se))

	var mu sync.Mutex
	var tracks []*webrtc.TrackLocalStaticRTP
	var pcs []*webrtc.PeerConnection
	var lat []float64
	defer func() {
		mu.Lock()
		for _, pc := range pcs {
			_ = pc.Close()
		}
		mu.Unlock()
	}()
	c, err := openReader(url, func(au [][]byte) {
		if ms, ok := latencyOf(au); ok {
			mu.Lock()
			lat = append(lat, ms)
			mu.Unlock()
		}
	}, func(p *rtp.Packet) {
		mu.Lock()
		ts := tracks
		mu.Unlock()
		for _, t := range ts {
			_ = t.WriteRTP(p)
		}
	})
	if err != nil {
		return err
	}
	defer c.Close()

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		offer, _ := io.ReadAll(r.Body)
		pc, err := api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000}, "video", "base")
		if err == nil {
			var snd *webrtc.RTPSender
			if snd, err = pc.AddTrack(tr); err == nil {
				go func() { // drain RTCP so the sender does not block
					for {
						if _, _, err := snd.ReadRTCP(); err != nil {
							return
						}
					}
				}()
			}
		}
		if err == nil {
			err = pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(offer)})
		}
		var ans webrtc.SessionDescription
		if err == nil {
			ans, err = pc.CreateAnswer(nil)
		}
		g := webrtc.GatheringCompletePromise(pc)
		if err == nil {
			err = pc.SetLocalDescription(ans)
		}
		if err != nil {
			_ = pc.Close()
			http.Error(w, err.Error(), 400)
			return
		}
		<-g
		mu.Lock()
		tracks = append(tracks, tr)
		pcs = append(pcs, pc)
		mu.Unlock()
		w.Header().Set("Location", "/whep/x")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, pc.LocalDescription().SDP)
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	fmt.Println("http://" + ln.Addr().String() + "/whep")
	fmt.Println("ready")
	serveStats(&mu, &lat)
	return nil
}

// baseChild is a running baseline child process.
type baseChild struct {
	child *childProc
	in    io.WriteCloser
	out   *bufio.Scanner
	url   string
}

func startBase(self string, args ...string) (*baseChild, error) {
	cp, in, out, err := startChildProc(self, "", args...)
	if err != nil {
		return nil, err
	}
	b := &baseChild{child: cp, in: in, out: out}
	for out.Scan() {
		l := out.Text()
		if l == "ready" {
			return b, nil
		}
		if strings.HasPrefix(l, "http://") {
			b.url = l
		}
	}
	b.close()
	return nil, errors.New("baseline child exited before ready")
}

func (b *baseChild) stats() []float64 {
	if _, err := io.WriteString(b.in, "stats\n"); err != nil {
		return nil
	}
	if !b.out.Scan() {
		return nil
	}
	var st readerStats
	_ = json.Unmarshal(b.out.Bytes(), &st)
	return st.Lat
}

func (b *baseChild) close() {
	_ = b.in.Close()
	b.child.close()
}
