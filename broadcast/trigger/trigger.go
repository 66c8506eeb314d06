// Package trigger fires the timetable: it turns an occurrence the
// scheduler (broadcast/schedule) hands it into a broadcast on the engine,
// with the pre-announcement chime and repeats assembled, or a live relay
// of an internet radio station (broadcast/relay) for the schedule's
// window. "Schedule" names the timetable, "trigger" the firing, and
// "arbitration" the engine's per-zone priority rules: see
// docs/scheduling.md.
package trigger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/loalang/loalang/audit"
	"github.com/loalang/loalang/broadcast"
	"github.com/loalang/loalang/broadcast/media"
	"github.com/loalang/loalang/broadcast/relay"
	"github.com/loalang/loalang/broadcast/schedule"
	"github.com/loalang/loalang/internal/egress"
)

// RepeatGap is the silence between repeats of a scheduled source.
const RepeatGap = schedule.RepeatGap

// Engine is the part of the broadcast engine the trigger drives.
type Engine interface {
	Start(ctx context.Context, req broadcast.Request) (broadcast.Broadcast, error)
	Live(ctx context.Context, req broadcast.Request) (*broadcast.Live, error)
}

// Media loads a stored recording as Opus packets.
type Media interface {
	Packets(id string) ([][]byte, error)
}

// Speaker speaks text as Opus packets.
type Speaker interface {
	SpeakPackets(ctx context.Context, text, language string) ([][]byte, error)
}

// Config wires a trigger.
type Config struct {
	Engine  Engine
	Media   Media
	Speaker Speaker
	// Policy says which upstream addresses a relay may connect to
	// (schedule.relay_allow).
	Policy egress.Policy
	// Bitrate is the Opus bitrate of the chime, silence and relays.
	Bitrate int
	// Audit records relay gaps.
	Audit func(audit.Entry)
	// Log receives the trigger's events; nil discards.
	Log *slog.Logger
	// MinInterval refuses a firing closer than this to the schedule's
	// previous one (schedule.min_interval): schedules stored before the
	// limit existed are not re-validated, and must not turn the
	// loudspeakers into a siren either. 0 disables the check.
	MinInterval time.Duration
	// Now is the timetable's clock, the one occurrences are on (the
	// scheduler's); nil means time.Now. A relay window is judged on it and
	// then paced on the wall clock, since audio plays in real time.
	Now func() time.Time
	// UserAgent is sent to relay upstreams.
	UserAgent string
}

// Trigger turns a firing into a broadcast: it implements schedule.Trigger.
type Trigger struct {
	cfg     Config
	client  *http.Client
	chime   [][]byte // pre-announcement chime, encoded once
	silence []byte   // one 20 ms packet of silence
	gap     [][]byte // RepeatGap of silence

	lastMu sync.Mutex
	last   map[string]time.Time // schedule id -> last occurrence fired

	ctx    context.Context // relays live at most as long as this
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New encodes the chime and the silence and returns a trigger whose relays
// end with ctx or Close.
func New(ctx context.Context, cfg Config) (*Trigger, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Audit == nil {
		cfg.Audit = func(audit.Entry) {}
	}
	chime, err := media.EncodePCM(ctx, Chime(), cfg.Bitrate)
	if err != nil {
		return nil, fmt.Errorf("encode chime: %w", err)
	}
	quiet, err := media.EncodePCM(ctx, make([]float32, int(RepeatGap/time.Millisecond)*media.OpusRate/1000), cfg.Bitrate)
	if err != nil {
		return nil, fmt.Errorf("encode silence: %w", err)
	}
	t := &Trigger{
		cfg: cfg, client: relay.Client(cfg.Policy),
		chime: chime, silence: quiet[len(quiet)-1], gap: quiet,
		last: map[string]time.Time{},
	}
	t.ctx, t.cancel = context.WithCancel(ctx)
	return t, nil
}

// Close ends every relay and waits for them. It is idempotent.
func (t *Trigger) Close() error {
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
func (t *Trigger) Fire(ctx context.Context, s schedule.Schedule, occ time.Time) error {
	if err := t.spaced(s.ID, occ); err != nil {
		return err
	}
	req := broadcast.Request{Zones: s.Zones, Priority: broadcast.Priority(s.Priority), Volume: s.Volume, Actor: schedule.Actor,
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
		pkts, err := t.cfg.Media.Packets(s.Source.MediaID)
		if err != nil {
			return fmt.Errorf("media %s: %w", s.Source.MediaID, err)
		}
		req.Packets = t.assemble(s.Chime, pkts, repeat)
	case schedule.SourceText:
		if repeat == 1 && !s.Chime {
			req.Text = s.Source.Text
			break
		}
		pkts, err := t.cfg.Speaker.SpeakPackets(ctx, s.Source.Text, s.Language)
		if err != nil {
			return fmt.Errorf("speak: %w", err)
		}
		req.Packets = t.assemble(s.Chime, pkts, repeat)
	default:
		return fmt.Errorf("source kind %q: %w", s.Source.Kind, schedule.ErrInvalid)
	}
	b, err := t.cfg.Engine.Start(ctx, req)
	if err != nil {
		return err
	}
	t.cfg.Log.Info("scheduled broadcast started", "schedule", s.ID, "broadcast", b.ID, "state", b.State)
	return nil
}

// spaced refuses an occurrence closer than MinInterval to the previous
// occurrence fired for the same schedule (the firing is recorded as
// failed, with this reason).
func (t *Trigger) spaced(id string, occ time.Time) error {
	t.lastMu.Lock()
	defer t.lastMu.Unlock()
	if prev, ok := t.last[id]; ok && t.cfg.MinInterval > 0 && occ.After(prev) && occ.Sub(prev) < t.cfg.MinInterval {
		return fmt.Errorf("%v after the previous firing, below schedule.min_interval %v: %w", occ.Sub(prev), t.cfg.MinInterval, schedule.ErrTooFrequent)
	}
	if t.last == nil {
		t.last = map[string]time.Time{}
	}
	t.last[id] = occ
	return nil
}

// assemble prepends the chime and plays the source repeat times with a
// short silence between plays.
func (t *Trigger) assemble(chime bool, src [][]byte, repeat int) [][]byte {
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
// the upstream URL until occ + Source.Duration on the timetable's clock.
func (t *Trigger) startRelay(s schedule.Schedule, occ time.Time, req broadcast.Request) error {
	end := occ.Add(s.Source.Duration)
	left := end.Sub(t.cfg.Now())
	if left <= 0 {
		return errors.New("relay window already over")
	}
	live, err := t.cfg.Engine.Live(t.ctx, req)
	if err != nil {
		return err
	}
	t.cfg.Log.Info("relay started", "schedule", s.ID, "broadcast", live.ID(), "url", egress.Redact(s.Source.URL), "until", end.UTC())
	rc := relay.Config{URL: s.Source.URL, Target: s.ID, Actor: schedule.Actor, Client: t.client, UserAgent: t.cfg.UserAgent,
		Bitrate: t.cfg.Bitrate, Silence: t.silence, Audit: t.cfg.Audit, Log: t.cfg.Log}
	if s.Chime {
		rc.Lead = t.chime
	}
	wallEnd := time.Now().Add(left)
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer live.Close()
		relay.Run(t.ctx, live, rc, wallEnd)
	}()
	return nil
}
