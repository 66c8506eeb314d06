package camera

import (
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// rtpMTU is the RTP packet size (header included) sent to browsers; 1200
// bytes fits any path MTU after SRTP, UDP, IP and TURN overheads.
const rtpMTU = 1200

// qitem is one queued frame with its per-viewer flags.
type qitem struct {
	f       *frame
	burst   bool // from the GOP cache: send at once, compress timestamps
	discont bool // first frame after a camera reconnect
	enq     time.Time
}

// queue is a viewer's bounded frame queue. push never blocks: a viewer that
// falls behind (more than maxFrames queued, or the oldest frame older than
// maxDelay) loses its queue and skips to the next keyframe, so it can
// neither slow the ingest and the other viewers nor accumulate latency.
type queue struct {
	mu             sync.Mutex
	items          []qitem
	notify         chan struct{}
	needKey        bool
	pendingDiscont bool
	direct         atomic.Bool // drained by the ingest goroutine: push does not notify
	maxFrames      int
	maxDelay       time.Duration
	dropped        uint64
}

func newQueue(maxFrames int, maxDelay time.Duration) *queue {
	return &queue{notify: make(chan struct{}, 1), maxFrames: maxFrames, maxDelay: maxDelay}
}

func (q *queue) requireKey() {
	q.mu.Lock()
	q.needKey = true
	q.mu.Unlock()
}

// push enqueues f and returns how many frames were dropped.
func (q *queue) push(f *frame, burst bool, now time.Time) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	dropped := 0
	if !burst && len(q.items) > 0 &&
		(len(q.items) >= q.maxFrames || now.Sub(q.items[0].enq) > q.maxDelay) {
		dropped = len(q.items)
		for _, it := range q.items {
			q.pendingDiscont = q.pendingDiscont || it.discont || it.f.discont
		}
		q.items = q.items[:0]
		q.needKey = true
	}
	if q.needKey && !f.key {
		q.pendingDiscont = q.pendingDiscont || f.discont
		q.dropped += uint64(dropped + 1)
		return dropped + 1
	}
	q.needKey = false
	q.items = append(q.items, qitem{f: f, burst: burst, discont: f.discont || q.pendingDiscont, enq: now})
	q.pendingDiscont = false
	q.dropped += uint64(dropped)
	if !q.direct.Load() {
		select {
		case q.notify <- struct{}{}:
		default:
		}
	}
	return dropped
}

// take removes and returns every queued item.
func (q *queue) take(buf []qitem) []qitem {
	q.mu.Lock()
	defer q.mu.Unlock()
	buf = append(buf[:0], q.items...)
	clear(q.items)
	q.items = q.items[:0]
	return buf
}

// viewer is one WHEP session. Its goroutine (run) owns the peer connection:
// it waits for ICE/DTLS, attaches to the source, and packetizes frames with
// its own packetizer, so sequence numbers and timestamps stay continuous for
// this browser across camera reconnects (RFC 3550 §5.1) and no
// renegotiation is needed.
//
// Who sends depends on the selected ICE path. A viewer reached from the
// relay's own UDP socket (a host or server-reflexive local candidate) is
// sent to by the camera's ingest goroutine right after each frame is queued
// (drain): such a write goes through batchConn to a UDP socket and cannot
// block on one viewer, and it saves a goroutine wake-up per frame and
// viewer, which was the largest cost left in the relay (issue 16 profile).
// A viewer reached through a TURN relay may be written over TCP to the TURN
// server, which can block, so its own goroutine drains its queue and a slow
// path holds back only that viewer.
type viewer struct {
	r       *Relay
	id, who string
	entry   *camEntry
	camID   string
	src     *source
	sub     bool
	codec   string
	log     *slog.Logger
	created time.Time

	pc     *webrtc.PeerConnection
	track  *webrtc.TrackLocalStaticRTP
	sender *webrtc.RTPSender
	seq    rtp.Sequencer
	pkt    rtp.Packet // reused for every packet sent
	q      *queue

	// sendMu serialises drain: the packetizer and timestamp state below
	// and the send buffer belong to whoever holds it.
	sendMu  sync.Mutex
	sendBuf []qitem
	hist    history  // sent packets, for NACKs
	nackBuf []uint16 // retransmit's scratch

	connected, failed, stopCh, finished chan struct{}
	connOnce, failOnce, stopOnce        sync.Once
	reasonMu                            sync.Mutex
	reason                              string

	// remote is the viewer's address on the selected ICE pair, whose
	// writes drain batches; invalid (no batching) if unknown. Guarded by sendMu.
	remote netip.AddrPort

	// Timestamp rewriting state, guarded by sendMu.
	haveTS  bool
	lastOut uint32
	offset  uint32
	lastPTS int64
	nominal uint32
	sentKey bool
}

