// Package camera relays RTSP cameras (H.264/H.265) to browsers over WebRTC
// without transcoding: one RTSP ingest per camera, a GOP cache so a new
// viewer starts on a keyframe at once, and a per-viewer packetizer and bounded
// queue so viewers survive camera reconnects and a slow viewer never slows
// the others. It has no HTTP: the web package calls Offer and Hangup for WHEP
// (RFC 9725) POST and DELETE. See docs/cameras.md.
package camera

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"

	"github.com/loalang/loalang/rtc"
)

// Config configures the relay. Zero durations and sizes take the defaults of
// DefaultConfig; UDPPort 0 means an ephemeral port (tests).
type Config struct {
	// UDPPort is the single UDP port all WebRTC media uses (ICE UDP mux,
	// RFC 8445 host candidates). DefaultConfig sets 8189; 0 picks a free port.
	UDPPort int
	// ListenIPs are the local IPv4 addresses the ICE sockets listen on, all
	// on UDPPort; the answer carries exactly these as host candidates
	// (RFC 8445 §5.1.1.1). Empty means every address, and then pion offers
	// a host candidate per interface, which slows the first frame: the
	// viewer checks every pair before ICE settles.
	ListenIPs []string
	// ListenIP is a one-address ListenIPs, kept for callers that set it;
	// ignored when ListenIPs is set.
	ListenIP string
	// ICETCP also accepts ICE over TCP (RFC 6544 passive candidates) on the
	// same port number, for networks that block UDP.
	ICETCP bool
	// STUNServers are stun: URLs (RFC 7064). None by default: the village
	// may be offline and public STUN would leak addresses.
	STUNServers []string
	// TURNServers are turn:/turns: URLs (RFC 7065) with TURNUsername and
	// TURNCredential. The credential is a secret and never logged.
	TURNServers                  []string
	TURNUsername, TURNCredential string
	// NAT1To1IPs are public addresses that replace the host candidates'
	// addresses, for a box behind a 1:1 NAT.
	NAT1To1IPs []string
	// LoopbackCandidates gathers 127.0.0.1 candidates (UDP4 only), needed
	// when the viewer runs on the same host (tests, headless Chromium).
	LoopbackCandidates bool
	// MaxViewersPerCamera and MaxViewers bound concurrent sessions; 0 means
	// unlimited.
	MaxViewersPerCamera, MaxViewers int
	// HandshakeTimeout bounds Offer (camera describe + ICE gathering) and the
	// time until the viewer's ICE/DTLS connection is up.
	HandshakeTimeout time.Duration
	// IdleClose is how long an on-demand camera keeps streaming after its
	// last viewer left.
	IdleClose time.Duration
	// RTSPTimeout is the RTSP read/write timeout; a camera silent for this
	// long is reconnected.
	RTSPTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the exponential reconnect backoff.
	ReconnectMin, ReconnectMax time.Duration
	// ViewerQueueFrames and ViewerQueueDelay bound each viewer's queue; when
	// either is exceeded the viewer skips to the next keyframe.
	ViewerQueueFrames int
	ViewerQueueDelay  time.Duration
	// OnView, when set, receives one record per viewing session that reached
	// the connected state, after it ended (for the audit trail). It is called
	// from the session's goroutine and must not block for long.
	OnView func(ViewRecord)
}

// DefaultConfig returns the production defaults.
func DefaultConfig() Config {
	return Config{
		UDPPort:             8189,
		MaxViewersPerCamera: 10,
		MaxViewers:          50,
		HandshakeTimeout:    10 * time.Second,
		IdleClose:           15 * time.Second,
		RTSPTimeout:         5 * time.Second,
		ReconnectMin:        500 * time.Millisecond,
		ReconnectMax:        30 * time.Second,
		ViewerQueueFrames:   150,
		ViewerQueueDelay:    time.Second,
	}
}

func (c *Config) applyDefaults() {
	d := DefaultConfig()
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = d.HandshakeTimeout
	}
	if c.IdleClose <= 0 {
		c.IdleClose = d.IdleClose
	}
	if c.RTSPTimeout <= 0 {
		c.RTSPTimeout = d.RTSPTimeout
	}
	if c.ReconnectMin <= 0 {
		c.ReconnectMin = d.ReconnectMin
	}
	if c.ReconnectMax < c.ReconnectMin {
		c.ReconnectMax = max(d.ReconnectMax, c.ReconnectMin)
	}
	if c.ViewerQueueFrames <= 0 {
		c.ViewerQueueFrames = d.ViewerQueueFrames
	}
	if c.ViewerQueueDelay <= 0 {
		c.ViewerQueueDelay = d.ViewerQueueDelay
	}
}

