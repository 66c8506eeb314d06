package daemon

import (
	"context"
	"errors"
	"fmt"
	"github.com/loalang/loalang/audit"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/loalang/loalang/broadcast"
	"github.com/loalang/loalang/broadcast/media"
	"github.com/loalang/loalang/broadcast/schedule"
	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/internal/egress"
	"github.com/loalang/loalang/store"
	"github.com/loalang/loalang/web"
)

// Relay tuning. An upstream that fails is retried with exponential backoff
// and ±25% jitter (so many villages relaying one station do not reconnect
// in lockstep), from relayBackoffMin up to relayBackoffMax.
const (
	relayBackoffMin = 250 * time.Millisecond
	relayBackoffMax = 10 * time.Second
	// relayStall ends a connection that delivers no byte for this long: a
	// TCP connection can stay open while the station has died.
	relayStall = 5 * time.Second
	// relayBuffer is how many 20 ms packets the transcoder may run ahead
	// of the real-time pacer (1 s) before it blocks, and with it the TCP
	// read: a fast source (a plain MP3 file) is played in real time, not
	// dropped.
	relayBuffer = 50
	// relayPrebuffer is how long the pacer waits for the first upstream
	// packet before it starts the stream with silence.
	relayPrebuffer = time.Second
	// repeatGap is the silence between repeats of a scheduled source.
	repeatGap = schedule.RepeatGap
	// schedulerActor is the actor of scheduled broadcasts.
	schedulerActor = store.SchedulerActor
)

// startSchedule wires the timetable: schedules and firing records in bbolt,
// the scheduler on the real clock (or WithClock's) with quiet hours from
// the config, supervised, the
// trigger that turns firings into broadcasts, and the schedule API.
// See docs/scheduling.md.
func (d *Daemon) startSchedule(ctx context.Context) error {
	sc := d.cfg.Schedule
	cfg := schedule.Config{Grace: sc.Grace, Fault: func(err error) { d.health.Set("scheduler", err) }}
	if sc.QuietFrom != "" {
		cfg.QuietHours = &schedule.QuietHours{Start: sc.QuietFrom, End: sc.QuietTo, TimeZone: sc.TimeZone}
	}
	policy, err := egress.ParsePolicy("schedule.relay_allow", sc.RelayAllow)
	if err != nil {
		return &config.Error{File: "config", Key: "schedule.relay_allow", Reason: err.Error()}
	}
	trig, err := newTrigger(ctx, d.engine, d.media, d.tts, policy,
		d.cfg.Broadcast.BitrateBPS, d.recordAudit, d.base.With("component", "schedule-trigger"))
	if err != nil {
		return err
	}
	trig.minInterval = sc.MinInterval
	d.closers = append(d.closers, trig.Close)
	st := store.NewScheduleStore(d.db)
	st.OnDamaged = func(ids []string) {
		var err error
		if len(ids) > 0 {
			err = fmt.Errorf("schedule records that do not decode are not run: %s; delete them (DELETE /api/v1/schedules/<id>) and create them again, or restore a backup (loalangd restore)", strings.Join(ids, ", "))
		}
		d.health.Set("schedules", err)
	}
	clock := d.opts.clock
	if clock == nil {
		clock = schedule.NewRealClock()
	}
	var firings schedule.Store = st
	if d.ops != nil {
		firings = meteredFirings{st, d.ops}
	}
	d.sched = schedule.New(cfg, firings, trig, clock, d.base)
	// A scheduler that cannot read its store (a damaged record, a disk
	// error) is restarted with backoff and named in /healthz meanwhile;
	// it once stopped for good after one log line.
	d.supervise(ctx, "scheduler", d.sched.Run)
	known := func(z string) bool { return d.devices.ZoneExists(z) || slices.Contains(d.cfg.WiredZones(), z) }
	d.web.EnableSchedules(web.ScheduleDeps{Store: st, Reload: d.sched.Reload, KnownZone: known, TimeZone: sc.TimeZone,
		MaxRelay: d.cfg.Broadcast.MaxDuration, MinInterval: sc.MinInterval, CheckRelayURL: policy.CheckURL})
	return nil
}