func newViewer(r *Relay, id, who string, e *camEntry, src *source, codec string, sub bool) *viewer {
	return &viewer{
		r: r, id: id, who: who, entry: e, camID: e.cam.ID, src: src, sub: sub, codec: codec,
		log:     r.log.With("camera", e.cam.ID, "session", id),
		created: time.Now(),
		// PT and SSRC are set per binding by TrackLocalStaticRTP.
		seq:       rtp.NewRandomSequencer(),
		q:         newQueue(r.cfg.ViewerQueueFrames, r.cfg.ViewerQueueDelay),
		connected: make(chan struct{}),
		failed:    make(chan struct{}),
		stopCh:    make(chan struct{}),
		finished:  make(chan struct{}),
		nominal:   90000 / 15,
	}
}

func (v *viewer) onConnectionState(st webrtc.PeerConnectionState) {
	switch st {
	case webrtc.PeerConnectionStateConnected:
		v.connOnce.Do(func() { close(v.connected) })
	case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
		v.failOnce.Do(func() { close(v.failed) })
	}
}

// stop asks the viewer goroutine to end the session with reason.
func (v *viewer) stop(reason string) {
	v.stopOnce.Do(func() {
		v.setReason(reason)
		close(v.stopCh)
	})
}

func (v *viewer) setReason(r string) {
	v.reasonMu.Lock()
	if v.reason == "" {
		v.reason = r
	}
	v.reasonMu.Unlock()
}

// run is the viewer's goroutine; it always tears the session down.
func (v *viewer) run() {
	var connectedAt time.Time
	rtcpDone := make(chan struct{})
	go v.readRTCP(rtcpDone) // ends when the peer connection closes, awaited below
	attached := false
	defer func() {
		if attached {
			v.src.detach(v)
		}
		if err := v.pc.Close(); err != nil {
			v.log.Debug("close peer connection", "err", err)
		}
		<-rtcpDone
		v.src.release()
		v.r.endSession(v)
		v.reasonMu.Lock()
		reason := v.reason
		v.reasonMu.Unlock()
		v.log.Info("viewer left", "viewer", v.who, "reason", reason)
		if !connectedAt.IsZero() && v.r.cfg.OnView != nil {
			v.r.cfg.OnView(ViewRecord{
				SessionID: v.id, Viewer: v.who, CameraID: v.camID, Substream: v.sub,
				From: connectedAt, To: time.Now(), Reason: reason,
			})
		}
		close(v.finished)
	}()

	hs := time.NewTimer(time.Until(v.created.Add(v.r.cfg.HandshakeTimeout)))
	defer hs.Stop()
	select {
	case <-v.connected:
	case <-v.failed:
		v.setReason("ICE/DTLS failed")
		return
	case <-v.stopCh:
		return
	case <-v.r.ctx.Done():
		v.setReason("relay closed")
		return
	case <-hs.C:
		v.setReason("handshake timeout")
		return
	}
	connectedAt = time.Now()
	remote, relayed := v.selectedPath()
	v.sendMu.Lock()
	v.remote = remote
	v.sendMu.Unlock()
	if !v.src.attach(v) {
		v.setReason("camera removed")
		return
	}
	attached = true
	v.log.Info("viewer connected", "viewer", v.who, "setup", connectedAt.Sub(v.created).Round(time.Millisecond), "relayed", relayed)
	v.drain() // the GOP cache attach queued
	if !relayed {
		v.q.direct.Store(true) // from now on the ingest goroutine drains the queue
	}

	for {
		select {
		case <-v.q.notify:
			v.drain()
		case <-v.failed:
			v.setReason("ICE/DTLS failed")
			return
		case <-v.stopCh:
			return
		case <-v.r.ctx.Done():
			v.setReason("relay closed")
			return
		}
	}
}

