package daemon

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/loalang/loalang/broadcast"
	"github.com/loalang/loalang/broadcast/catalog"
	"github.com/loalang/loalang/broadcast/media"
	"github.com/loalang/loalang/broadcast/playout"
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
	cat, err := catalog.New(catalog.Config{Dir: filepath.Join(d.cfg.DataDir, "media"), Logger: d.base}, store.NewMediaStore(d.db))
	if err != nil {
		return fmt.Errorf("media catalog: %w", err)
	}
	d.checkCatalog(ctx, cat)
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
		Clock:     d.opts.engineClock(), // WithClock (options.go)
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
	d.web.EnableBroadcasts(web.BroadcastDeps{Engine: durableStart{eng, rec}, Media: lib, Catalog: cat, Log: rec.log(), MaxUpload: bc.MaxUploadBytes})
	return nil
}

// healthCatalog is the health component of the media catalog: bad while
// the index names clips whose files are missing (found at start).
const healthCatalog = "media"

// checkCatalog compares the media index with the clip files at start:
// entries without a file are a fault on /healthz (their broadcasts would
// fail); files without an entry (clips played from the uplink, or left by
// a delete whose removal failed) are logged.
func (d *Daemon) checkCatalog(ctx context.Context, cat *catalog.Catalog) {
	rep, err := cat.Check(ctx)
	if err == nil {
		err = rep.Err()
	}
	d.health.Set(healthCatalog, err)
	if err != nil {
		d.log.Error("media catalog check", "err", err)
	}
	if len(rep.Orphans) > 0 {
		d.log.Warn("media files without a library entry", "count", len(rep.Orphans), "clips", rep.Orphans)
	}
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

// recorder is the play-out log (broadcast/playout, which owns the record
// and audit rules) as the engine and the API use it, counted by the ops
// metrics. A write that fails (a full disk) is held and retried, never
// dropped.
type recorder struct {
	retry *retrier
	ops   *opsMetrics // nil: not counted
}

// log is the play-out log over the store, writing through the retrier.
func (r *recorder) log() *playout.Log {
	return playout.New(retryPlayout{store.NewPlayoutStore(r.retry.db), r.retry}, nil)
}

func (r *recorder) SaveBroadcast(ctx context.Context, b broadcast.Record) error {
	r.ops.observe(b)
	return r.log().SaveBroadcast(ctx, b)
}

// saveFirst saves b only if the engine has not saved it yet.
func (r *recorder) saveFirst(b broadcast.Record) {
	r.ops.observe(b)
	r.log().SaveFirst(context.Background(), b)
}

// retryPlayout is the play-out log's store whose writes go through the
// daemon's retrier: one that fails is held for retry, and UpdatePlayout
// returns nil.
type retryPlayout struct {
	*store.PlayoutStore
	retry *retrier
}

func (s retryPlayout) UpdatePlayout(ctx context.Context, what string, fn func(tx playout.Tx) error) error {
	s.retry.Do(what, func(tx *store.Tx) error { return fn(store.PlayoutTx(tx)) })
	return nil
}

// durableStart is the engine as the API uses it, with one difference: a
// broadcast's record is in bbolt before its 201 is sent (playout.Log.SaveFirst).
// On a full disk the record is held for retry.
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
