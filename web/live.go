package web

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/loalang/loalang/audit"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/broadcast"
	"github.com/loalang/loalang/store"
)

// LiveEngine starts live speech (broadcast.Engine.Live).
type LiveEngine interface {
	Live(ctx context.Context, req broadcast.Request) (*broadcast.Live, error)
}

// LiveConfig enables live speech over WHIP (RFC 9725).
type LiveConfig struct {
	Engine LiveEngine
	// ArchiveDir receives <broadcast-id>.opus, the received packets as Ogg
	// Opus (RFC 7845).
	ArchiveDir string
	// UDPMux is the ICE UDP mux shared with the camera relay, so all
	// WebRTC traffic uses one UDP port. Without it the service listens on
	// its own socket at ListenIP:UDPPort (port 0 picks a free one).
	UDPMux   ice.UDPMux
	ListenIP string
	UDPPort  int
	// LoopbackCandidates offers 127.0.0.1 candidates (tests, same-host
	// browsers); off in the field.
	LoopbackCandidates bool
	NAT1To1IPs         []string
	ICEServers         []webrtc.ICEServer
	// ICE, when set, is the camera relay's ICE setup (its UDP mux, listen
	// addresses, loopback and NAT 1:1 rules: camera.Relay.ICESettingEngine),
	// so WHIP answers carry the same candidates as WHEP answers; UDPMux,
	// ListenIP, UDPPort, LoopbackCandidates and NAT1To1IPs are then unused.
	ICE *webrtc.SettingEngine
	// MaxOffer bounds an offer in bytes; 0 means 64 KiB.
	MaxOffer int64
}

// LiveService holds the WHIP sessions. Close ends them all.
type LiveService struct {
	s   *Server
	cfg LiveConfig
	log *slog.Logger
	se  webrtc.SettingEngine
	mux ice.UDPMux
	// ownMux is set when the service opened its own socket and must close it.
	ownMux bool

	mu       sync.Mutex
	sessions map[string]*liveSession
	closed   bool
	wg       sync.WaitGroup
}

// Errors of the WHIP endpoint.
var (
	errLiveFormat = errors.New("live audio is not 20 ms mono Opus")
	errLiveClosed = errors.New("live speech service closed")
)

// opusFmtp is what the answer asks of the browser's encoder (RFC 7587
// §6.1): mono, in-band FEC for lossy Wi-Fi.
const opusFmtp = "minptime=10;useinbandfec=1;stereo=0;sprop-stereo=0"

// EnableLive opens the ICE socket and registers WHIP: POST
// /api/v1/live/whip?zones=a,b&priority=normal with an SDP offer creates a
// session (RFC 9725 §4.2: 201, answer, Location), DELETE on the Location
// ends it (§4.3).
func (s *Server) EnableLive(cfg LiveConfig) (*LiveService, error) {
	if cfg.MaxOffer <= 0 {
		cfg.MaxOffer = 64 << 10
	}
	if err := os.MkdirAll(cfg.ArchiveDir, 0o700); err != nil {
		return nil, fmt.Errorf("live archive dir: %w", err)
	}
	l := &LiveService{s: s, cfg: cfg, log: s.log.With("component", "live"), mux: cfg.UDPMux, sessions: map[string]*liveSession{}}
	if cfg.ICE != nil {
		l.se = *cfg.ICE
		// A phone that vanished (no DELETE) is noticed within ~5 s.
		l.se.SetICETimeouts(2*time.Second, 5*time.Second, time.Second)
	} else if err := l.ownICE(); err != nil {
		return nil, err
	}
	heads := []auth.Role{auth.RoleAdmin, auth.RoleHead}
	s.Handle("POST /api/v1/live/whip", l.handlePost, heads...)
	s.Handle("DELETE /api/v1/live/whip/{id}", l.handleDelete, heads...)
	s.Handle("PATCH /api/v1/live/whip/{id}", func(w http.ResponseWriter, r *http.Request) {
		// No trickle ICE or ICE restart (RFC 9725 §4.3.1): candidates are
		// all in the offer and the answer.
		w.Header().Set("Allow", "DELETE")
		w.WriteHeader(http.StatusMethodNotAllowed)
	}, heads...)
	return l, nil
}