// Camera describes one RTSP camera. URL and SubstreamURL are stored without
// credentials (see SplitURL): the secrets are in Credentials and
// SubstreamCredentials, joined into the URL only to dial. A URL that still
// carries credentials works too; the relay never logs or returns them.
type Camera struct {
	// ID is the stable identifier used in the API and metrics.
	ID string
	// Name and Location are shown to operators.
	Name, Location string
	// URL is the main stream (rtsp:// or rtsps://), H.264 or H.265.
	URL string
	// SubstreamURL is an optional H.264 stream served to browsers that
	// cannot decode the main stream's H.265.
	SubstreamURL string
	// Credentials and SubstreamCredentials are the secrets of URL and
	// SubstreamURL (user information, credential values in path or query).
	Credentials, SubstreamCredentials Credentials
	// AlwaysOn keeps the ingest running without viewers. The zero value is
	// on demand: pull only while someone watches.
	AlwaysOn bool
}

// ViewRecord is one ended viewing session, for the audit trail.
type ViewRecord struct {
	SessionID, Viewer, CameraID string
	// Substream reports that the H.264 substream was served.
	Substream bool
	From, To  time.Time
	// Reason says why the session ended (hangup, ICE failed, camera removed...).
	Reason string
}

// State is the ingest state of a camera stream.
type State string

// Stream states.
const (
	StateIdle       State = "idle"
	StateConnecting State = "connecting"
	StateLive       State = "live"
	StateError      State = "error"
)

// StreamStatus is the live state of one ingest (main stream or substream).
type StreamStatus struct {
	State State `json:"state"`
	// Reason explains an error state or carries a warning (e.g. B-frames).
	Reason string `json:"reason,omitempty"`
	// Codec is "H264" or "H265" once described.
	Codec  string  `json:"codec,omitempty"`
	Width  int     `json:"width,omitempty"`
	Height int     `json:"height,omitempty"`
	FPS    float64 `json:"fps"`
	// Bitrate is the measured video bitrate in bit/s.
	Bitrate float64 `json:"bitrate"`
	Viewers int     `json:"viewers"`
	// Reconnects counts ingest sessions that ended in an error.
	Reconnects uint64 `json:"reconnects"`
	// DroppedFrames counts frames skipped by slow viewers.
	DroppedFrames uint64 `json:"dropped_frames"`
	// ParamsInserted counts keyframes the relay prefixed with SPS/PPS (and VPS).
	ParamsInserted uint64 `json:"params_inserted"`
}

// Status is a camera's public state; it never contains the URLs' credentials.
type Status struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Location string `json:"location,omitempty"`
	// URL is the main stream URL with credentials redacted.
	URL string `json:"url"`
	// HasSecret reports that the camera has credentials; they are never
	// shown.
	HasSecret bool `json:"has_secret,omitempty"`
	AlwaysOn  bool `json:"always_on"`
	StreamStatus
	// Substream is set when a substream is configured.
	Substream *StreamStatus `json:"substream,omitempty"`
}

// camEntry is one configured camera with its main and optional sub source.
type camEntry struct {
	cam  Camera
	main *source
	sub  *source
	// viewers counts sessions (including offers in progress) for the limit.
	viewers int
}

// Relay is the camera relay. Create it with New; it is safe for concurrent use.
type Relay struct {
	cfg Config
	log *slog.Logger

	se          webrtc.SettingEngine
	iceServers  []webrtc.ICEServer
	udpConns    []net.PacketConn
	batch       []*batchConn
	retransmits atomic.Uint64 // packets sent again on NACKs (nack.go)
	udpMux      ice.UDPMux
	tcpLn       net.Listener
	tcpMux      ice.TCPMux

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	cams     map[string]*camEntry
	sessions map[string]*viewer
	total    int // sessions including offers in progress
	closed   bool

	goMu     sync.Mutex // guards stopping and wg.Add against Close's wg.Wait
	stopping bool

	closeOnce sync.Once
	closeErr  error
}

