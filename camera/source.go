package camera

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"
)

// maxGOPFrames bounds the GOP cache; a camera with a longer GOP (or none)
// makes new viewers wait for the next keyframe instead of growing memory.
const maxGOPFrames = 300

var (
	errIdle      = errors.New("idle")
	errReconnect = errors.New("camera URL changed")
)

// streamInfo is what the relay knows about a described stream.
type streamInfo struct {
	codec         string
	profile       string // H.264 profile-level-id (RFC 6184 §8.1), hex
	width, height int
	spsFPS        float64
}

// frame is one access unit as RTP payloads (see packetize), cut once in the
// ingest and shared read-only by all viewers, which write only their own
// RTP headers.
type frame struct {
	pays    [][]byte
	pts     int64 // 90 kHz, from the RTSP session (RFC 3550 §5.1 timestamp)
	key     bool
	discont bool // first frame of a new RTSP session
	recv    time.Time
}

// source is one RTSP ingest (a camera's main stream or its substream) and
// its fan-out to viewers. One goroutine (run) owns the RTSP client.
type source struct {
	r     *Relay
	camID string
	sub   bool
	log   *slog.Logger

	reconnectCh chan struct{}

	mu        sync.Mutex
	url       string
	alwaysOn  bool
	removed   bool
	users     int // viewers and offers in progress
	idleSince time.Time
	running   bool
	stopRun   context.CancelFunc
	viewers   map[*viewer]struct{}
	direct    []*viewer     // fanOut's result, reused
	changed   chan struct{} // closed and replaced on every state change

	state  State
	reason string
	info   *streamInfo // nil until the current RTSP session is described
	last   streamInfo  // last known, for status
	bframe bool

	params   [][]byte // parameter sets in order: [VPS,] SPS, PPS
	awaitKey bool
	discont  bool
	gop      []*frame
	lastPTS  int64
	havePTS  bool

	statStart       time.Time
	statFrames      int
	statBytes       int
	fps, bitrate    float64
	lastFrame       time.Time
	reconnects      uint64
	dropped         uint64
	paramsInserted  uint64
	wentLiveSession bool
}

func newSource(r *Relay, camID string, sub bool, url string, alwaysOn bool) *source {
	s := &source{
		r: r, camID: camID, sub: sub, url: url, alwaysOn: alwaysOn,
		log:         r.log.With("camera", camID, "substream", sub),
		reconnectCh: make(chan struct{}, 1),
		viewers:     map[*viewer]struct{}{},
		changed:     make(chan struct{}),
		state:       StateIdle,
		idleSince:   time.Now(),
	}
	if alwaysOn {
		s.mu.Lock()
		s.startLocked()
		s.mu.Unlock()
	}
	return s
}

// notifyLocked wakes everyone waiting for a state change.
func (s *source) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *source) setStateLocked(st State, reason string) {
	if s.state == st && s.reason == reason {
		return
	}
	s.state, s.reason = st, reason
	s.notifyLocked()
}

// startLocked starts the ingest goroutine unless it runs or cannot run.
func (s *source) startLocked() {
	if s.running || s.removed {
		return
	}
	ctx, cancel := context.WithCancel(s.r.ctx)
	if !s.r.spawn(func() { s.run(ctx) }) {
		cancel()
		return
	}
	s.running, s.stopRun = true, cancel
	s.setStateLocked(StateConnecting, "")
}

// acquire registers a user (an Offer in progress or a viewer) and starts
// the ingest on demand.
func (s *source) acquire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users++
	s.startLocked()
}

// release unregisters a user; the ingest closes IdleClose after the last.
func (s *source) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users--
	if s.users == 0 {
		s.idleSince = time.Now()
	}
}

// update applies a changed URL (reconnect, viewers stay) or AlwaysOn flag.
func (s *source) update(url string, alwaysOn bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if url != s.url {
		s.url = url
		select {
		case s.reconnectCh <- struct{}{}:
		default:
		}
	}
	s.alwaysOn = alwaysOn
	if alwaysOn {
		s.startLocked()
	}
}

// remove stops the ingest and hangs up its viewers.
func (s *source) remove() {
	s.mu.Lock()
	s.removed = true
	if s.stopRun != nil {
		s.stopRun()
	}
	views := make([]*viewer, 0, len(s.viewers))
	for v := range s.viewers {
		views = append(views, v)
	}
	s.mu.Unlock()
	for _, v := range views {
		v.stop("camera removed")
	}
}

