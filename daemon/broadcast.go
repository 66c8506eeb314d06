package daemon

import (
	"context"
	"fmt"
	"github.com/loalang/loalang/audit"
	"path/filepath"
	"time"

	"github.com/loalang/loalang/broadcast"
	"github.com/loalang/loalang/broadcast/media"
	"github.com/loalang/loalang/bus"
	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/store"
	"github.com/loalang/loalang/web"
)

// startBroadcast wires the media library and the broadcast engine: the
// engine publishes through the daemon's MQTT client, reads speakers from
// the presence registry and logs every broadcast to bbolt.
func (d *Daemon) startBroadcast(ctx context.Context) error {
	bc := d.cfg.Broadcast
	lib, err := media.NewLibrary(media.Config{
		Dir: filepath.Join(d.cfg.DataDir, "media"), MaxBytes: bc.MaxUploadBytes, MaxDuration: bc.MaxMediaLength,
		TargetLUFS: bc.LoudnessLUFS, Bitrate: bc.BitrateBPS, Queue: bc.UploadQueue, Logger: d.base.With("component", "media"),
	})
	if err != nil {
		return fmt.Errorf("media library: %w", err)
	}
	d.media = lib
	d.tts = tts{t: media.NewTTS(media.TTSConfig{Voice: bc.TTSVoice, Concurrency: bc.TTSConcurrency, Queue: bc.TTSQueue}), bitrate: bc.BitrateBPS}
	rec := &recorder{retry: d.retry}
	eng, err := broadcast.New(broadcast.Config{
		Site: d.cfg.Site, PacketsPerFrame: bc.PacketsPerFrame, PlayoutDelay: bc.PlayoutDelay, LiveDelay: bc.LiveDelay,
		MaxDuration: bc.MaxDuration, PreemptPolicy: bc.PreemptPolicy, WiredZones: d.cfg.WiredZones(),
	}, broadcast.Deps{
		Publisher: d.bus,
		Media:     libraryMedia{lib},
		Speaker:   d.tts,
		Directory: d.devices,
		Recorder:  rec,
		Output:    d.output(),
	}, d.base)
	if err != nil {
		return fmt.Errorf("broadcast engine: %w", err)
	}
	d.engine = eng
	d.ops = newOpsMetrics(d.metrics, d.db, func(id string) []string {
		st, _ := d.devices.Get(id)
		return st.Zones
	}, eng.List)
	rec.ops = d.ops
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := eng.Run(ctx); err != nil {
			d.log.Error("broadcast engine stopped", "err", err)
			d.health.Set("broadcast", err) // not restartable: its parts heal themselves; a stop must not be silent
		}
	}()
	d.closers = append(d.closers, eng.Close)
	d.web.EnableBroadcasts(web.BroadcastDeps{Engine: durableStart{eng, rec}, Media: lib, MaxUpload: bc.MaxUploadBytes})
	return nil
}

// handleReport feeds delivery reports from dev/+/report to the engine.
func (d *Daemon) handleReport(m bus.Message) {
	id, _, ok := d.topics.ParseDevice(m.Topic)
	if !ok {
		return
	}
	r, err := wire.Decode[wire.Report](m.Payload)
	if err != nil {
		d.log.Debug("dropped device payload", "topic", m.Topic, "err", err)
		return
	}
	d.engine.HandleReport(id, r)
}

// libraryMedia adapts the media library to the engine.
type libraryMedia struct{ lib *media.Library }

func (m libraryMedia) Packets(ctx context.Context, id string) ([][]byte, error) {
	return m.lib.Packets(id)
}

// tts speaks text with espeak-ng, within the configured concurrency limit,
// and encodes it for streaming.
type tts struct {
	t       *media.TTS
	bitrate int
}

func (t tts) SpeakPackets(ctx context.Context, text, language string) ([][]byte, error) {
	pcm, err := t.t.Speak(ctx, text, language)
	if err != nil {
		return nil, err
	}
	return media.EncodePCM(ctx, pcm, t.bitrate)
}

// recorder keeps the broadcast log in bbolt and audits each change of
// state in the same transaction. A broadcast's end is audited once: the
// speakers' delivery reports that arrive after it update the record (which
// holds the per-device detail) but add no audit entry. A write that fails
// (a full disk) is held and retried, never dropped.
type recorder struct {
	retry *retrier
	ops   *opsMetrics // nil: not counted
}

func (r *recorder) SaveBroadcast(ctx context.Context, b broadcast.Record) error {
	r.ops.observe(b)
	at := time.Now()
	r.retry.Do("broadcast "+b.ID+" "+string(b.State), func(tx *store.Tx) error { return r.put(tx, b, at) })
	return nil
}

// put stores b and audits its state if it changed; a broadcast's end is
// audited once.
func (r *recorder) put(tx *store.Tx, b broadcast.Record, at time.Time) error {
	var prev broadcast.Record
	had := tx.Get(store.Broadcasts, b.ID, &prev) == nil
	if err := tx.Put(store.Broadcasts, b.ID, b); err != nil {
		return err
	}
	if had && (prev.State == b.State || broadcast.Terminal(prev.State)) {
		return nil
	}
	detail := map[string]any{"zones": b.Zones, "priority": b.Priority, "source": b.Source, "origin": b.Origin}
	if b.Reason != "" {
		detail["reason"] = b.Reason
	}
	if broadcast.Terminal(b.State) {
		detail["delivery"] = summary(b.Devices)
	}
	return tx.AppendAudit(store.Event{Time: at, Actor: b.Actor, Action: audit.BroadcastState(string(b.State)), Target: b.ID, Detail: detail})
}

// durableStart is the engine as the API uses it, with one difference: a
// broadcast's record is in bbolt before its 201 is sent (the engine saves
// records from its own goroutine, so a crash just after the answer lost
// an acknowledged broadcast). On a full disk the record is held for retry.
type durableStart struct {
	*broadcast.Engine
	rec *recorder
}

func (s durableStart) Start(ctx context.Context, req broadcast.Request) (broadcast.Broadcast, error) {
	b, err := s.Engine.Start(ctx, req)
	if err == nil {
		s.rec.saveFirst(b)
	}
	return b, err
}

// saveFirst saves b only if the engine has not saved it yet, so an older
// state never overwrites a newer one.
func (r *recorder) saveFirst(b broadcast.Record) {
	r.ops.observe(b)
	at := time.Now()
	r.retry.Do("broadcast "+b.ID+" "+string(b.State), func(tx *store.Tx) error {
		if tx.Exists(store.Broadcasts, b.ID) {
			return nil
		}
		return r.put(tx, b, at)
	})
}

// summary condenses per-device delivery for the audit trail.
func summary(devs []broadcast.Delivery) map[string]uint64 {
	var s struct{ expected, played, late, lost uint64 }
	for _, d := range devs {
		s.expected += d.FramesExpected
		s.played += d.FramesPlayed
		s.late += d.FramesLate
		s.lost += d.FramesLost
	}
	return map[string]uint64{"speakers": uint64(len(devs)), "frames_expected": s.expected, "frames_played": s.played, "frames_late": s.late, "frames_lost": s.lost}
}
