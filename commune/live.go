package commune

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	actions "github.com/loalang/loalang/audit"
	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/uplink"
	"github.com/loalang/loalang/whip"
)

// Live speech from the commune (docs/commune.md, "Live speech from the
// commune"): an approver's browser sends its microphone over WHIP
// (RFC 9725) to POST /api/v1/commune/live; package whip negotiates the
// peer connection and archives the Opus packets; the commune keeps a
// record like a bulletin's (kind live) with per-village delivery, signs
// one live command for its villages, resent like a bulletin's until each
// village answers, and publishes the packets as signed chunks at QoS 0.

const (
	// liveMaxDuration bounds a live speech (Server.liveMax): its command
	// expires then and the commune ends it, whatever the browser does.
	liveMaxDuration = time.Hour
	// maxLiveOffer bounds an SDP offer in bytes.
	maxLiveOffer = 64 << 10
)

// errLiveEnded is a packet written after the speech ended.
var errLiveEnded = errors.New("live speech ended")

// LiveMount serves live speech on s (a commune.Run mount): it opens the
// WHIP ingest's ICE UDP socket from the config's webrtc section (udp_port,
// listen_ips, loopback_candidates, nat_1to1_ips), archives each speech as
// Ogg Opus under <data_dir>/live-archive, and mounts
// POST /api/v1/commune/live and DELETE …/live/{id} for approvers.
func LiveMount(s *Server) error {
	w := s.cfg.WebRTC
	svc, err := whip.New(whip.Config{
		ArchiveDir: filepath.Join(s.cfg.DataDir, "live-archive"),
		UDPPort:    w.UDPPort, ListenIPs: w.ListenIPs, LoopbackCandidates: w.LoopbackCandidates, NAT1To1IPs: w.NAT1To1IPs,
		Audit: s.auditLiveEnd, Now: s.now, Log: s.base, // component "live"
	})
	if err != nil {
		return fmt.Errorf("commune live speech: %w", err)
	}
	s.live, s.liveMax = svc, liveMaxDuration
	approvers := []string{RoleApprover}
	s.Handle("POST /api/v1/commune/live", approvers, http.HandlerFunc(s.postLive))
	s.Handle("DELETE /api/v1/commune/live/{id}", approvers, http.HandlerFunc(s.deleteLive))
	s.Handle("PATCH /api/v1/commune/live/{id}", approvers, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// No trickle ICE or ICE restart (RFC 9725 §4.3.1): candidates are
		// all in the offer and the answer.
		w.Header().Set("Allow", "DELETE")
		w.WriteHeader(http.StatusMethodNotAllowed)
	}))
	s.log.Info("live speech ready", "ice", svc.Addr())
	return nil
}

// liveTarget reads a live speech's target from the query:
// villages=a,b (required, each one the commune knows), zones=x,y (empty:
// every zone) and urgency=routine|emergency (default routine). It returns
// the record to create, or a reason for a 400, or the store's error.
func (s *Server) liveTarget(r *http.Request) (Draft, string, error) {
	q := r.URL.Query()
	d := Draft{Kind: KindLive, Title: strings.TrimSpace(q.Get("title")), Villages: splitList(q.Get("villages")),
		Zones: splitList(q.Get("zones")), Urgency: q.Get("urgency")}
	if d.Urgency == "" {
		d.Urgency = uplink.UrgencyRoutine
	}
	slices.Sort(d.Villages)
	d.Villages = slices.Compact(d.Villages) // one delivery record per village
	if msg := checkTargets(d); msg != "" {
		return d, msg, nil
	}
	known, err := s.Villages()
	if err != nil {
		return d, "", fmt.Errorf("read villages: %w", err)
	}
	for _, v := range d.Villages {
		if !slices.ContainsFunc(known, func(k VillageView) bool { return k.Site == v }) {
			return d, fmt.Sprintf("villages: %q is not a village of this commune", v), nil
		}
	}
	return d, "", nil
}