// sourcePackets loads stored media as packets.
type sourcePackets interface {
	Packets(id string) ([][]byte, error)
}

// textPackets speaks text as packets.
type textPackets interface {
	SpeakPackets(ctx context.Context, text, language string) ([][]byte, error)
}

// trigger turns a firing into a broadcast: it implements schedule.Trigger.
type trigger struct {
	engine  *broadcast.Engine
	media   sourcePackets
	speak   textPackets
	bitrate int
	audit   func(store.Event)
	log     *slog.Logger
	client  *http.Client
	chime   [][]byte // pre-announcement chime, encoded once
	silence []byte   // one 20 ms packet of silence
	gap     [][]byte // repeatGap of silence

	// minInterval refuses a firing closer than this to the schedule's
	// previous one: schedules stored before schedule.min_interval existed
	// are not re-validated, and must not turn the loudspeakers into a
	// siren either.
	minInterval time.Duration
	lastMu      sync.Mutex
	last        map[string]time.Time // schedule id -> last occurrence fired

	ctx    context.Context // relays live at most as long as this
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// relayMaxRedirects bounds the redirects a relay upstream may send.
const relayMaxRedirects = 5

// relayClient is the HTTP client of relay upstreams. Its dialer refuses
// every address policy forbids (loopback, link-local, private unless
// allowed) on the resolved address of each connection, so a redirect or a
// DNS name pointing at the daemon's own API is refused as well. It uses no
// proxy: through a proxy the dialer would only see the proxy's address.
func relayClient(policy egress.Policy) *http.Client {
	dialer := &net.Dialer{Timeout: 5 * time.Second, Control: policy.Control}
	return &http.Client{
		Transport: &http.Transport{
			DialContext: dialer.DialContext, ResponseHeaderTimeout: 5 * time.Second,
			DisableCompression: true,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= relayMaxRedirects {
				return fmt.Errorf("stopped after %d redirects", relayMaxRedirects)
			}
			if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
				return fmt.Errorf("redirect to scheme %q", req.URL.Scheme)
			}
			return policy.CheckURL(req.URL.String())
		},
	}
}

func newTrigger(ctx context.Context, eng *broadcast.Engine, lib sourcePackets, speak textPackets, policy egress.Policy, bitrate int, audit func(store.Event), log *slog.Logger) (*trigger, error) {
	chime, err := media.EncodePCM(ctx, Chime(), bitrate)
	if err != nil {
		return nil, fmt.Errorf("encode chime: %w", err)
	}
	quiet, err := media.EncodePCM(ctx, make([]float32, int(repeatGap/time.Millisecond)*media.OpusRate/1000), bitrate)
	if err != nil {
		return nil, fmt.Errorf("encode silence: %w", err)
	}
	t := &trigger{
		engine: eng, media: lib, speak: speak, bitrate: bitrate, audit: audit, log: log,
		client: relayClient(policy),
		chime:  chime, silence: quiet[len(quiet)-1], gap: quiet,
		last: map[string]time.Time{},
	}
	t.ctx, t.cancel = context.WithCancel(ctx)
	return t, nil
}

// Close ends every relay and waits for them. It is idempotent.
func (t *trigger) Close() error {
	t.cancel()
	t.wg.Wait()
	return nil
}

// Chime returns the pre-announcement chime: a descending two-tone "ding
// dong" (E5 then C5, 350 ms each with 15 ms fades, −8 dBFS) followed by
// 300 ms of silence, as 48 kHz mono samples.
func Chime() []float32 {
	const rate = media.OpusRate
	tone := func(freq float64, d time.Duration) []float32 {
		n := int(d.Seconds() * rate)
		fade := int(0.015 * rate)
		out := make([]float32, n)
		for i := range out {
			g := 0.4
			if i < fade {
				g *= 0.5 - 0.5*math.Cos(math.Pi*float64(i)/float64(fade))
			} else if i > n-fade {
				g *= 0.5 - 0.5*math.Cos(math.Pi*float64(n-i)/float64(fade))
			}
			out[i] = float32(g * math.Sin(2*math.Pi*freq*float64(i)/rate))
		}
		return out
	}
	pcm := append(tone(659.25, 350*time.Millisecond), tone(523.25, 350*time.Millisecond)...)
	return append(pcm, make([]float32, int(0.3*rate))...)
}