// waitInfo waits until the current RTSP session is described, so Offer
// knows the codec, or fails with ErrCameraDown.
func (s *source) waitInfo(ctx context.Context) (streamInfo, error) {
	for {
		s.mu.Lock()
		info, st, reason, ch := s.info, s.state, s.reason, s.changed
		s.mu.Unlock()
		switch {
		case info != nil:
			return *info, nil
		case st == StateError:
			return streamInfo{}, fmt.Errorf("camera %s: %s: %w", s.camID, reason, ErrCameraDown)
		case st == StateIdle:
			return streamInfo{}, fmt.Errorf("camera %s: removed: %w", s.camID, ErrCameraDown)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return streamInfo{}, fmt.Errorf("camera %s: not described within the handshake timeout: %w", s.camID, ErrCameraDown)
		}
	}
}

// attach adds a connected viewer and seeds its queue with the GOP cache, so
// its first frame is a keyframe with parameter sets (no black screen).
func (s *source) attach(v *viewer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed {
		return false
	}
	if len(s.gop) == 0 || len(s.gop) >= v.q.maxFrames {
		v.q.requireKey()
	} else {
		now := time.Now()
		for _, f := range s.gop {
			v.q.push(f, true, now)
		}
	}
	s.viewers[v] = struct{}{}
	return true
}

func (s *source) detach(v *viewer) {
	s.mu.Lock()
	delete(s.viewers, v)
	s.mu.Unlock()
}

func (s *source) idleExpired() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.alwaysOn && s.users == 0 && time.Since(s.idleSince) >= s.r.cfg.IdleClose
}

func (s *source) checkPeriod() time.Duration {
	return min(max(s.r.cfg.IdleClose/4, 10*time.Millisecond), 500*time.Millisecond)
}

// run owns the RTSP client: it connects, streams, and reconnects with
// exponential backoff and jitter until the source is idle, removed, or the
// relay closes.
func (s *source) run(ctx context.Context) {
	attempt := 0
	for {
		s.mu.Lock()
		url := s.url
		s.wentLiveSession = false
		s.mu.Unlock()
		err := s.session(ctx, url)

		s.mu.Lock()
		if s.wentLiveSession {
			attempt = 0
		}
		s.info = nil
		s.gop = nil
		exit := ctx.Err() != nil || s.removed ||
			(!s.alwaysOn && s.users == 0 && (errors.Is(err, errIdle) || time.Since(s.idleSince) >= s.r.cfg.IdleClose))
		if exit {
			s.running = false
			s.stopRun()
			s.setStateLocked(StateIdle, "")
			s.mu.Unlock()
			s.log.Info("camera ingest stopped")
			return
		}
		if errors.Is(err, errReconnect) {
			s.setStateLocked(StateConnecting, "")
			s.mu.Unlock()
			continue
		}
		s.reconnects++
		msg := scrub(err.Error(), url)
		s.setStateLocked(StateError, msg)
		s.mu.Unlock()

		d := s.backoff(attempt)
		attempt++
		s.log.Warn("camera ingest failed", "err", msg, "retry_in", d.Round(time.Millisecond))
		if !s.sleep(ctx, d) {
			continue // woken early: re-evaluate exit conditions
		}
		s.mu.Lock()
		s.setStateLocked(StateConnecting, "")
		s.mu.Unlock()
	}
}

// backoff returns the delay before reconnect attempt n: exponential from
// ReconnectMin to ReconnectMax, with full jitter on the upper half so
// cameras that fell together (a power cut) do not reconnect in lockstep.
func (s *source) backoff(n int) time.Duration {
	d := s.r.cfg.ReconnectMin
	for i := 0; i < n && d < s.r.cfg.ReconnectMax; i++ {
		d *= 2
	}
	d = min(d, s.r.cfg.ReconnectMax)
	return d/2 + rand.N(d/2+1)
}

// sleep waits d; it returns false early when the source must re-check its
// state (context done, idle, URL changed).
func (s *source) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	tick := time.NewTicker(s.checkPeriod())
	defer tick.Stop()
	for {
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		case <-s.reconnectCh:
			return true
		case <-tick.C:
			if s.idleExpired() {
				return false
			}
		}
	}
}