// splitList splits a comma-separated query value, dropping empty items.
func splitList(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// postLive is the WHIP endpoint (RFC 9725 §4.2): an SDP offer in, 201 with
// the answer and the session's Location out.
func (s *Server) postLive(w http.ResponseWriter, r *http.Request) {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/sdp" {
		httpError(w, http.StatusUnsupportedMediaType, "Content-Type: want application/sdp (RFC 9725 §4.2)")
		return
	}
	d, msg, err := s.liveTarget(r)
	if err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if msg != "" {
		httpError(w, http.StatusBadRequest, msg)
		return
	}
	if !s.Connected() {
		httpError(w, http.StatusServiceUnavailable, errNotConnected.Error()+": the villages cannot be reached")
		return
	}
	offer, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLiveOffer))
	if err != nil {
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the offer must be at most %d bytes", maxLiveOffer))
		return
	}
	u, _ := UserFrom(r.Context())
	st, err := s.live.StartSink(r.Context(), string(offer), u.Username, func(context.Context) (whip.Sink, error) {
		return s.openLive(d, u.Username)
	})
	switch {
	case errors.Is(err, whip.ErrBadOffer):
		httpError(w, http.StatusBadRequest, err.Error())
		return
	case errors.Is(err, whip.ErrClosed):
		httpError(w, http.StatusServiceUnavailable, err.Error())
		return
	case err != nil:
		s.log.Error("live speech not started", "user", u.Username, "err", err)
		httpError(w, http.StatusInternalServerError, "live speech not started: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/sdp")
	w.Header().Set("Location", "/api/v1/commune/live/"+st.ID)
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, st.Answer)
}

// deleteLive ends a live speech (RFC 9725 §4.3): its creator or an admin
// may; anyone else gets 404, as for an unknown id.
func (s *Server) deleteLive(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	u, _ := UserFrom(r.Context())
	if err := s.live.Hangup(id, u.Username, u.Role == auth.RoleAdmin); err != nil {
		httpError(w, http.StatusNotFound, err.Error())
		return
	}
	err := s.db.bolt.Update(func(tx *bolt.Tx) error {
		return audit(tx, AuditEntry{Time: s.now().UTC(), Actor: u.Username, Action: string(actions.LiveHangup), Target: id})
	})
	if err != nil {
		s.log.Error("live.hangup not audited", "live", id, "err", err)
	}
	w.WriteHeader(http.StatusOK)
}

// openLive stores the live speech's record d for user (the approver) and
// signs its command in one transaction, audited live.start, wakes the
// resender to publish the command, and returns the sink that chunks the
// speech to the villages. It runs once the browser's offer is answered.
func (s *Server) openLive(d Draft, user string) (whip.Sink, error) {
	now := s.now().UTC()
	d.ID, d.Source, d.CreatedBy, d.Created, d.Expires = "l-"+auth.RandomSecret(9), "commune", user, now, now.Add(s.liveMax)
	err := s.db.bolt.Update(func(tx *bolt.Tx) error {
		if err := s.signTx(tx, &d, user, string(actions.LiveStart)); err != nil {
			return err
		}
		d.Status = StatusLive
		return put(tx, bDrafts, d.ID, d)
	})
	if err != nil {
		return nil, fmt.Errorf("store live speech: %w", err)
	}
	s.kickResend()
	topic := uplink.Topics{Province: s.cfg.Commune.Province, Commune: s.cfg.Commune.ID}.Live(d.ID)
	ls := &liveSink{s: s, id: d.ID, done: make(chan struct{})}
	ls.chunks = newLiveChunker(d.ID, s.key, func(ctx context.Context, env []byte) error { return s.publishLive(ctx, topic, env) })
	ls.expire = time.AfterFunc(d.Expires.Sub(now), func() { ls.finish("expired") })
	s.log.Info("live speech started", "live", d.ID, "user", user, "villages", d.Villages, "zones", d.Zones, "urgency", d.Urgency)
	return ls, nil
}

// liveSink is a live speech at the commune, fed by its WHIP session: each
// packet goes to the chunker; the end sends the End chunk and moves the
// record to StatusEnded.
type liveSink struct {
	s      *Server
	id     string
	chunks *liveChunker
	expire *time.Timer
	done   chan struct{}
	once   sync.Once

	mu     sync.Mutex
	failed int // chunks the broker did not take
}

func (l *liveSink) ID() string            { return l.id }
func (l *liveSink) Done() <-chan struct{} { return l.done }

// WritePacket hands one 20 ms Opus packet to the chunker. A chunk the
// broker did not take is an 80 ms gap, not the end of the speech: only a
// packet after the end is an error.
func (l *liveSink) WritePacket(pkt []byte, captured time.Time) error {
	err := l.chunks.WritePacket(l.s.ctx, pkt, captured)
	if err == nil || errors.Is(err, errLiveEnded) {
		return err
	}
	l.mu.Lock()
	l.failed++
	n := l.failed
	l.mu.Unlock()
	if n == 1 || n%50 == 0 {
		l.s.log.Warn("live chunk lost", "live", l.id, "lost", n, "err", err)
	}
	return nil
}

// Close ends the speech (the WHIP session ended: hangup, browser gone,
// server closing).
func (l *liveSink) Close() error {
	l.finish("")
	return nil
}

