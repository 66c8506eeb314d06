package camera

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Session is the result of a WHEP offer (RFC 9725 §4.2): the web layer
// answers 201 Created with AnswerSDP and a Location naming ID.
type Session struct {
	ID        string
	AnswerSDP string
	// Codec is the codec served ("H264" or "H265"); Substream reports that
	// the camera's H.264 substream was chosen over its H.265 main stream.
	Codec     string
	Substream bool
}

// offeredCodec is one video payload type of the offer (RFC 8866 §6.6 rtpmap, fmtp).
type offeredCodec struct {
	pt   uint8
	name string // upper case encoding name
	fmtp string
}

func (c offeredCodec) param(key string) string {
	for _, kv := range strings.Split(c.fmtp, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if strings.EqualFold(k, key) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// parseOffer checks that the offer can set up a WebRTC video receiver and
// lists its video codecs.
func parseOffer(raw string) ([]offeredCodec, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	_, sessUfrag := sd.Attribute("ice-ufrag")
	_, sessFP := sd.Attribute("fingerprint")
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Media != "video" || md.MediaName.Port.Value == 0 {
			continue
		}
		if _, ok := md.Attribute("sendonly"); ok {
			continue
		}
		if _, ok := md.Attribute("inactive"); ok {
			continue
		}
		if _, ok := md.Attribute("ice-ufrag"); !ok && !sessUfrag {
			return nil, fmt.Errorf("%w: video m-section has no a=ice-ufrag (RFC 8839 §5.4)", ErrBadSDP)
		}
		if _, ok := md.Attribute("fingerprint"); !ok && !sessFP {
			return nil, fmt.Errorf("%w: no a=fingerprint (RFC 8122 §5)", ErrBadSDP)
		}
		fmtps := map[uint8]string{}
		names := map[uint8]string{}
		for _, a := range md.Attributes {
			pts, rest, ok := strings.Cut(a.Value, " ")
			if !ok {
				continue
			}
			pt, err := strconv.ParseUint(pts, 10, 8)
			if err != nil {
				continue
			}
			switch a.Key {
			case "rtpmap":
				name, _, _ := strings.Cut(rest, "/")
				names[uint8(pt)] = strings.ToUpper(strings.TrimSpace(name))
			case "fmtp":
				fmtps[uint8(pt)] = strings.TrimSpace(rest)
			}
		}
		var out []offeredCodec
		for _, f := range md.MediaName.Formats {
			pt, err := strconv.ParseUint(f, 10, 8)
			if err != nil {
				continue
			}
			if n, ok := names[uint8(pt)]; ok {
				out = append(out, offeredCodec{pt: uint8(pt), name: n, fmtp: fmtps[uint8(pt)]})
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("%w: video m-section lists no codec", ErrBadSDP)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: no video m-section that can receive", ErrBadSDP)
}

func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// spawn runs fn in a goroutine the relay waits for on Close; it refuses once
// the relay is closing.
func (r *Relay) spawn(fn func()) bool {
	r.goMu.Lock()
	defer r.goMu.Unlock()
	if r.stopping {
		return false
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		fn()
	}()
	return true
}

// reserve counts a session against the limits.
func (r *Relay) reserve(cameraID string) (*camEntry, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	e := r.cams[cameraID]
	if e == nil {
		return nil, fmt.Errorf("camera %s: %w", cameraID, ErrNotFound)
	}
	if r.cfg.MaxViewers > 0 && r.total >= r.cfg.MaxViewers {
		return nil, fmt.Errorf("relay serves %d viewers already: %w", r.total, ErrTooManyViewers)
	}
	if r.cfg.MaxViewersPerCamera > 0 && e.viewers >= r.cfg.MaxViewersPerCamera {
		return nil, fmt.Errorf("camera %s has %d viewers already: %w", cameraID, e.viewers, ErrTooManyViewers)
	}
	e.viewers++
	r.total++
	return e, nil
}

func (r *Relay) unreserve(e *camEntry) {
	r.mu.Lock()
	e.viewers--
	r.total--
	r.mu.Unlock()
}

func (r *Relay) endSession(v *viewer) {
	r.mu.Lock()
	delete(r.sessions, v.id)
	v.entry.viewers--
	r.total--
	r.mu.Unlock()
}

// Offer handles a WHEP POST (RFC 9725 §4.2): it starts the camera if it is
// on demand, chooses a codec the browser offered, and returns an answer that
// already holds all ICE candidates (gathering complete, no trickle). The
// whole call is bounded by ctx and Config.HandshakeTimeout. viewer names the
// user for the audit trail.
func (r *Relay) Offer(ctx context.Context, cameraID, offerSDP, viewer string) (Session, error) {
	offered, err := parseOffer(offerSDP)
	if err != nil {
		return Session{}, err
	}
	e, err := r.reserve(cameraID)
	if err != nil {
		return Session{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.HandshakeTimeout)
	defer cancel()

	r.mu.Lock()
	cam, src, sub := e.cam, e.main, e.sub
	r.mu.Unlock()
	src.acquire()
	info, err := src.waitInfo(ctx)
	if err != nil {
		src.release()
		r.unreserve(e)
		return Session{}, err
	}

	// The codec table decides: its pick, and whether a browser that cannot
	// decode the main stream goes to the substream.
	useSub := false
	cd := codecByName(info.codec)
	chosen, ok := cd.pick(offered, info.profile)
	if !ok && cd.substreamFirst && sub != nil {
		src.release()
		src, useSub = sub, true
		src.acquire()
		info, err = src.waitInfo(ctx)
		if err != nil {
			src.release()
			r.unreserve(e)
			return Session{}, fmt.Errorf("substream: %w", err)
		}
		cd = codecByName(info.codec)
		chosen, ok = cd.pick(offered, info.profile)
	}
	if !ok {
		src.release()
		r.unreserve(e)
		if useSub {
			return Session{}, fmt.Errorf("camera %s substream sends %s and the browser offered no %s (packetization-mode=1): %w",
				cam.ID, cd.label, cd.label, ErrCodecUnsupported)
		}
		return Session{}, fmt.Errorf("camera %s sends %s and the browser offered no %s%s: %w",
			cam.ID, cd.label, cd.label, cd.substreamHint, ErrCodecUnsupported)
	}

	id := newSessionID()
	v := newViewer(r, id, viewer, e, src, info.codec, useSub)
	answer, err := r.negotiate(ctx, v, chosen, offerSDP)
	if err != nil {
		if v.pc != nil {
			_ = v.pc.Close()
		}
		src.release()
		r.unreserve(e)
		return Session{}, err
	}
	r.mu.Lock()
	r.sessions[id] = v
	r.mu.Unlock()
	if !r.spawn(v.run) {
		_ = v.pc.Close()
		src.release()
		r.endSession(v)
		return Session{}, ErrClosed
	}
	v.log.Info("viewer offer answered", "viewer", viewer, "codec", info.codec, "substream", useSub,
		"pt", chosen.pt, "took", time.Since(v.created).Round(time.Millisecond))
	return Session{ID: id, AnswerSDP: answer, Codec: info.codec, Substream: useSub}, nil
}

// negotiate builds the peer connection for v with exactly the chosen codec
// and returns the complete answer.
func (r *Relay) negotiate(ctx context.Context, v *viewer, chosen offeredCodec, offerSDP string) (string, error) {
	cd := codecByName(v.codec)
	capab := webrtc.RTPCodecCapability{
		MimeType: cd.mime, ClockRate: cd.clockRate, SDPFmtpLine: chosen.fmtp,
		RTCPFeedback: []webrtc.RTCPFeedback{{Type: "ccm", Parameter: "fir"}},
	}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: capab, PayloadType: webrtc.PayloadType(chosen.pt),
	}, webrtc.RTPCodecTypeVideo); err != nil {
		return "", fmt.Errorf("register codec: %w", err)
	}
	reg := &interceptor.Registry{}
	// NACKs are answered from the viewer's own history (nack.go) rather
	// than by pion's responder interceptor, which copies every packet; the
	// relay sends and never receives media, so pion's NACK generator (a
	// 100 ms ticker per session) has nothing to do either.
	m.RegisterFeedback(webrtc.RTCPFeedback{Type: "nack"}, webrtc.RTPCodecTypeVideo)
	m.RegisterFeedback(webrtc.RTCPFeedback{Type: "nack", Parameter: "pli"}, webrtc.RTPCodecTypeVideo)
	if err := webrtc.ConfigureRTCPReports(reg); err != nil {
		return "", fmt.Errorf("configure rtcp reports: %w", err)
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(r.se), webrtc.WithInterceptorRegistry(reg))
	pc, err := api.NewPeerConnection(r.iceConfigFor(ctx))
	if err != nil {
		return "", fmt.Errorf("new peer connection: %w", err)
	}
	v.pc = pc
	pc.OnConnectionStateChange(v.onConnectionState)
	v.track, err = webrtc.NewTrackLocalStaticRTP(capab, "video", "loalang-"+v.camID)
	if err != nil {
		return "", fmt.Errorf("new track: %w", err)
	}
	if v.sender, err = pc.AddTrack(v.track); err != nil {
		return "", fmt.Errorf("add track: %w", err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offerSDP}); err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("create answer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return "", fmt.Errorf("set local description: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", fmt.Errorf("ICE gathering: %w", ctx.Err())
	}
	return pc.LocalDescription().SDP, nil
}

// Hangup ends a WHEP session (RFC 9725 §4.3, HTTP DELETE on the session
// URL) and returns once it is torn down.
func (r *Relay) Hangup(sessionID string) error {
	r.mu.Lock()
	v := r.sessions[sessionID]
	r.mu.Unlock()
	if v == nil {
		return fmt.Errorf("session %s: %w", sessionID, ErrNotFound)
	}
	v.stop("hangup")
	<-v.finished
	return nil
}

// Sessions reports the IDs of the open sessions of a camera ("" for all).
func (r *Relay) Sessions(cameraID string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for id, v := range r.sessions {
		if cameraID == "" || v.camID == cameraID {
			out = append(out, id)
		}
	}
	return out
}