// selectedPath returns the remote address of the selected ICE candidate
// pair (invalid if unknown) and whether its local side is a TURN relay
// (true too when the pair is unknown, the safe side for drain's choice).
func (v *viewer) selectedPath() (netip.AddrPort, bool) {
	pair, err := v.sender.Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil || pair.Remote == nil || pair.Local == nil {
		return netip.AddrPort{}, true
	}
	relayed := pair.Local.Typ == webrtc.ICECandidateTypeRelay
	ip, err := netip.ParseAddr(pair.Remote.Address)
	if err != nil || pair.Remote.Port == 0 {
		return netip.AddrPort{}, relayed
	}
	return netip.AddrPortFrom(ip.Unmap(), pair.Remote.Port), relayed
}

// drain sends every queued frame as one burst of the ICE socket (one
// sendmmsg per batch instead of a sendto per packet, see batchConn). A
// write that fails for good ends the session.
func (v *viewer) drain() {
	v.sendMu.Lock()
	defer v.sendMu.Unlock()
	v.sendBuf = v.q.take(v.sendBuf)
	if len(v.sendBuf) == 0 {
		return
	}
	if v.remote.IsValid() {
		v.r.cork(v.remote)
		defer v.r.uncork(v.remote)
	}
	for i := range v.sendBuf {
		if err := v.send(v.sendBuf[i]); err != nil {
			v.stop("write: " + err.Error())
			return
		}
		v.sendBuf[i] = qitem{}
	}
}

// send packetizes one frame. Timestamps follow the camera clock (so B-frame
// PTS order and real frame spacing survive), except that GOP-cache frames
// are spaced 1 ms apart so the browser catches up to live at once instead of
// playing the cached second behind real time, and a camera reconnect
// continues one nominal frame after the last sent timestamp.
func (v *viewer) send(it qitem) error {
	f := it.f
	var ts uint32
	mapped := false
	switch {
	case !v.haveTS:
		ts = rand.Uint32()
		v.haveTS = true
	case it.discont:
		ts = v.lastOut + v.nominal
	case it.burst:
		ts = v.lastOut + 90
	default:
		ts = uint32(f.pts) + v.offset
		mapped = true
		if d := f.pts - v.lastPTS; d > 0 && d <= 90000 {
			v.nominal = uint32(d)
		}
	}
	if !mapped {
		v.offset = ts - uint32(f.pts)
	}
	v.lastOut, v.lastPTS = ts, f.pts
	if f.key && !v.sentKey {
		v.sentKey = true
		v.log.Debug("first keyframe sent", "since_offer", time.Since(v.created).Round(time.Millisecond))
	}
	// The payloads are cut once per frame in the ingest (packetize) and
	// shared by every viewer; only the 12-byte header is this viewer's. pion
	// encrypts into its own buffer, so sharing is safe.
	pays := f.pays
	for i, pl := range pays {
		v.pkt.Header = rtp.Header{
			Version: 2, Marker: i == len(pays)-1,
			SequenceNumber: v.seq.NextSequenceNumber(), Timestamp: ts,
		}
		v.pkt.Payload = pl
		v.hist.add(&v.pkt.Header, pl)
		if err := v.track.WriteRTP(&v.pkt); err != nil {
			if errors.Is(err, io.ErrClosedPipe) {
				return err
			}
			// Other errors are per-packet (e.g. a full socket buffer): the
			// browser's NACK or the next keyframe repairs them.
		}
	}
	return nil
}

// readRTCP answers NACKs (retransmit) and drains RTCP so the reports
// interceptor runs;
// it ends when the peer connection closes.
func (v *viewer) readRTCP(done chan struct{}) {
	defer close(done)
	for {
		pkts, _, err := v.sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.TransportLayerNack:
				v.retransmit(p)
			case *rtcp.PictureLossIndication:
				// RTSP has no way to ask a camera for a keyframe; the browser
				// recovers at the next IDR (one GOP at most).
				v.log.Debug("picture loss indication")
			}
		}
	}
}
