// Package relay feeds a live broadcast from an internet radio station: an
// HTTP client that only dials addresses the egress policy allows, an MP3
// to Opus transcoder, real-time pacing with silence across upstream gaps,
// reconnection with jittered exponential backoff, and a stall watchdog.
// It is an adapter (it speaks HTTP); the trigger (broadcast/trigger) starts
// it for a schedule whose source is a relay. See docs/scheduling.md.
package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/loalang/loalang/audit"
	"github.com/loalang/loalang/broadcast/media"
	"github.com/loalang/loalang/internal/egress"
)

// Tuning. An upstream that fails is retried with exponential backoff and
// ±25% jitter (so many villages relaying one station do not reconnect in
// lockstep), from BackoffMin up to BackoffMax.
const (
	BackoffMin = 250 * time.Millisecond
	BackoffMax = 10 * time.Second
	// Stall ends a connection that delivers no byte for this long: a TCP
	// connection can stay open while the station has died.
	Stall = 5 * time.Second
	// Buffer is how many 20 ms packets the transcoder may run ahead of the
	// real-time pacer (1 s) before it blocks, and with it the TCP read: a
	// fast source (a plain MP3 file) is played in real time, not dropped.
	Buffer = 50
	// Prebuffer is how long the pacer waits for the first upstream packet
	// before it starts the stream with silence.
	Prebuffer = time.Second
	// MaxRedirects bounds the redirects an upstream may send.
	MaxRedirects = 5
)

// Client is the HTTP client of relay upstreams. Its dialer refuses every
// address policy forbids (loopback, link-local, private unless allowed) on
// the resolved address of each connection, so a redirect or a DNS name
// pointing at the daemon's own API is refused as well. It uses no proxy:
// through a proxy the dialer would only see the proxy's address.
func Client(policy egress.Policy) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, Control: policy.Control}
	return &http.Client{
		Transport: &http.Transport{
			DialContext: dialer.DialContext, ResponseHeaderTimeout: 5 * time.Second,
			DisableCompression: true,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= MaxRedirects {
				return fmt.Errorf("stopped after %d redirects", MaxRedirects)
			}
			if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
				return fmt.Errorf("redirect to scheme %q", req.URL.Scheme)
			}
			return policy.CheckURL(req.URL.String())
		},
	}
}

// Sink receives the relayed packets: a live broadcast (*broadcast.Live).
type Sink interface {
	// WritePacket sends one 20 ms Opus packet captured at the given time;
	// an error ends the relay.
	WritePacket(pkt []byte, captured time.Time) error
	// ID names the broadcast in logs.
	ID() string
}

// Config says what one relay window plays.
type Config struct {
	// URL is the upstream (http or https), credentials included.
	URL string
	// Target is the audit target and log attribute: the schedule id.
	Target string
	// Actor is the audit actor of gaps (the scheduler).
	Actor string
	// Client fetches the upstream (Client(policy)).
	Client *http.Client
	// UserAgent is sent upstream.
	UserAgent string
	// Bitrate is the Opus bitrate of the transcoded stream.
	Bitrate int
	// Lead is played before the upstream (the chime), may be nil.
	Lead [][]byte
	// Silence is one 20 ms packet of silence, played whenever the
	// upstream has nothing.
	Silence []byte
	// Audit records each upstream gap (audit.ScheduleRelayGap).
	Audit func(audit.Entry)
	// Log receives the relay's events.
	Log *slog.Logger
}

// Run paces packets into sink at 20 ms per packet on the wall clock until
// end or ctx ends: Lead first, then upstream audio, and silence whenever
// the upstream has nothing (before it first answers, during a gap).
// Silence keeps the stream and its timeline alive across an upstream
// outage, so speakers resume the programme on the same stream when the
// station is back. It does not close sink.
func Run(ctx context.Context, sink Sink, cfg Config, end time.Time) {
	ctx, cancel := context.WithDeadline(ctx, end)
	pkts := make(chan []byte, Buffer)
	var pull sync.WaitGroup
	pull.Add(1)
	go func() {
		defer pull.Done()
		cfg.pull(ctx, pkts, end)
	}()
	defer func() {
		cancel()
		pull.Wait()
	}()

	queue := slices.Clone(cfg.Lead)
	pre := time.NewTimer(Prebuffer)
	select {
	case p := <-pkts:
		queue = append(queue, p)
	case <-pre.C:
	case <-ctx.Done():
	}
	pre.Stop()
	const pkt = 20 * time.Millisecond
	slot := time.Now()
	silent := 0
	for ctx.Err() == nil {
		now := time.Now()
		if slot.Before(now.Add(-3 * pkt)) {
			slot = now // this goroutine fell behind (load): skip ahead, never burst
		}
		if d := slot.Sub(now); d > 0 {
			tm := time.NewTimer(d)
			select {
			case <-tm.C:
			case <-ctx.Done():
				tm.Stop()
				return
			}
		}
		var p []byte
		if len(queue) > 0 {
			p, queue = queue[0], queue[1:]
		} else {
			select {
			case p = <-pkts:
			default:
				p = cfg.Silence
				silent++
			}
		}
		if err := sink.WritePacket(p, slot); err != nil {
			cfg.Log.Info("relay ended by the engine", "schedule", cfg.Target, "broadcast", sink.ID(), "err", err)
			return
		}
		slot = slot.Add(pkt)
	}
	if silent > 0 {
		cfg.Log.Info("relay filled silence", "schedule", cfg.Target, "packets", silent)
	}
}

