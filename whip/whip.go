// Package whip is live speech ingest over WHIP (RFC 9725): a phone's
// WebRTC offer becomes a pion peer connection whose Opus packets (RFC 7587)
// feed a sink (a village's live broadcast, or the commune's signed chunks
// to its villages), and are archived untouched as Ogg Opus (RFC 7845,
// internal/ogg). It shares the camera relay's ICE setup (package rtc), so
// WHIP and WHEP answers carry the same candidates on the one UDP port.
//
// It has no HTTP: web (the village) and commune parse the request, check
// the role and call Service.Start or Service.StartSink and
// Service.Hangup, mapping the errors of errors.go to statuses. Domain
// packages never import it (it imports pion).
package whip

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/loalang/loalang/audit"
	"github.com/loalang/loalang/broadcast"
	"github.com/loalang/loalang/rtc"
)

// Engine starts live speech (broadcast.Engine.Live), for Start.
type Engine interface {
	Live(ctx context.Context, req broadcast.Request) (*broadcast.Live, error)
}

// Sink is what a session feeds: a village's live broadcast
// (*broadcast.Live) or the commune's signed chunks to its villages. The
// session writes each received 20 ms Opus packet (RFC 7587) with its
// capture time, ends when Done is closed or WritePacket fails, and calls
// Close once when it ends, whatever ended it.
type Sink interface {
	// ID names the sink; it is also the WHIP resource id (RFC 9725 §4.2,
	// Location) and the archive's file name.
	ID() string
	Done() <-chan struct{}
	WritePacket(pkt []byte, captured time.Time) error
	Close() error
}

// Opener starts a session's sink once the peer connection is negotiated;
// its error (a busy zone, an unknown village) tears the connection down
// and is returned by StartSink unchanged.
type Opener func(ctx context.Context) (Sink, error)

// Config configures the ingest.
type Config struct {
	// Engine starts the live broadcasts of Start; nil when only StartSink
	// is used (the commune).
	Engine Engine
	// ArchiveDir receives <sink-id>.opus, the received packets as Ogg
	// Opus (RFC 7845).
	ArchiveDir string
	// ArchiveKeep and ArchiveMaxBytes bound the archive: at start and
	// after each session, archives older than ArchiveKeep are deleted,
	// then the oldest until the rest fit in ArchiveMaxBytes. Zero means
	// DefaultArchiveKeep and DefaultArchiveMaxBytes.
	ArchiveKeep     time.Duration
	ArchiveMaxBytes int64
	// ICE, when set, is the camera relay's ICE setup (its UDP mux, listen
	// addresses, loopback and NAT 1:1 rules: camera.Relay.ICESettingEngine),
	// so WHIP answers carry the same candidates as WHEP answers. The service
	// copies it and sets its own ICE timeouts. Without it the service opens
	// its own socket from UDPPort, ListenIPs, LoopbackCandidates and
	// NAT1To1IPs with package rtc, and closes it in Close.
	ICE                *webrtc.SettingEngine
	UDPPort            int
	ListenIPs          []string
	LoopbackCandidates bool
	NAT1To1IPs         []string
	// ICEServers are the STUN and TURN servers (camera.Relay.ICEServers).
	ICEServers []webrtc.ICEServer
	// Audit receives the live.end entry of each session, whatever ended
	// it; nil drops them.
	Audit func(audit.Entry)
	// Now is the clock of audit entries; nil means time.Now.
	Now func() time.Time
	Log *slog.Logger
}

// Service holds the WHIP sessions. Close ends them all.
type Service struct {
	cfg Config
	log *slog.Logger
	se  webrtc.SettingEngine
	mux ice.UDPMux // own socket only; nil when sharing the relay's

	mu       sync.Mutex
	sessions map[string]*session
	closed   bool
	wg       sync.WaitGroup
}

// Started is what Start returns for the HTTP answer and the audit entry.
type Started struct {
	// ID is the sink's id (at the village the broadcast id), also the WHIP
	// resource id (RFC 9725 §4.2, Location).
	ID string
	// Answer is the SDP answer.
	Answer string
	// Archive is the path of the session's Ogg Opus archive.
	Archive string
}

// opusFmtp is what the answer asks of the browser's encoder (RFC 7587
// §6.1): mono, in-band FEC for lossy Wi-Fi.
const opusFmtp = "minptime=10;useinbandfec=1;stereo=0;sprop-stereo=0"

// New creates the archive directory and sets up ICE (shared or its own).
func New(cfg Config) (*Service, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.ArchiveKeep <= 0 {
		cfg.ArchiveKeep = DefaultArchiveKeep
	}
	if cfg.ArchiveMaxBytes <= 0 {
		cfg.ArchiveMaxBytes = DefaultArchiveMaxBytes
	}
	if err := os.MkdirAll(cfg.ArchiveDir, 0o700); err != nil {
		return nil, fmt.Errorf("live archive dir: %w", err)
	}
	l := &Service{cfg: cfg, log: cfg.Log.With("component", "live"), sessions: map[string]*session{}}
	l.pruneArchive()
	if cfg.ICE != nil {
		l.se = *cfg.ICE
	} else if err := l.ownICE(); err != nil {
		return nil, err
	}
	// A phone that vanished (no DELETE) is noticed within ~5 s.
	l.se.SetICETimeouts(2*time.Second, 5*time.Second, time.Second)
	return l, nil
}