// finish sends the End chunk, marks the record ended and closes Done,
// once. The session's reason is recorded by auditLiveEnd; reason is set
// only when the commune itself ends the speech (its expiry).
func (l *liveSink) finish(reason string) {
	l.once.Do(func() {
		l.expire.Stop()
		if err := l.chunks.End(l.s.ctx); err != nil {
			l.s.log.Warn("live end chunk not sent; the villages stop after 5 s without a chunk", "live", l.id, "err", err)
		}
		err := l.s.db.bolt.Update(func(tx *bolt.Tx) error {
			var d Draft
			if err := get(tx, bDrafts, l.id, &d); err != nil {
				return err
			}
			d.Status, d.Ended = StatusEnded, l.s.now().UTC()
			if reason != "" {
				d.Reason = reason
			}
			return put(tx, bDrafts, d.ID, d)
		})
		if err != nil {
			l.s.log.Error("live speech record not ended", "live", l.id, "err", err)
		}
		close(l.done)
	})
}

// auditLiveEnd records a WHIP session's end (whip.Config.Audit): the
// live.end entry and, on the record, why it ended.
func (s *Server) auditLiveEnd(e actions.Entry) {
	err := s.db.bolt.Update(func(tx *bolt.Tx) error {
		var d Draft
		if reason, ok := e.Detail["reason"].(string); ok && get(tx, bDrafts, e.Target, &d) == nil && d.Reason == "" {
			d.Reason = reason
			if err := put(tx, bDrafts, d.ID, d); err != nil {
				return err
			}
		}
		return audit(tx, AuditEntry{Time: e.Time.UTC(), Actor: e.Actor, Action: string(e.Action), Target: e.Target, Detail: e.Detail})
	})
	if err != nil {
		s.log.Error("live.end not audited", "live", e.Target, "err", err)
	}
}

// endOrphanLive ends the records of live speeches the commune was serving
// when it stopped without ending them (a crash): their browsers are gone
// and the villages stopped 5 s after the last chunk.
func endOrphanLive(tx *bolt.Tx, now time.Time) error {
	ds, err := list[Draft](tx, bDrafts, "l-")
	if err != nil {
		return err
	}
	for _, d := range ds {
		if d.Status == StatusLive {
			d.Status, d.Ended, d.Reason = StatusEnded, now, "commune restarted"
			if err := put(tx, bDrafts, d.ID, d); err != nil {
				return err
			}
		}
	}
	return nil
}

// liveChunker batches a live session's 20 ms Opus packets into signed
// chunks of uplink.MaxChunkPackets (80 ms) and hands each to send, which
// publishes it at QoS 0 on the session's live topic (docs/protocol.md,
// "Live speech"). A liveSink feeds it the packets of an approver's
// WHIP session.
type liveChunker struct {
	session string
	key     ed25519.PrivateKey
	send    func(ctx context.Context, envelope []byte) error

	mu       sync.Mutex
	seq      uint64
	pending  [][]byte
	captured time.Time
	ended    bool
}

func newLiveChunker(session string, key ed25519.PrivateKey, send func(ctx context.Context, envelope []byte) error) *liveChunker {
	return &liveChunker{session: session, key: key, send: send}
}

// WritePacket adds one Opus packet captured at captured; every fourth
// packet flushes a chunk.
func (c *liveChunker) WritePacket(ctx context.Context, pkt []byte, captured time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return errLiveEnded
	}
	if len(pkt) == 0 || len(pkt) > uplink.MaxPacketBytes {
		return fmt.Errorf("live packet of %d bytes", len(pkt))
	}
	if len(c.pending) == 0 {
		c.captured = captured
	}
	c.pending = append(c.pending, append([]byte(nil), pkt...))
	if len(c.pending) < uplink.MaxChunkPackets {
		return nil
	}
	return c.flushLocked(ctx, false)
}

// End flushes what is pending with the End mark; later packets are
// refused.
func (c *liveChunker) End(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return nil
	}
	c.ended = true
	if c.captured.IsZero() {
		c.captured = time.Now()
	}
	return c.flushLocked(ctx, true)
}

func (c *liveChunker) flushLocked(ctx context.Context, end bool) error {
	c.seq++
	env, err := uplink.SignChunk(uplink.LiveChunk{Session: c.session, Seq: c.seq, Captured: c.captured, Packets: c.pending, End: end}, c.key)
	c.pending = nil
	if err != nil {
		return fmt.Errorf("live chunk %d: %w", c.seq, err)
	}
	if err := c.send(ctx, env); err != nil {
		return fmt.Errorf("publish live chunk %d: %w", c.seq, err)
	}
	return nil
}