// New creates the relay and opens its ICE port(s). Cameras are added with
// SetCameras; on-demand cameras are pulled only while someone watches.
func New(cfg Config, log *slog.Logger) (*Relay, error) {
	cfg.applyDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Relay{
		cfg:      cfg,
		log:      log.With("component", "camera"),
		cams:     map[string]*camEntry{},
		sessions: map[string]*viewer{},
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if err := r.setupICE(); err != nil {
		r.cancel()
		r.closeICE()
		return nil, err
	}
	return r, nil
}

func (r *Relay) setupICE() error {
	cfg := r.cfg
	// UDP4 only: pion's loopback candidates and the UDP mux are reliable on
	// IPv4 here (DESIGN.md, platform facts).
	if err := r.openUDPMux(); err != nil {
		return err
	}
	se := webrtc.SettingEngine{}
	networks := []webrtc.NetworkType{webrtc.NetworkTypeUDP4}
	if cfg.ICETCP {
		ln, err := r.listenICETCP()
		if err != nil {
			return err
		}
		r.tcpLn = ln
		r.tcpMux = webrtc.NewICETCPMux(nil, ln, 32)
		se.SetICETCPMux(r.tcpMux)
		networks = append(networks, webrtc.NetworkTypeTCP4)
	}
	se.SetICEUDPMux(r.udpMux)
	se.SetNetworkTypes(networks)
	se.SetIncludeLoopbackCandidate(cfg.LoopbackCandidates)
	if ips, _ := ParseListenIPs(cfg.listenIPs()); len(ips) > 0 {
		// TCP candidates (gathered per interface address) only on the
		// configured addresses too.
		se.SetIPFilter(func(ip net.IP) bool {
			a, ok := netip.AddrFromSlice(ip)
			return ok && slices.Contains(ips, a.Unmap())
		})
	}
	tuneICE(&se)
	// mDNS candidates are useless to a server and cost a multicast socket.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// A viewer whose browser vanished without DELETE is dropped after ~10 s.
	se.SetICETimeouts(4*time.Second, 10*time.Second, 2*time.Second)
	if len(cfg.NAT1To1IPs) > 0 {
		rules, err := NATRewriteRules(cfg.NAT1To1IPs)
		if err != nil {
			return fmt.Errorf("NAT 1:1 IPs: %w", err)
		}
		if err := se.SetICEAddressRewriteRules(rules...); err != nil {
			return fmt.Errorf("set NAT 1:1 IPs: %w", err)
		}
	}
	r.se = se
	r.iceServers = rtc.ICEServers(cfg.STUNServers, cfg.TURNServers, cfg.TURNUsername, cfg.TURNCredential)
	return nil
}

// ICEAddr reports the local address of the ICE UDP socket (useful with UDPPort 0).
// With several listen addresses it is the first one's.
func (r *Relay) ICEAddr() net.Addr { return r.udpConns[0].LocalAddr() }

// listenICETCP listens for ICE-TCP (RFC 6544) on the UDP mux's port. With
// an ephemeral port (udp_port 0, tests) that port may be taken for TCP:
// then it opens the UDP mux again on another port, a few times.
func (r *Relay) listenICETCP() (net.Listener, error) {
	tcpIP := ""
	if ips := r.cfg.listenIPs(); len(ips) == 1 {
		tcpIP = ips[0]
	}
	for try := 0; ; try++ {
		port := r.udpConns[0].LocalAddr().(*net.UDPAddr).Port
		tcpAddr := net.JoinHostPort(tcpIP, strconv.Itoa(port))
		ln, err := net.Listen("tcp4", tcpAddr)
		if err == nil {
			return ln, nil
		}
		if r.cfg.UDPPort != 0 || try == 4 || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("listen ICE TCP %s: %w", tcpAddr, err)
		}
		if err := r.closeICE(); err != nil {
			return nil, fmt.Errorf("reopen ICE UDP: %w", err)
		}
		r.udpMux, r.udpConns, r.batch = nil, nil, nil
		if err := r.openUDPMux(); err != nil {
			return nil, err
		}
	}
}