// Fire implements schedule.Trigger. Media and text are handed to the
// engine and Fire returns; a relay starts live and runs on its own
// goroutine until its window ends.
func (t *trigger) Fire(ctx context.Context, s schedule.Schedule, occ time.Time) error {
	if err := t.spaced(s.ID, occ); err != nil {
		return err
	}
	req := broadcast.Request{Zones: s.Zones, Priority: broadcast.Priority(s.Priority), Volume: s.Volume, Actor: schedulerActor,
		Origin: broadcast.OriginSchedule, ScheduleID: s.ID, Language: s.Language}
	repeat := max(s.Repeat, 1)
	switch s.Source.Kind {
	case schedule.SourceRelay:
		return t.startRelay(s, occ, req)
	case schedule.SourceMedia:
		if repeat == 1 && !s.Chime {
			req.MediaID = s.Source.MediaID
			break
		}
		pkts, err := t.media.Packets(s.Source.MediaID)
		if err != nil {
			return fmt.Errorf("media %s: %w", s.Source.MediaID, err)
		}
		req.Packets = t.assemble(s.Chime, pkts, repeat)
	case schedule.SourceText:
		if repeat == 1 && !s.Chime {
			req.Text = s.Source.Text
			break
		}
		pkts, err := t.speak.SpeakPackets(ctx, s.Source.Text, s.Language)
		if err != nil {
			return fmt.Errorf("speak: %w", err)
		}
		req.Packets = t.assemble(s.Chime, pkts, repeat)
	default:
		return fmt.Errorf("source kind %q: %w", s.Source.Kind, schedule.ErrInvalid)
	}
	b, err := t.engine.Start(ctx, req)
	if err != nil {
		return err
	}
	t.log.Info("scheduled broadcast started", "schedule", s.ID, "broadcast", b.ID, "state", b.State)
	return nil
}

// spaced refuses an occurrence closer than minInterval to the previous
// occurrence fired for the same schedule (the firing is recorded as
// failed, with this reason).
func (t *trigger) spaced(id string, occ time.Time) error {
	t.lastMu.Lock()
	defer t.lastMu.Unlock()
	if prev, ok := t.last[id]; ok && t.minInterval > 0 && occ.After(prev) && occ.Sub(prev) < t.minInterval {
		return fmt.Errorf("%v after the previous firing, below schedule.min_interval %v: %w", occ.Sub(prev), t.minInterval, schedule.ErrTooFrequent)
	}
	if t.last == nil {
		t.last = map[string]time.Time{}
	}
	t.last[id] = occ
	return nil
}

// assemble prepends the chime and plays the source repeat times with a
// short silence between plays.
func (t *trigger) assemble(chime bool, src [][]byte, repeat int) [][]byte {
	var out [][]byte
	if chime {
		out = append(out, t.chime...)
	}
	for i := range repeat {
		if i > 0 {
			out = append(out, t.gap...)
		}
		out = append(out, src...)
	}
	return out
}

// startRelay opens live speech in the schedule's zones and feeds it from
// the upstream URL until occ + Source.Duration.
func (t *trigger) startRelay(s schedule.Schedule, occ time.Time, req broadcast.Request) error {
	end := occ.Add(s.Source.Duration)
	if !time.Now().Before(end) {
		return errors.New("relay window already over")
	}
	live, err := t.engine.Live(t.ctx, req)
	if err != nil {
		return err
	}
	t.log.Info("relay started", "schedule", s.ID, "broadcast", live.ID(), "url", redact(s.Source.URL), "until", end.UTC())
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		t.relay(live, s, end)
	}()
	return nil
}

// redact hides the user information and query values of a relay URL,
// where stations put their access tokens.
func redact(raw string) string { return egress.Redact(raw) }

