// Package camsim simulates an RTSP IP camera: an RTSP server (RFC 2326 /
// RFC 7826 via gortsplib) that loops a small committed H.264 or H.265 clip as a
// live stream, with the quirks of cheap village cameras available as options
// (parameter sets only in the SDP, sessions dropped, server restarted).
//
// camsim imports nothing from loalang, so it can only agree with the relay
// through the RTSP protocol.
package camsim

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"
	"github.com/pion/rtp"
)

// Codec names the video codec a simulated camera sends.
type Codec string

// Supported codecs.
const (
	// H264 is ITU-T H.264 / AVC, RTP payload format RFC 6184.
	H264 Codec = "H264"
	// H265 is ITU-T H.265 / HEVC, RTP payload format RFC 7798.
	H265 Codec = "H265"
)

// The default clips: testsrc, 640x360, 15 fps, GOP 15 (1 s), 3 s, no B-frames.
// Regenerate with testdata/gen.sh.
var (
	//go:embed testdata/clip.h264
	clipH264 []byte
	//go:embed testdata/clip.h265
	clipH265 []byte
)

// Options configures a simulated camera. The zero value is a 15 fps H.264
// camera that sends SPS/PPS in the SDP and in-band before every IDR.
type Options struct {
	// Codec selects the embedded clip when Clip is nil. Default H264.
	Codec Codec
	// Clip is an Annex B elementary stream to loop instead of the embedded clip.
	// Parameter sets must appear before the first random-access picture.
	Clip []byte
	// FPS is the frame rate the clip is played at. Default 15.
	FPS int
	// Path is the RTSP path served. Default "/stream".
	Path string
	// ParamsOnlyInSDP strips VPS/SPS/PPS from the stream so that they are only
	// in the SDP sprop parameters, as many live encoders do (RFC 6184 §8.2.1).
	ParamsOnlyInSDP bool
	// EmbedSendTime prefixes each access unit with an SEI user_data_unregistered
	// message carrying the wall-clock send time (see ParseSendTime).
	EmbedSendTime bool
	// UDPRTPAddress and UDPRTCPAddress enable the UDP transport (RFC 7826 §18.54)
	// on fixed ports; without them the camera only offers TCP interleaving and
	// clients have to fall back to TCP.
	UDPRTPAddress, UDPRTCPAddress string
	// Username and Password, when Username is set, make the camera demand
	// RTSP authentication (RFC 7826 §19.1, Basic or Digest) on DESCRIBE
	// and SETUP, as real cameras do; wrong or missing credentials get 401.
	Username, Password string
	// Query, when set, is the exact query string DESCRIBE must carry, as on
	// cameras that take their credentials in the URL
	// ("?user=admin&password=..."); any other query gets 401.
	Query string
	// Logger receives debug events; nil discards them.
	Logger *slog.Logger
}

// Sim is one simulated camera. Start and Close may be called repeatedly to
// simulate a camera that reboots on the same address.
type Sim struct {
	opts   Options
	log    *slog.Logger
	aus    []accessUnit
	params [][]byte // VPS (H.265), SPS, PPS in order
	codec  Codec

	mu       sync.Mutex
	server   *gortsplib.Server
	stream   *gortsplib.ServerStream
	sessions map[*gortsplib.ServerSession]struct{}
	cancel   context.CancelFunc
	done     chan struct{}
	addr     string
}