// ownICE sets up ICE from the LiveConfig fields when the camera relay's
// setup is not shared (tests, a daemon without cameras).
func (l *LiveService) ownICE() error {
	cfg := l.cfg
	if l.mux == nil {
		addr := net.JoinHostPort(cfg.ListenIP, strconv.Itoa(cfg.UDPPort))
		conn, err := net.ListenPacket("udp4", addr)
		if err != nil {
			return fmt.Errorf("listen live ICE UDP %s: %w", addr, err)
		}
		l.mux, l.ownMux = webrtc.NewICEUDPMux(nil, conn), true
	}
	l.se.SetICEUDPMux(l.mux)
	// UDP4 only, no mDNS, loopback only when configured: the same ICE
	// setup as the camera relay (DESIGN.md platform facts).
	l.se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	l.se.SetIncludeLoopbackCandidate(cfg.LoopbackCandidates)
	l.se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// A phone that vanished (no DELETE) is noticed within ~5 s.
	l.se.SetICETimeouts(2*time.Second, 5*time.Second, time.Second)
	if len(cfg.NAT1To1IPs) > 0 {
		if err := l.se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External: cfg.NAT1To1IPs, AsCandidateType: webrtc.ICECandidateTypeHost, Mode: webrtc.ICEAddressRewriteReplace,
		}); err != nil {
			l.closeMux()
			return fmt.Errorf("set NAT 1:1 IPs: %w", err)
		}
	}
	return nil
}

// Addr is the ICE UDP socket's address.
func (l *LiveService) Addr() net.Addr {
	if addrs := l.mux.GetListenAddresses(); len(addrs) > 0 {
		return addrs[0]
	}
	return nil
}

// closeMux closes the ICE socket if the service opened it.
func (l *LiveService) closeMux() error {
	if !l.ownMux {
		return nil
	}
	return l.mux.Close() // closes the socket too
}

// Close ends every session (each broadcast ends cleanly, its archive is
// closed) and releases the socket. It is idempotent.
func (l *LiveService) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	sessions := make([]*liveSession, 0, len(l.sessions))
	for _, s := range l.sessions {
		sessions = append(sessions, s)
	}
	l.mu.Unlock()
	for _, s := range sessions {
		s.end("server shutting down")
	}
	l.wg.Wait()
	return l.closeMux()
}

// liveSession is one WHIP session: a peer connection feeding one live
// broadcast.
type liveSession struct {
	l       *LiveService
	id      string // the broadcast id, also the WHIP resource id
	user    string
	pc      *webrtc.PeerConnection
	live    *broadcast.Live
	archive *archive
	path    string
	log     *slog.Logger
	created time.Time

	// Set by the reader, read after it ended.
	packets, bad, padding int
	jitter                []time.Duration // arrival minus RTP-mapped capture time
	handoff               []time.Duration // arrival to WritePacket returned

	once     sync.Once
	finished chan struct{}
	reason   string
}

func (l *LiveService) handlePost(w http.ResponseWriter, r *http.Request) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "application/sdp" {
		writeJSON(w, http.StatusUnsupportedMediaType, map[string]string{"error": "Content-Type: want application/sdp (RFC 9725 §4.2)"})
		return
	}
	q := r.URL.Query()
	var zones []string
	for z := range strings.SplitSeq(q.Get("zones"), ",") {
		if z = strings.TrimSpace(z); z != "" {
			zones = append(zones, z)
		}
	}
	if len(zones) == 0 {
		writeError(w, r, badRequest("zones: give ?zones=a,b"))
		return
	}
	priority := q.Get("priority")
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, l.cfg.MaxOffer))
	if err != nil {
		writeError(w, r, err)
		return
	}
	offer := string(raw)
	if !offersOpus(offer) {
		writeError(w, r, badRequest("sdp: the offer has no sending audio m-section with Opus"))
		return
	}
	u := UserFrom(r.Context())
	sess, answer, err := l.start(r.Context(), offer, u.Username, broadcast.Request{
		Zones: zones, Priority: priority, Actor: u.Username, Origin: broadcast.OriginLive,
	})
	if err != nil {
		writeError(w, r, err)
		return
	}
	l.s.audit(r, audit.LiveStart, sess.id, map[string]any{"zones": zones, "priority": priority, "archive": sess.path})
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", "/api/v1/live/whip/"+sess.id)
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, answer)
}

// offersOpus is a cheap check before any WebRTC work.
func offersOpus(sdp string) bool {
	low := strings.ToLower(sdp)
	return strings.Contains(low, "m=audio") && strings.Contains(low, "opus/48000") && strings.Contains(low, "v=0")
}