// session runs one RTSP session (RFC 2326 DESCRIBE/SETUP/PLAY) until it
// fails, the source goes idle, the URL changes or ctx ends. gortsplib tries
// UDP first and falls back to TCP interleaving when no UDP packet arrives.
func (s *source) session(ctx context.Context, rawURL string) error {
	u, err := base.ParseURL(rawURL)
	if err != nil {
		return fmt.Errorf("parse camera URL: %w", err)
	}
	c := &gortsplib.Client{
		Scheme:       u.Scheme,
		Host:         u.Host,
		ReadTimeout:  s.r.cfg.RTSPTimeout,
		WriteTimeout: s.r.cfg.RTSPTimeout,
		DialContext:  dialBuffered,
		OnTransportSwitch: func(err error) {
			s.log.Info("rtsp transport switch", "err", scrub(err.Error(), rawURL))
		},
		OnDecodeError: func(err error) {
			s.log.Debug("rtsp decode error", "err", scrub(err.Error(), rawURL))
		},
	}
	if err := c.Start(); err != nil {
		return fmt.Errorf("rtsp start: %w", err)
	}
	stopClose := context.AfterFunc(ctx, c.Close)
	defer func() {
		stopClose()
		c.Close()
	}()

	desc, _, err := c.Describe(u)
	if err != nil {
		return fmt.Errorf("rtsp describe: %w", err)
	}
	var (
		info   streamInfo
		medi   *description.Media
		forma  format.Format
		decode func(*rtp.Packet) ([][]byte, error)
		params [][]byte
	)
	for _, cd := range codecTable {
		if medi, forma, decode, params, err = cd.ingest(desc); err != nil {
			return err
		}
		if medi != nil {
			info.codec = cd.name
			break
		}
	}
	if medi == nil {
		return fmt.Errorf("camera sends no %s video (%s): configure an H.264 stream", codecLabels(), formatNames(desc.Medias))
	}
	if _, err := c.Setup(desc.BaseURL, medi, 0, 0); err != nil {
		return fmt.Errorf("rtsp setup: %w", err)
	}
	c.OnPacketRTP(medi, forma, func(pkt *rtp.Packet) {
		pts, ok := c.PacketPTS(medi, pkt)
		if !ok {
			return
		}
		au, err := decode(pkt)
		if err != nil {
			s.log.Debug("depacketize", "err", err)
		}
		if err != nil || au == nil { // nil, nil: more packets needed
			return
		}
		s.onAU(au, pts)
	})

	s.mu.Lock()
	s.params = nil
	for _, p := range params {
		s.learnParamLocked(info.codec, p)
	}
	s.awaitKey, s.discont, s.havePTS, s.bframe = true, true, false, false
	info.profile, info.width, info.height, info.spsFPS = s.describeParamsLocked(info.codec)
	s.info = &info
	s.last = info
	s.notifyLocked()
	s.mu.Unlock()

	if _, err := c.Play(nil); err != nil {
		return fmt.Errorf("rtsp play: %w", err)
	}
	s.log.Info("camera ingest started", "url", RedactURL(rawURL), "codec", info.codec,
		"width", info.width, "height", info.height)

	waitc := make(chan error, 1)
	go func() { waitc <- c.Wait() }() // ends when c closes; drained below
	tick := time.NewTicker(s.checkPeriod())
	defer tick.Stop()
	for {
		select {
		case err := <-waitc:
			return fmt.Errorf("rtsp: %w", err)
		case <-ctx.Done():
			c.Close()
			<-waitc
			return ctx.Err()
		case <-s.reconnectCh:
			c.Close()
			<-waitc
			return errReconnect
		case <-tick.C:
			if s.idleExpired() {
				c.Close()
				<-waitc
				return errIdle
			}
		}
	}
}

func nonNil(ps ...[]byte) [][]byte {
	var out [][]byte
	for _, p := range ps {
		if len(p) > 0 {
			out = append(out, p)
		}
	}
	return out
}

func formatNames(medias []*description.Media) string {
	var names []string
	for _, m := range medias {
		for _, f := range m.Formats {
			names = append(names, string(m.Type)+":"+f.Codec())
		}
	}
	if len(names) == 0 {
		return "no media"
	}
	return strings.Join(names, ", ")
}

// paramKind classifies a NAL unit of codec (codec.paramKind): 'v' VPS,
// 's' SPS, 'p' PPS, 'a' AUD, 0 other.
func paramKind(codec string, n []byte) byte {
	c := codecByName(codec)
	if len(n) == 0 || c == nil {
		return 0
	}
	return c.paramKind(n)
}

// learnParamLocked stores an in-band or SDP parameter set, keeping the
// order VPS, SPS, PPS. Only one set of each is kept: the cameras we relay
// use a single SPS/PPS id.
func (s *source) learnParamLocked(codec string, n []byte) bool {
	k := paramKind(codec, n)
	order := map[byte]int{'v': 0, 's': 1, 'p': 2}
	if _, ok := order[k]; !ok {
		return false
	}
	for i, p := range s.params {
		if paramKind(codec, p) == k {
			if bytes.Equal(p, n) {
				return false
			}
			s.params[i] = bytes.Clone(n)
			return true
		}
	}
	s.params = append(s.params, bytes.Clone(n))
	// keep VPS, SPS, PPS order
	for i := len(s.params) - 1; i > 0 && order[paramKind(codec, s.params[i])] < order[paramKind(codec, s.params[i-1])]; i-- {
		s.params[i], s.params[i-1] = s.params[i-1], s.params[i]
	}
	return true
}