func (r *Relay) closeICE() error {
	var errs []error
	if r.tcpMux != nil {
		errs = append(errs, r.tcpMux.Close())
	} else if r.tcpLn != nil {
		errs = append(errs, r.tcpLn.Close())
	}
	if r.udpMux != nil {
		errs = append(errs, r.udpMux.Close())
	} else {
		for _, c := range r.udpConns {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

// Run blocks until ctx is cancelled or the relay is closed, then closes the
// relay. Cancellation is not an error. The relay serves Offer calls from New
// on; Run only ties its lifetime to ctx.
func (r *Relay) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
	case <-r.ctx.Done():
	}
	return r.Close()
}

// ICEUDPMux returns the relay's ICE UDP mux, so that other WebRTC services
// (live speech over WHIP) share the one configured UDP port: the mux tells
// sessions apart by ICE username fragment (RFC 8445 §7.3). The relay owns
// it and closes it in Close.
func (r *Relay) ICEUDPMux() ice.UDPMux { return r.udpMux }

// Close hangs up every viewer, stops every ingest and closes the ICE ports,
// waiting for all goroutines. It is idempotent.
func (r *Relay) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		views := make([]*viewer, 0, len(r.sessions))
		for _, v := range r.sessions {
			views = append(views, v)
		}
		r.mu.Unlock()
		for _, v := range views {
			v.stop("relay closed")
		}
		r.goMu.Lock()
		r.stopping = true
		r.goMu.Unlock()
		r.cancel()
		r.wg.Wait()
		r.closeErr = r.closeICE()
	})
	return r.closeErr
}

// SetCameras replaces the camera list at runtime. New cameras are added,
// removed ones are stopped and their viewers hung up, and changed URLs make
// the ingest reconnect while viewers stay (they resume as after a camera
// reboot).
func (r *Relay) SetCameras(cams []Camera) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	seen := map[string]bool{}
	var removed []*camEntry
	for _, c := range cams {
		if c.ID == "" || seen[c.ID] {
			r.log.Warn("camera skipped", "camera", c.ID, "reason", "empty or duplicate id")
			continue
		}
		// The credentials go back into the URLs only here, for the
		// sources that dial them; logs and statuses use the stored form.
		mainURL, err := c.Credentials.Join(c.URL)
		subURL := ""
		if err == nil && c.SubstreamURL != "" {
			subURL, err = c.SubstreamCredentials.Join(c.SubstreamURL)
		}
		if err != nil {
			r.log.Warn("camera skipped", "camera", c.ID, "reason", "credentials do not match the URL", "err", err)
			continue
		}
		seen[c.ID] = true
		e := r.cams[c.ID]
		if e == nil {
			e = &camEntry{cam: c, main: newSource(r, c.ID, false, mainURL, c.AlwaysOn)}
			r.cams[c.ID] = e
			r.log.Info("camera added", "camera", c.ID, "url", c.Credentials.Redacted(RedactURL(c.URL)))
		} else {
			e.main.update(mainURL, c.AlwaysOn)
		}
		e.cam = c
		switch {
		case subURL == "" && e.sub != nil:
			removed = append(removed, &camEntry{sub: e.sub})
			e.sub = nil
		case subURL != "" && e.sub == nil:
			e.sub = newSource(r, c.ID, true, subURL, false)
		case subURL != "":
			e.sub.update(subURL, false)
		}
	}
	for id, e := range r.cams {
		if !seen[id] {
			delete(r.cams, id)
			removed = append(removed, e)
			r.log.Info("camera removed", "camera", id)
		}
	}
	r.mu.Unlock()
	for _, e := range removed {
		for _, s := range []*source{e.main, e.sub} {
			if s != nil {
				s.remove()
			}
		}
	}
}

// List reports every configured camera's state, sorted by ID.
func (r *Relay) List() []Status {
	r.mu.Lock()
	entries := make([]*camEntry, 0, len(r.cams))
	for _, e := range r.cams {
		entries = append(entries, e)
	}
	r.mu.Unlock()
	out := make([]Status, 0, len(entries))
	for _, e := range entries {
		st := Status{
			ID: e.cam.ID, Name: e.cam.Name, Location: e.cam.Location,
			URL:          e.cam.Credentials.Redacted(RedactURL(e.cam.URL)),
			HasSecret:    !e.cam.Credentials.IsZero() || !e.cam.SubstreamCredentials.IsZero() || RedactURL(e.cam.URL) != e.cam.URL,
			AlwaysOn:     e.cam.AlwaysOn,
			StreamStatus: e.main.status(),
		}
		if e.sub != nil {
			ss := e.sub.status()
			st.Substream = &ss
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b Status) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	return out
}