// start negotiates the peer connection, then starts the live broadcast;
// a refused broadcast (zone busy, unknown zone) tears the connection down.
func (l *LiveService) start(ctx context.Context, offer, user string, req broadcast.Request) (*liveSession, string, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, "", errLiveClosed
	}
	l.wg.Add(1) // the session's watcher; released below on failure
	l.mu.Unlock()
	ok := false
	defer func() {
		if !ok {
			l.wg.Done()
		}
	}()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: opusFmtp},
		PayloadType:        111,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, "", fmt.Errorf("register opus: %w", err)
	}
	reg := &interceptor.Registry{}
	if err := webrtc.ConfigureRTCPReports(reg); err != nil {
		return nil, "", fmt.Errorf("configure rtcp reports: %w", err)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(l.se), webrtc.WithInterceptorRegistry(reg))
	pc, err := api.NewPeerConnection(webrtc.Configuration{ICEServers: l.cfg.ICEServers})
	if err != nil {
		return nil, "", fmt.Errorf("new peer connection: %w", err)
	}
	fail := func(err error) (*liveSession, string, error) {
		pc.Close()
		return nil, "", err
	}
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		return fail(fmt.Errorf("add transceiver: %w", err))
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return fail(badRequest("sdp: %v", err))
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return fail(badRequest("sdp: no answer possible: %v", err))
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		return fail(fmt.Errorf("set local description: %w", err))
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return fail(fmt.Errorf("ICE gathering: %w", ctx.Err()))
	}
	answer := withPtime(pc.LocalDescription().SDP)
	if !strings.Contains(strings.ToLower(answer), "opus/48000") {
		return fail(badRequest("sdp: no Opus audio could be negotiated"))
	}

	live, err := l.cfg.Engine.Live(ctx, req)
	if err != nil {
		return fail(err)
	}
	s := &liveSession{
		l: l, id: live.ID(), user: user, pc: pc, live: live, created: time.Now(), finished: make(chan struct{}),
		path: filepath.Join(l.cfg.ArchiveDir, live.ID()+".opus"),
	}
	s.log = l.log.With("broadcast", s.id, "user", user)
	var serial [4]byte
	rand.Read(serial[:])
	if s.archive, err = createArchive(s.path, binary.LittleEndian.Uint32(serial[:])); err != nil {
		live.Close()
		return fail(err)
	}
	l.mu.Lock()
	l.sessions[s.id] = s
	l.mu.Unlock()

	tracks := make(chan *webrtc.TrackRemote, 1)
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		select {
		case tracks <- t:
		default: // one audio track per session
		}
	})
	broken := make(chan string, 1)
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed, webrtc.PeerConnectionStateDisconnected:
			select {
			case broken <- "connection " + st.String():
			default:
			}
		}
	})
	ok = true
	go s.run(tracks, broken)
	s.log.Info("live session answered", "zones", req.Zones, "took", time.Since(s.created).Round(time.Millisecond))
	return s, answer, nil
}

// withPtime asks for 20 ms packets (RFC 4566 §6 ptime/maxptime): the
// speakers' frames carry exactly 20 ms per packet.
func withPtime(sdp string) string {
	var out strings.Builder
	for line := range strings.Lines(sdp) {
		out.WriteString(line)
		if strings.HasPrefix(strings.ToLower(line), "a=rtpmap:") && strings.Contains(strings.ToLower(line), "opus/48000") {
			out.WriteString("a=ptime:20\r\na=maxptime:20\r\n")
		}
	}
	return out.String()
}

// run waits for the track, reads it until the end and tears down. The
// archive is the reader's alone, so it is closed here, after the reader.
func (s *liveSession) run(tracks <-chan *webrtc.TrackRemote, broken <-chan string) {
	defer s.l.wg.Done()
	defer func() {
		if err := s.archive.close(); err != nil {
			s.log.Error("live archive failed", "err", err)
		}
		s.summary()
	}()
	timeout := time.NewTimer(15 * time.Second)
	defer timeout.Stop()
	readerDone := make(chan string, 1)
	select {
	case t := <-tracks:
		go func() { readerDone <- s.read(t) }()
	case why := <-broken:
		s.end(why)
		return
	case <-s.live.Done():
		s.end("broadcast ended")
		return
	case <-timeout.C:
		s.end("no audio track within 15 s")
		return
	case <-s.finished:
		return
	}
	var why string
	select {
	case why = <-readerDone:
		s.end(why)
		return
	case why = <-broken:
	case <-s.live.Done():
		why = "broadcast ended"
	case <-s.finished:
	}
	s.end(why)
	<-readerDone // pc.Close in end makes ReadRTP return
}

// opusDuration is the duration of an Opus packet from its TOC byte and
// frame count (RFC 6716 §3.1), and whether it is coded stereo.
func opusDuration(p []byte) (time.Duration, bool, error) {
	if len(p) == 0 {
		return 0, false, errors.New("empty packet")
	}
	toc := p[0]
	cfg := toc >> 3
	var frame time.Duration
	switch {
	case cfg < 12: // SILK-only
		frame = []time.Duration{10, 20, 40, 60}[cfg%4] * time.Millisecond
	case cfg < 16: // hybrid
		frame = []time.Duration{10, 20}[cfg%2] * time.Millisecond
	default: // CELT-only
		frame = []time.Duration{2500, 5000, 10000, 20000}[cfg%4] * time.Microsecond
	}
	n := 1
	switch toc & 3 {
	case 1, 2:
		n = 2
	case 3:
		if len(p) < 2 {
			return 0, false, errors.New("code 3 packet without frame count")
		}
		n = int(p[1] & 0x3f)
	}
	return time.Duration(n) * frame, toc&0x04 != 0, nil
}