// pull reads the upstream until ctx ends, reconnecting with backoff. A gap
// (from the first failure to the first packet after it, or to the end of
// the window) is logged and audited as schedule.relay_gap.
func (cfg *Config) pull(ctx context.Context, pkts chan<- []byte, end time.Time) {
	backoff := BackoffMin
	var gapStart time.Time
	var gapErr, lastErr error
	attempts := 0
	closeGap := func(to time.Time, resumed bool) {
		if gapStart.IsZero() {
			return
		}
		gap := to.Sub(gapStart)
		detail := map[string]any{"from": gapStart.UTC().Format(time.RFC3339Nano), "to": to.UTC().Format(time.RFC3339Nano),
			"gap_ms": gap.Milliseconds(), "err": gapErr.Error(), "last_err": lastErr.Error(), "attempts": attempts, "resumed": resumed, "url": egress.Redact(cfg.URL)}
		if resumed {
			cfg.Log.Warn("relay upstream back", "schedule", cfg.Target, "gap", gap.String(), "attempts", attempts)
		} else {
			cfg.Log.Warn("relay window ended during an upstream gap", "schedule", cfg.Target, "gap", gap.String())
		}
		cfg.Audit(audit.Entry{Time: to, Actor: cfg.Actor, Action: audit.ScheduleRelayGap, Target: cfg.Target, Detail: detail})
		gapStart, gapErr, lastErr, attempts = time.Time{}, nil, nil, 0
	}
	for ctx.Err() == nil {
		err := cfg.once(ctx, pkts, func() {
			closeGap(time.Now(), true)
			backoff = BackoffMin
		})
		if ctx.Err() != nil {
			break
		}
		if err == nil {
			err = io.ErrUnexpectedEOF // a live programme does not end by itself
		}
		attempts++
		lastErr = err
		if gapStart.IsZero() {
			gapStart, gapErr = time.Now(), err
			cfg.Log.Warn("relay upstream lost", "schedule", cfg.Target, "url", egress.Redact(cfg.URL), "err", err)
		}
		wait := time.Duration(float64(backoff) * (0.75 + 0.5*rand.Float64()))
		tm := time.NewTimer(wait)
		select {
		case <-tm.C:
		case <-ctx.Done():
			tm.Stop()
		}
		backoff = min(2*backoff, BackoffMax)
	}
	to := time.Now()
	if to.After(end) {
		to = end
	}
	closeGap(to, false)
}

// once streams one upstream connection into pkts; first is called at its
// first packet. It returns when the stream fails, ends or stalls.
func (cfg *Config) once(ctx context.Context, pkts chan<- []byte, first func()) error {
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, cfg.URL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", cfg.UserAgent)
	resp, err := cfg.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL may carry credentials
		}
		return fmt.Errorf("connect: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("upstream answered %s", resp.Status)
	}
	stall := time.AfterFunc(Stall, func() { cancel(fmt.Errorf("no data for %v", Stall)) })
	defer stall.Stop()
	tc, err := media.NewMP3Transcoder(watchdog{resp.Body, stall}, cfg.Bitrate)
	if err != nil {
		return err
	}
	started := false
	err = tc.Run(cctx, func(p []byte) error {
		if !started {
			started = true
			first()
		}
		select {
		case pkts <- p:
			return nil
		case <-cctx.Done():
			return context.Cause(cctx)
		}
	})
	if c := context.Cause(cctx); c != nil && ctx.Err() == nil {
		return c
	}
	return err
}

// watchdog re-arms the stall timer on every read that returns data.
type watchdog struct {
	r     io.Reader
	stall *time.Timer
}

func (w watchdog) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if n > 0 {
		w.stall.Reset(Stall)
	}
	return n, err
}
