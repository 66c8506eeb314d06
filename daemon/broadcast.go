package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"

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
		TargetLUFS: bc.LoudnessLUFS, Bitrate: bc.BitrateBPS, Logger: d.base.With("component", "media"),
	})
	if err != nil {
		return fmt.Errorf("media library: %w", err)
	}
	d.media = lib
	eng, err := broadcast.New(broadcast.Config{
		Site: d.cfg.Site, PacketsPerFrame: bc.PacketsPerFrame, PlayoutDelay: bc.PlayoutDelay, LiveDelay: bc.LiveDelay,
		MaxDuration: bc.MaxDuration, PreemptPolicy: bc.PreemptPolicy, WiredZones: d.cfg.WiredZones(),
	}, broadcast.Deps{
		Publisher: d.bus,
		Media:     libraryMedia{lib},
		Speaker:   tts{voice: bc.TTSVoice, bitrate: bc.BitrateBPS},
		Directory: d.devices,
		Recorder:  &recorder{db: d.db, audit: d.recordAudit, last: map[string]string{}},
		Output:    d.output(),
	}, d.base)
	if err != nil {
		return fmt.Errorf("broadcast engine: %w", err)
	}
	d.engine = eng
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := eng.Run(ctx); err != nil {
			d.log.Error("broadcast engine stopped", "err", err)
			d.health.Set("broadcast", err) // not restartable: its parts heal themselves; a stop must not be silent
		}
	}()
	d.closers = append(d.closers, eng.Close)
	d.web.EnableBroadcasts(web.BroadcastDeps{Engine: eng, Media: lib, MaxUpload: bc.MaxUploadBytes})
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

// tts speaks text with espeak-ng and encodes it for streaming.
type tts struct {
	voice   string
	bitrate int
}

func (t tts) SpeakPackets(ctx context.Context, text string) ([][]byte, error) {
	pcm, err := media.Speak(ctx, text, t.voice)
	if err != nil {
		return nil, err
	}
	return media.EncodePCM(ctx, pcm, t.bitrate)
}

// recorder keeps the broadcast log in bbolt and audits each state change.
type recorder struct {
	db    *store.DB
	audit func(store.Event)

	mu   sync.Mutex
	last map[string]string // broadcast id -> last audited state
}

func (r *recorder) SaveBroadcast(ctx context.Context, b broadcast.Record) error {
	if err := store.Put(r.db, store.Broadcasts, b.ID, b); err != nil {
		return err
	}
	r.mu.Lock()
	changed := r.last[b.ID] != b.State
	r.last[b.ID] = b.State
	if broadcast.Terminal(b.State) {
		delete(r.last, b.ID)
	}
	r.mu.Unlock()
	if changed {
		detail := map[string]any{"zones": b.Zones, "priority": b.Priority, "source": b.Source, "origin": b.Origin}
		if b.Reason != "" {
			detail["reason"] = b.Reason
		}
		if broadcast.Terminal(b.State) {
			detail["delivery"] = summary(b.Devices)
		}
		r.audit(store.Event{Actor: b.Actor, Action: "broadcast." + b.State, Target: b.ID, Detail: detail})
	}
	return nil
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