// pruneArchive applies the archive's retention (Config.ArchiveKeep,
// ArchiveMaxBytes), sparing the sessions still writing; a failure is
// logged as an error, and the next session's end tries again.
func (l *Service) pruneArchive() {
	l.mu.Lock()
	active := make(map[string]bool, len(l.sessions))
	for id := range l.sessions {
		active[id+".opus"] = true
	}
	l.mu.Unlock()
	n, err := pruneArchive(l.cfg.ArchiveDir, l.cfg.ArchiveKeep, l.cfg.ArchiveMaxBytes, l.cfg.Now(), active)
	if err != nil {
		l.log.Error("live archive retention failed", "err", err)
	}
	if n > 0 {
		l.log.Info("live archives deleted by retention", "count", n, "keep", l.cfg.ArchiveKeep, "max_bytes", l.cfg.ArchiveMaxBytes)
	}
}

// ownICE sets up ICE with package rtc when the camera relay's setup is not
// shared (tests, a daemon without the relay).
func (l *Service) ownICE() error {
	cfg := l.cfg
	ips, err := rtc.ParseListenIPs(cfg.ListenIPs)
	if err != nil {
		return fmt.Errorf("live ICE listen addresses: %w", err)
	}
	if l.mux, err = rtc.OpenUDPMux(cfg.UDPPort, ips, nil); err != nil {
		return fmt.Errorf("live ICE: %w", err)
	}
	l.se.SetICEUDPMux(l.mux)
	// UDP4 only, loopback only when configured: the same ICE setup as the
	// camera relay (DESIGN.md platform facts).
	l.se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	l.se.SetIncludeLoopbackCandidate(cfg.LoopbackCandidates)
	rtc.Tune(&l.se)
	if err := rtc.SetNAT1To1(&l.se, cfg.NAT1To1IPs); err != nil {
		l.mux.Close()
		return err
	}
	return nil
}

// Addr is the service's own ICE UDP socket's address, or nil when it
// shares the camera relay's (camera.Relay.ICEAddr).
func (l *Service) Addr() net.Addr {
	if l.mux == nil {
		return nil
	}
	if addrs := l.mux.GetListenAddresses(); len(addrs) > 0 {
		return addrs[0]
	}
	return nil
}

// Close ends every session (each broadcast ends cleanly, its archive is
// closed) and releases its own socket. It is idempotent.
func (l *Service) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	sessions := make([]*session, 0, len(l.sessions))
	for _, s := range l.sessions {
		sessions = append(sessions, s)
	}
	l.mu.Unlock()
	for _, s := range sessions {
		s.end("server shutting down")
	}
	l.wg.Wait()
	if l.mux != nil {
		return l.mux.Close() // closes the socket too
	}
	return nil
}

// Hangup ends session id on behalf of user (RFC 9725 §4.3). Only its
// creator or an admin may: anyone else gets ErrNotFound, as for an unknown
// id, so sessions cannot be probed.
func (l *Service) Hangup(id, user string, admin bool) error {
	l.mu.Lock()
	s := l.sessions[id]
	l.mu.Unlock()
	if s == nil || (s.user != user && !admin) {
		return fmt.Errorf("live session %q: %w", id, ErrNotFound)
	}
	s.end("hangup")
	return nil
}

// offersOpus is a cheap check before any WebRTC work.
func offersOpus(sdp string) bool {
	low := strings.ToLower(sdp)
	return strings.Contains(low, "m=audio") && strings.Contains(low, "opus/48000") && strings.Contains(low, "v=0")
}

// Start negotiates the peer connection for offer, then starts the live
// broadcast req on behalf of user with Config.Engine; a refused broadcast
// (zone busy, unknown zone: the engine's errors) tears the connection
// down. A bad offer is ErrBadOffer.
func (l *Service) Start(ctx context.Context, offer, user string, req broadcast.Request) (Started, error) {
	if l.cfg.Engine == nil {
		return Started{}, errors.New("whip: no engine")
	}
	return l.StartSink(ctx, offer, user, func(ctx context.Context) (Sink, error) {
		live, err := l.cfg.Engine.Live(ctx, req)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return live, nil
	})
}

// StartSink is Start with any sink: it negotiates the peer connection for
// offer, then calls open on behalf of user and feeds the sink it returns;
// an error from open tears the connection down. A bad offer is
// ErrBadOffer.
func (l *Service) StartSink(ctx context.Context, offer, user string, open Opener) (Started, error) {
	if !offersOpus(offer) {
		return Started{}, fmt.Errorf("%w: the offer has no sending audio m-section with Opus", ErrBadOffer)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return Started{}, ErrClosed
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
		return Started{}, fmt.Errorf("register opus: %w", err)
	}
	reg := &interceptor.Registry{}
	if err := webrtc.ConfigureRTCPReports(reg); err != nil {
		return Started{}, fmt.Errorf("configure rtcp reports: %w", err)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(l.se), webrtc.WithInterceptorRegistry(reg))
	pc, err := api.NewPeerConnection(webrtc.Configuration{ICEServers: l.cfg.ICEServers})
	if err != nil {
		return Started{}, fmt.Errorf("new peer connection: %w", err)
	}
	fail := func(err error) (Started, error) {
		pc.Close()
		return Started{}, err
	}
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		return fail(fmt.Errorf("add transceiver: %w", err))
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return fail(fmt.Errorf("%w: %v", ErrBadOffer, err))
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return fail(fmt.Errorf("%w: no answer possible: %v", ErrBadOffer, err))
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
		return fail(fmt.Errorf("%w: no Opus audio could be negotiated", ErrBadOffer))
	}

	live, err := open(ctx)
	if err != nil {
		return fail(err)
	}
	s := &session{
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
	s.log.Info("live session answered", "took", time.Since(s.created).Round(time.Millisecond))
	return Started{ID: s.id, Answer: answer, Archive: s.path}, nil
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

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}
