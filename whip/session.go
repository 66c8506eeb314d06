package whip

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/loalang/loalang/audit"
)

// session is one WHIP session: a peer connection feeding one sink.
type session struct {
	l       *Service
	id      string // the sink's id, also the WHIP resource id
	user    string
	pc      *webrtc.PeerConnection
	live    Sink
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

// run waits for the track, reads it until the end and tears down. The
// archive is the reader's alone, so it is closed here, after the reader.
func (s *session) run(tracks <-chan *webrtc.TrackRemote, broken <-chan string) {
	defer s.l.wg.Done()
	defer func() {
		if err := s.archive.close(); err != nil {
			s.log.Error("live archive failed", "err", err)
		}
		s.summary()
		s.l.pruneArchive()
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
func (s *session) read(t *webrtc.TrackRemote) string {
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
				return fmt.Sprintf("%v: browser sends %v packets (stereo %v)", errFormat, d, stereo)
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
func (s *session) end(reason string) {
	s.once.Do(func() {
		s.reason = reason
		s.pc.Close()
		s.live.Close()
		s.l.mu.Lock()
		delete(s.l.sessions, s.id)
		s.l.mu.Unlock()
		close(s.finished)
		s.log.Info("live session ended", "reason", reason, "duration", time.Since(s.created).Round(time.Millisecond), "archive", s.path)
		if s.l.cfg.Audit != nil {
			s.l.cfg.Audit(audit.Entry{Time: s.l.cfg.Now(), Actor: s.user, Action: audit.LiveEnd, Target: s.id,
				Detail: map[string]any{"reason": reason, "archive": s.path}})
		}
	})
}

// summary logs per-session latency figures: arrival jitter (arrival minus
// the RTP-mapped capture time, which becomes the play-at base) and the
// handoff to the engine.
func (s *session) summary() {
	if s.packets == 0 {
		s.log.Info("live latency", "packets", 0, "refused", s.bad, "padding", s.padding)
		return
	}
	s.log.Info("live latency", "packets", s.packets, "refused", s.bad, "padding", s.padding,
		"arrival_jitter_p50", pct(s.jitter, 50), "arrival_jitter_p99", pct(s.jitter, 99),
		"handoff_p50", pct(s.handoff, 50), "handoff_p99", pct(s.handoff, 99))
}