// read feeds RTP payloads to the broadcast untouched, with a capture time
// mapped from the RTP timestamp (48 kHz, RFC 7587 §4.1) onto the arrival
// of the first packet, so network jitter does not move play-at times.
func (s *liveSession) read(t *webrtc.TrackRemote) string {
	if !strings.EqualFold(t.Codec().MimeType, webrtc.MimeTypeOpus) {
		return "track is not Opus"
	}
	var (
		anchor   time.Time
		anchorTS uint32
		badRun   int

		archiveFailed bool
	)
	for {
		pkt, _, err := t.ReadRTP()
		arrival := time.Now()
		if err != nil {
			return "track ended"
		}
		if len(pkt.Payload) == 0 { // padding-only (bandwidth probing)
			s.padding++
			continue
		}
		d, stereo, err := opusDuration(pkt.Payload)
		if err != nil || d != 20*time.Millisecond || stereo {
			s.bad++
			badRun++
			if badRun == 1 || badRun%50 == 0 {
				s.log.Warn("live packet refused", "duration", d, "stereo", stereo, "err", err)
			}
			if badRun >= 25 { // half a second of unusable audio
				return fmt.Sprintf("%v: browser sends %v packets (stereo %v)", errLiveFormat, d, stereo)
			}
			continue
		}
		badRun = 0
		captured := arrival
		if anchor.IsZero() {
			anchor, anchorTS = arrival, pkt.Timestamp
		} else {
			captured = anchor.Add(time.Duration(int32(pkt.Timestamp-anchorTS)) * time.Second / 48000)
			if lag := arrival.Sub(captured); lag < -100*time.Millisecond || lag > time.Second {
				// The sender's clock jumped (or we were stalled): re-anchor.
				anchor, anchorTS, captured = arrival, pkt.Timestamp, arrival
			}
		}
		if err := s.live.WritePacket(pkt.Payload, captured); err != nil {
			return "broadcast ended"
		}
		s.handoff = append(s.handoff, time.Since(arrival))
		s.jitter = append(s.jitter, arrival.Sub(captured))
		s.packets++
		if err := s.archive.write(pkt.Payload, 960); err != nil && !archiveFailed {
			archiveFailed = true // the speech goes on; the close reports it
			s.log.Error("live archive failed", "err", err)
		}
		if s.packets%250 == 0 {
			s.log.Debug("live packets", "packets", s.packets, "arrival_jitter", arrival.Sub(captured), "handoff", time.Since(arrival))
		}
	}
}

// end tears the session down once: the peer connection, then the
// broadcast (queued packets are still sent and stop is published), then the
// archive.
func (s *liveSession) end(reason string) {
	s.once.Do(func() {
		s.reason = reason
		s.pc.Close()
		s.live.Close()
		s.l.mu.Lock()
		delete(s.l.sessions, s.id)
		s.l.mu.Unlock()
		close(s.finished)
		s.log.Info("live session ended", "reason", reason, "duration", time.Since(s.created).Round(time.Millisecond), "archive", s.path)
		s.l.s.db.AppendAudit(store.Event{Time: s.l.s.now(), Actor: s.user, Action: audit.LiveEnd, Target: s.id,
			Detail: map[string]any{"reason": reason, "archive": s.path}})
	})
}

// summary logs per-session latency figures: arrival jitter (arrival minus
// the RTP-mapped capture time, which becomes the play-at base) and the
// handoff to the engine.
func (s *liveSession) summary() {
	if s.packets == 0 {
		s.log.Info("live latency", "packets", 0, "refused", s.bad, "padding", s.padding)
		return
	}
	s.log.Info("live latency", "packets", s.packets, "refused", s.bad, "padding", s.padding,
		"arrival_jitter_p50", pct(s.jitter, 50), "arrival_jitter_p99", pct(s.jitter, 99),
		"handoff_p50", pct(s.handoff, 50), "handoff_p99", pct(s.handoff, 99))
}

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func (l *LiveService) handleDelete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	l.mu.Lock()
	s := l.sessions[id]
	l.mu.Unlock()
	u := UserFrom(r.Context())
	if s == nil || (s.user != u.Username && u.Role != auth.RoleAdmin) {
		writeError(w, r, errNotFound)
		return
	}
	s.end("hangup")
	l.s.audit(r, audit.LiveHangup, id, nil)
	w.WriteHeader(http.StatusOK)
}