// describeParamsLocked parses the SPS for profile, size and frame rate
// (codec.describe).
func (s *source) describeParamsLocked(codec string) (profile string, w, h int, fps float64) {
	c := codecByName(codec)
	if c == nil {
		return "", 0, 0, 0
	}
	for _, p := range s.params {
		if c.paramKind(p) != 's' {
			continue
		}
		pr, w, h, fps, ok := c.describe(p)
		profile = pr
		if ok {
			return profile, w, h, fps
		}
	}
	return profile, 0, 0, 0
}

// onAU is called by the RTSP client for each access unit, in order. It
// inserts missing parameter sets before keyframes (browsers decode nothing
// when they only came in the SDP), updates the GOP cache and fans out to
// viewers without blocking: each viewer has its own bounded queue.
func (s *source) onAU(au [][]byte, pts int64) {
	for _, v := range s.fanOut(au, pts) {
		v.drain()
	}
}

// fanOut does onAU's work under the source's lock and returns the viewers
// that send from the ingest goroutine (viewer.direct), which onAU then
// drains outside the lock. The returned slice is reused by the next call:
// onAU is only called from the one RTSP session goroutine.
func (s *source) fanOut(au [][]byte, pts int64) []*viewer {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.info == nil {
		return nil
	}
	codec := s.info.codec
	key := codecByName(codec).isKeyframe(au)
	var have [256]bool // parameter-set kinds present (paramKind)
	nalus := make([][]byte, 0, len(au)+3)
	changed := false
	for _, n := range au {
		k := paramKind(codec, n)
		if k == 'a' {
			continue // access unit delimiters carry nothing for WebRTC
		}
		if k != 0 {
			have[k] = true
			if s.learnParamLocked(codec, n) {
				changed = true
			}
		}
		nalus = append(nalus, n)
	}
	if changed {
		info := *s.info
		info.profile, info.width, info.height, info.spsFPS = s.describeParamsLocked(codec)
		s.info, s.last = &info, info
	}
	if s.awaitKey {
		if !key {
			return nil
		}
		s.awaitKey = false
	}
	if key {
		var missing [][]byte
		for _, p := range s.params {
			if !have[paramKind(codec, p)] {
				missing = append(missing, p)
			}
		}
		if len(missing) > 0 {
			nalus = append(missing, nalus...)
			s.paramsInserted++
		}
	}
	if s.havePTS && pts < s.lastPTS && !key && !s.bframe {
		s.bframe = true
		s.log.Warn("camera sends B-frames", "hint", "disable B-frames in the camera encoder")
	}
	s.lastPTS, s.havePTS = pts, true

	size := 0
	for _, n := range nalus {
		size += 4 + len(n) // as Annex B, the unit of the bitrate
	}
	f := &frame{pays: packetize(codec, nalus), pts: pts, key: key, discont: s.discont, recv: now}
	s.discont = false

	if key {
		s.gop = append(s.gop[:0:0], f)
	} else if len(s.gop) > 0 {
		if len(s.gop) >= maxGOPFrames {
			s.gop = nil
		} else {
			s.gop = append(s.gop, f)
		}
	}

	if s.statStart.IsZero() {
		s.statStart = now
	}
	s.statFrames++
	s.statBytes += size
	s.lastFrame = now
	if el := now.Sub(s.statStart); el >= time.Second {
		s.fps = float64(s.statFrames) / el.Seconds()
		s.bitrate = float64(s.statBytes*8) / el.Seconds()
		s.statStart, s.statFrames, s.statBytes = now, 0, 0
	}
	if s.state != StateLive {
		s.wentLiveSession = true
		s.setStateLocked(StateLive, "")
	}
	s.direct = s.direct[:0]
	for v := range s.viewers {
		s.dropped += uint64(v.q.push(f, false, now))
		if v.q.direct.Load() {
			s.direct = append(s.direct, v)
		}
	}
	return s.direct
}

func (s *source) status() StreamStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := StreamStatus{
		State: s.state, Reason: s.reason,
		Codec: s.last.codec, Width: s.last.width, Height: s.last.height,
		Viewers: len(s.viewers), Reconnects: s.reconnects,
		DroppedFrames: s.dropped, ParamsInserted: s.paramsInserted,
	}
	if s.state == StateLive && time.Since(s.lastFrame) < 2*time.Second {
		st.FPS, st.Bitrate = s.fps, s.bitrate
	}
	if s.bframe && st.Reason == "" {
		st.Reason = "camera sends B-frames; browsers may stutter: disable B-frames (baseline profile) in the camera"
	}
	return st
}