// relay paces packets into live at 20 ms per packet on the wall clock:
// chime first, then upstream audio, and silence whenever the upstream has
// nothing (before it first answers, during a gap). Silence keeps the
// stream and its timeline alive across an upstream outage, so speakers
// resume the programme on the same stream when the station is back.
func (t *trigger) relay(live *broadcast.Live, s schedule.Schedule, end time.Time) {
	ctx, cancel := context.WithDeadline(t.ctx, end)
	pkts := make(chan []byte, relayBuffer)
	var pull sync.WaitGroup
	pull.Add(1)
	go func() {
		defer pull.Done()
		t.pull(ctx, s, pkts, end)
	}()
	defer func() {
		cancel()
		pull.Wait()
		live.Close()
	}()

	var queue [][]byte
	if s.Chime {
		queue = slices.Clone(t.chime)
	}
	pre := time.NewTimer(relayPrebuffer)
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
				p = t.silence
				silent++
			}
		}
		if err := live.WritePacket(p, slot); err != nil {
			t.log.Info("relay ended by the engine", "schedule", s.ID, "broadcast", live.ID(), "err", err)
			return
		}
		slot = slot.Add(pkt)
	}
	if silent > 0 {
		t.log.Info("relay filled silence", "schedule", s.ID, "packets", silent)
	}
}

// pull reads the upstream until ctx ends, reconnecting with backoff. A gap
// (from the first failure to the first packet after it, or to the end of
// the window) is logged and audited as schedule.relay_gap.
func (t *trigger) pull(ctx context.Context, s schedule.Schedule, pkts chan<- []byte, end time.Time) {
	backoff := relayBackoffMin
	var gapStart time.Time
	var gapErr, lastErr error
	attempts := 0
	closeGap := func(to time.Time, resumed bool) {
		if gapStart.IsZero() {
			return
		}
		gap := to.Sub(gapStart)
		detail := map[string]any{"from": gapStart.UTC().Format(time.RFC3339Nano), "to": to.UTC().Format(time.RFC3339Nano),
			"gap_ms": gap.Milliseconds(), "err": gapErr.Error(), "last_err": lastErr.Error(), "attempts": attempts, "resumed": resumed, "url": redact(s.Source.URL)}
		if resumed {
			t.log.Warn("relay upstream back", "schedule", s.ID, "gap", gap.String(), "attempts", attempts)
		} else {
			t.log.Warn("relay window ended during an upstream gap", "schedule", s.ID, "gap", gap.String())
		}
		t.audit(store.Event{Time: to, Actor: schedulerActor, Action: audit.ScheduleRelayGap, Target: s.ID, Detail: detail})
		gapStart, gapErr, lastErr, attempts = time.Time{}, nil, nil, 0
	}
	for ctx.Err() == nil {
		err := t.relayOnce(ctx, s.Source.URL, pkts, func() {
			closeGap(time.Now(), true)
			backoff = relayBackoffMin
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
			t.log.Warn("relay upstream lost", "schedule", s.ID, "url", redact(s.Source.URL), "err", err)
		}
		wait := time.Duration(float64(backoff) * (0.75 + 0.5*rand.Float64()))
		tm := time.NewTimer(wait)
		select {
		case <-tm.C:
		case <-ctx.Done():
			tm.Stop()
		}
		backoff = min(2*backoff, relayBackoffMax)
	}
	to := time.Now()
	if to.After(end) {
		to = end
	}
	closeGap(to, false)
}

// relayOnce streams one upstream connection into pkts; first is called at
// its first packet. It returns when the stream fails, ends or stalls.
func (t *trigger) relayOnce(ctx context.Context, rawURL string, pkts chan<- []byte, first func()) error {
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "loalangd/"+Version)
	resp, err := t.client.Do(req)
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
	stall := time.AfterFunc(relayStall, func() { cancel(fmt.Errorf("no data for %v", relayStall)) })
	defer stall.Stop()
	tc, err := media.NewMP3Transcoder(watchdog{resp.Body, stall}, t.bitrate)
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
		w.stall.Reset(relayStall)
	}
	return n, err
}