// New parses the clip and prepares a camera; it does not listen yet.
func New(opts Options) (*Sim, error) {
	if opts.Codec == "" {
		opts.Codec = H264
	}
	if opts.Codec != H264 && opts.Codec != H265 {
		return nil, fmt.Errorf("camsim: unsupported codec %q", opts.Codec)
	}
	if opts.FPS <= 0 {
		opts.FPS = 15
	}
	if opts.Path == "" {
		opts.Path = "/stream"
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	clip := opts.Clip
	if clip == nil {
		clip = clipH264
		if opts.Codec == H265 {
			clip = clipH265
		}
	}
	s := &Sim{opts: opts, codec: opts.Codec, log: log.With("component", "camsim")}
	nalus := splitAnnexB(clip)
	var vps, sps, pps []byte
	for _, n := range nalus {
		ni := classify(s.codec, n)
		if !ni.param {
			continue
		}
		switch {
		case s.codec == H265 && ni.typ == 32 && vps == nil:
			vps = n
		case (s.codec == H265 && ni.typ == 33 || s.codec == H264 && ni.typ == 7) && sps == nil:
			sps = n
		case (s.codec == H265 && ni.typ == 34 || s.codec == H264 && ni.typ == 8) && pps == nil:
			pps = n
		}
	}
	if sps == nil || pps == nil || (s.codec == H265 && vps == nil) {
		return nil, errors.New("camsim: clip has no parameter sets")
	}
	if s.codec == H265 {
		s.params = [][]byte{vps, sps, pps}
	} else {
		s.params = [][]byte{sps, pps}
	}
	aus := groupAccessUnits(s.codec, nalus)
	// Start the loop at a random-access picture.
	for len(aus) > 0 && !aus[0].random {
		aus = aus[1:]
	}
	if len(aus) == 0 {
		return nil, errors.New("camsim: clip has no random-access picture")
	}
	for i := range aus {
		aus[i].nalus = s.shape(aus[i])
	}
	s.aus = aus
	return s, nil
}

// shape strips or adds in-band parameter sets according to the options.
func (s *Sim) shape(au accessUnit) [][]byte {
	out := make([][]byte, 0, len(au.nalus)+3)
	hasParams := false
	for _, n := range au.nalus {
		if classify(s.codec, n).param {
			hasParams = true
			if s.opts.ParamsOnlyInSDP {
				continue
			}
		}
		out = append(out, n)
	}
	if au.random && !hasParams && !s.opts.ParamsOnlyInSDP {
		out = append(append([][]byte{}, s.params...), out...)
	}
	return out
}

// Codec reports the codec the camera sends.
func (s *Sim) Codec() Codec { return s.codec }

// Frames reports how many access units one loop of the clip holds.
func (s *Sim) Frames() int { return len(s.aus) }

func (s *Sim) description() *description.Session {
	var f format.Format
	if s.codec == H265 {
		f = &format.H265{PayloadTyp: 96, VPS: s.params[0], SPS: s.params[1], PPS: s.params[2]}
	} else {
		f = &format.H264{PayloadTyp: 96, PacketizationMode: 1, SPS: s.params[0], PPS: s.params[1]}
	}
	return &description.Session{Medias: []*description.Media{{Type: description.MediaTypeVideo, Formats: []format.Format{f}}}}
}

// Start listens on addr (host:port, port 0 for an ephemeral one) and starts
// streaming. It returns the rtsp:// URL of the stream.
func (s *Sim) Start(addr string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.server != nil {
		return "", errors.New("camsim: already started")
	}
	srv := &gortsplib.Server{
		Handler:        &handler{s: s},
		RTSPAddress:    addr,
		UDPRTPAddress:  s.opts.UDPRTPAddress,
		UDPRTCPAddress: s.opts.UDPRTCPAddress,
		WriteQueueSize: 1024,
	}
	if err := srv.Start(); err != nil {
		return "", fmt.Errorf("camsim: listen %s: %w", addr, err)
	}
	stream := &gortsplib.ServerStream{Server: srv, Desc: s.description()}
	if err := stream.Initialize(); err != nil {
		srv.Close()
		return "", fmt.Errorf("camsim: init stream: %w", err)
	}
	s.server, s.stream = srv, stream
	s.sessions = map[*gortsplib.ServerSession]struct{}{}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	s.addr = srv.NetListener().Addr().String()
	go s.loop(ctx, stream, s.done)
	host, port, _ := net.SplitHostPort(s.addr)
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	url := "rtsp://" + net.JoinHostPort(host, port) + s.opts.Path
	s.log.Debug("camera started", "url", url, "codec", s.codec)
	return url, nil
}

// Addr reports the address the camera listens on, or "" when stopped.
func (s *Sim) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.server == nil {
		return ""
	}
	return s.addr
}

