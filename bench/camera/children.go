package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/loalang/loalang/firmware-sim/camsim"
	"github.com/pion/ice/v4"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

// runCams is the child process that plays the cameras, so their CPU is not
// counted as the relay's. It prints one RTSP URL per line, then "ready",
// and runs until stdin closes.
func runCams(clipPath string, n, fps int) error {
	clip, err := os.ReadFile(clipPath)
	if err != nil {
		return err
	}
	var sims []*camsim.Sim
	defer func() {
		for _, s := range sims {
			_ = s.Close()
		}
	}()
	for i := 0; i < n; i++ {
		s, err := camsim.New(camsim.Options{Clip: clip, FPS: fps, EmbedSendTime: true})
		if err != nil {
			return err
		}
		sims = append(sims, s)
		url, err := s.Start("127.0.0.1:0")
		if err != nil {
			return err
		}
		fmt.Println(url)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// msg is the line protocol between the orchestrator and the viewers child.
type msg struct {
	Op  string `json:"op"`
	ID  string `json:"id,omitempty"`
	SDP string `json:"sdp,omitempty"`
	// HTTP: the request of "watch", "unwatch" and "http" ops, and the
	// status, body and Location of their replies.
	Method string             `json:"method,omitempty"`
	URL    string             `json:"url,omitempty"`
	Token  string             `json:"token,omitempty"`
	Body   string             `json:"body,omitempty"`
	Status int                `json:"status,omitempty"`
	Loc    string             `json:"loc,omitempty"`
	Lat    []float64          `json:"lat_ms,omitempty"`
	First  map[string]float64 `json:"first_ms,omitempty"`
	Err    string             `json:"err,omitempty"`
}

type benchViewer struct {
	pc       *webrtc.PeerConnection
	offered  time.Time
	firstKey time.Time
	done     chan struct{}
}

// runViewers is the child process holding the pion viewers (browsers
// stand-ins), so their CPU is not counted as the relay's.
// It reaches loalangd itself over HTTP ("watch": POST the offer to a WHEP
// URL; "http": any API call), so that it can run in another network
// namespace. iface names the one interface its ICE agent uses (lo: loopback
// candidates only).
func runViewers(iface string) error {
	var (
		outMu sync.Mutex
		mu    sync.Mutex
		lat   []float64
		views = map[string]*benchViewer{}
	)
	enc := json.NewEncoder(os.Stdout)
	send := func(m msg) {
		outMu.Lock()
		_ = enc.Encode(m)
		outMu.Unlock()
	}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine:  "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
			RTCPFeedback: []webrtc.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}}},
		PayloadType: 106,
	}, webrtc.RTPCodecTypeVideo); err != nil {
		return err
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(iface == "lo")
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetInterfaceFilter(func(name string) bool { return name == iface })
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se))

	read := func(id string, v *benchViewer, tr *webrtc.TrackRemote) {
		defer close(v.done)
		var dep codecs.H264Packet
		var cur []byte
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			if len(p.Payload) == 0 {
				continue
			}
			out, err := dep.Unmarshal(p.Payload)
			if err != nil {
				continue
			}
			cur = append(cur, out...)
			if !p.Marker {
				continue
			}
			now := time.Now()
			sent, key := auInfo(cur)
			cur = cur[:0]
			mu.Lock()
			if !sent.IsZero() {
				lat = append(lat, float64(now.Sub(sent))/1e6)
			}
			if key && v.firstKey.IsZero() {
				v.firstKey = now
			}
			mu.Unlock()
		}
	}

	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var in msg
		if err := json.Unmarshal(sc.Bytes(), &in); err != nil {
			return err
		}
		switch in.Op {
		case "http":
			go func(in msg) {
				st, body, loc, err := httpDo(in.Method, in.URL, in.Token, "application/json", in.Body)
				out := msg{Op: "http", ID: in.ID, Status: st, Body: body, Loc: loc}
				if err != nil {
					out.Err = err.Error()
				}
				send(out)
			}(in)
		case "watch":
			pc, err := api.NewPeerConnection(webrtc.Configuration{})
			if err != nil {
				send(msg{Op: "watching", ID: in.ID, Err: err.Error()})
				continue
			}
			v := &benchViewer{pc: pc, done: make(chan struct{})}
			var once sync.Once
			id := in.ID
			pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
				once.Do(func() { go read(id, v, tr) })
			})
			if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
				webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
				return err
			}
			offer, err := pc.CreateOffer(nil)
			if err != nil {
				return err
			}
			g := webrtc.GatheringCompletePromise(pc)
			if err := pc.SetLocalDescription(offer); err != nil {
				return err
			}
			<-g
			go func(in msg) {
				mu.Lock()
				views[in.ID] = v
				v.offered = time.Now() // the WHEP POST (RFC 9725 §4.2), as a browser's
				mu.Unlock()
				st, body, loc, err := httpDo("POST", in.URL, in.Token, "application/sdp", pc.LocalDescription().SDP)
				if err == nil && st != http.StatusCreated {
					err = fmt.Errorf("WHEP POST: HTTP %d: %s", st, body)
				}
				if err == nil {
					err = pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: body})
				}
				out := msg{Op: "watching", ID: in.ID, Loc: loc, SDP: body}
				if err != nil {
					out.Err = err.Error()
				}
				send(out)
			}(in)
		case "unwatch":
			mu.Lock()
			v := views[in.ID]
			delete(views, in.ID)
			mu.Unlock()
			if v != nil {
				_ = v.pc.Close()
			}
			go func(in msg) {
				if in.URL != "" {
					_, _, _, _ = httpDo("DELETE", in.URL, in.Token, "", "")
				}
				send(msg{Op: "unwatched", ID: in.ID})
			}(in)
		case "new":
			pc, err := api.NewPeerConnection(webrtc.Configuration{})
			if err != nil {
				send(msg{Op: "offer", ID: in.ID, Err: err.Error()})
				continue
			}
			v := &benchViewer{pc: pc, done: make(chan struct{})}
			var once sync.Once
			pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
				once.Do(func() { go read(in.ID, v, tr) })
			})
			if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo,
				webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
				return err
			}
			offer, err := pc.CreateOffer(nil)
			if err != nil {
				return err
			}
			g := webrtc.GatheringCompletePromise(pc)
			if err := pc.SetLocalDescription(offer); err != nil {
				return err
			}
			<-g
			mu.Lock()
			views[in.ID] = v
			v.offered = time.Now()
			mu.Unlock()
			send(msg{Op: "offer", ID: in.ID, SDP: pc.LocalDescription().SDP})
		case "answer":
			mu.Lock()
			v := views[in.ID]
			mu.Unlock()
			if v == nil {
				continue
			}
			if err := v.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: in.SDP}); err != nil {
				send(msg{Op: "error", ID: in.ID, Err: err.Error()})
			}
		case "close":
			mu.Lock()
			v := views[in.ID]
			delete(views, in.ID)
			mu.Unlock()
			if v != nil {
				_ = v.pc.Close()
			}
			send(msg{Op: "closed", ID: in.ID})
		case "stats":
			mu.Lock()
			out := msg{Op: "stats", Lat: lat, First: map[string]float64{}}
			for id, v := range views {
				if !v.firstKey.IsZero() {
					out.First[id] = float64(v.firstKey.Sub(v.offered)) / 1e6
				}
			}
			lat = nil
			mu.Unlock()
			send(out)
		}
	}
	mu.Lock()
	for _, v := range views {
		_ = v.pc.Close()
	}
	mu.Unlock()
	return sc.Err()
}

// auInfo finds the camsim send-time SEI and whether the access unit is an IDR.
func auInfo(annexB []byte) (sent time.Time, key bool) {
	for _, n := range splitNALUs(annexB) {
		if len(n) == 0 {
			continue
		}
		switch n[0] & 0x1f {
		case 5:
			key = true
		case 6:
			if t, err := camsim.ParseSendTime(camsim.H264, n); err == nil {
				sent = t
			}
		}
	}
	return sent, key
}

func splitNALUs(b []byte) [][]byte {
	var out [][]byte
	start := -1
	for i := 0; i+2 < len(b); i++ {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 {
			if start >= 0 {
				end := i
				for end > start && b[end-1] == 0 {
					end--
				}
				out = append(out, b[start:end])
			}
			start = i + 3
			i += 2
		}
	}
	if start >= 0 && start <= len(b) {
		out = append(out, b[start:])
	}
	return out
}

var httpClient = &http.Client{Timeout: 30 * time.Second}

// httpDo makes one API request and returns status, body and Location.
func httpDo(method, url, token, ctype, body string) (int, string, string, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, "", "", err
	}
	if ctype != "" && body != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("Location"), err
}