// DropSessions closes every RTSP session, as a camera does when its encoder
// restarts, while the server keeps listening.
func (s *Sim) DropSessions() {
	s.mu.Lock()
	sess := make([]*gortsplib.ServerSession, 0, len(s.sessions))
	for ss := range s.sessions {
		sess = append(sess, ss)
	}
	s.mu.Unlock()
	for _, ss := range sess {
		ss.Close()
	}
}

// Close stops streaming and the server. It is idempotent; Start may be called
// again afterwards on the same address to simulate a reboot.
func (s *Sim) Close() error {
	s.mu.Lock()
	srv, stream, cancel, done := s.server, s.stream, s.cancel, s.done
	s.server, s.stream, s.cancel, s.done = nil, nil, nil, nil
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	cancel()
	<-done
	stream.Close()
	srv.Close()
	return nil
}

func randUint32() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])
}

// loop paces access units at the configured frame rate on an absolute
// schedule, so timing does not drift with scheduling delays.
func (s *Sim) loop(ctx context.Context, stream *gortsplib.ServerStream, done chan struct{}) {
	defer close(done)
	medi := stream.Desc.Medias[0]
	type encoder interface {
		Encode([][]byte) ([]*rtp.Packet, error)
	}
	var enc encoder
	var err error
	switch f := medi.Formats[0].(type) {
	case *format.H264:
		enc, err = f.CreateEncoder()
	case *format.H265:
		enc, err = f.CreateEncoder()
	}
	if err != nil {
		s.log.Error("create encoder", "err", err)
		return
	}
	base0 := randUint32()
	interval := time.Second / time.Duration(s.opts.FPS)
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for i := int64(0); ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		au := s.aus[i%int64(len(s.aus))].nalus
		if s.opts.EmbedSendTime {
			au = append([][]byte{sendTimeSEI(s.codec, time.Now())}, au...)
		}
		pkts, err := enc.Encode(au)
		if err != nil {
			s.log.Error("encode", "err", err)
			return
		}
		ts := base0 + uint32(i*90000/int64(s.opts.FPS))
		for _, p := range pkts {
			p.Timestamp = ts
			if err := stream.WritePacketRTP(medi, p); err != nil {
				return
			}
		}
		next := start.Add(time.Duration(i+1) * interval)
		timer.Reset(time.Until(next))
	}
}

type handler struct{ s *Sim }

func (h *handler) OnSessionOpen(ctx *gortsplib.ServerHandlerOnSessionOpenCtx) {
	h.s.mu.Lock()
	if h.s.sessions != nil {
		h.s.sessions[ctx.Session] = struct{}{}
	}
	h.s.mu.Unlock()
}

func (h *handler) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	h.s.mu.Lock()
	delete(h.s.sessions, ctx.Session)
	h.s.mu.Unlock()
}

func (h *handler) streamFor(path string) (*base.Response, *gortsplib.ServerStream, error) {
	h.s.mu.Lock()
	st := h.s.stream
	h.s.mu.Unlock()
	if path != h.s.opts.Path || st == nil {
		return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
	}
	return &base.Response{StatusCode: base.StatusOK}, st, nil
}

// authorize checks the credentials the options demand; a nil response
// means they were given.
func (h *handler) authorize(conn *gortsplib.ServerConn, req *base.Request) (*base.Response, error) {
	o := h.s.opts
	if o.Username != "" && !conn.VerifyCredentials(req, o.Username, o.Password) {
		// gortsplib answers 401 with WWW-Authenticate when the client sent
		// no credentials, and closes the connection when they were wrong.
		return &base.Response{StatusCode: base.StatusUnauthorized}, liberrors.ErrServerAuth{}
	}
	return nil, nil
}

func (h *handler) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if res, err := h.authorize(ctx.Conn, ctx.Request); res != nil {
		return res, nil, err
	}
	if q := h.s.opts.Query; q != "" && ctx.Query != q {
		h.s.log.Debug("describe with wrong query")
		return &base.Response{StatusCode: base.StatusUnauthorized}, nil, nil
	}
	return h.streamFor(ctx.Path)
}

func (h *handler) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if res, err := h.authorize(ctx.Conn, ctx.Request); res != nil {
		return res, nil, err
	}
	return h.streamFor(ctx.Path)
}

func (h *handler) OnPlay(_ *gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	return &base.Response{StatusCode: base.StatusOK}, nil
}
