package broadcast

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/loalang/loalang/device/wire"
)

// prepare validates req and resolves its audio.
func (e *Engine) prepare(ctx context.Context, req Request, live bool) (*bcast, error) {
	if len(req.Zones) == 0 {
		return nil, fmt.Errorf("%w: zones: at least one zone is required", ErrInvalid)
	}
	if req.Priority == "" {
		req.Priority = PriorityNormal
	}
	rank := req.Priority.Rank()
	if rank == 0 {
		return nil, fmt.Errorf("%w: priority: %q is not emergency, priority, normal or background", ErrInvalid, req.Priority)
	}
	if req.Volume < 0 || req.Volume > 100 {
		return nil, fmt.Errorf("%w: volume: %d outside 0–100", ErrInvalid, req.Volume)
	}
	switch req.Origin {
	case "":
		req.Origin = OriginAPI
		if live {
			req.Origin = OriginLive
		}
	case OriginAPI, OriginSchedule, OriginLive, OriginUplink:
	default:
		return nil, fmt.Errorf("%w: origin: %q is not api, schedule, live or uplink", ErrInvalid, req.Origin)
	}
	sources := 0
	for _, set := range []bool{req.MediaID != "", req.Text != "", req.Packets != nil} {
		if set {
			sources++
		}
	}
	if live && sources != 0 {
		return nil, fmt.Errorf("%w: source: live speech takes no media_id, text or packets", ErrInvalid)
	}
	if !live && sources != 1 {
		return nil, fmt.Errorf("%w: source: exactly one of media_id, text and packets is required", ErrInvalid)
	}
	if len(req.Text) > maxText {
		return nil, fmt.Errorf("%w: text: %d bytes exceeds %d", ErrInvalid, len(req.Text), maxText)
	}
	var zones []string
	for _, z := range req.Zones {
		if contains(zones, z) {
			continue
		}
		if wire.ValidLevel(z) != nil || !(e.wired[z] || e.deps.Directory.ZoneExists(z)) {
			return nil, fmt.Errorf("%w: %q", ErrUnknownZone, z)
		}
		zones = append(zones, z)
	}
	e.prewarm(zones)
	b := &bcast{
		id:     newBroadcastID(),
		req:    req,
		zones:  zones,
		rank:   rank,
		volume: req.Volume,
		legs:   map[string]*leg{},
		state:  StateQueued,
	}
	b.req.Packets = nil
	b.req.Zones = zones
	if req.Priority == PriorityEmergency {
		b.volume = 100
	}
	for _, z := range zones {
		b.legs[z] = &leg{state: ZoneWaiting}
	}
	var err error
	switch {
	case live:
		b.src = SourceLive
	case req.MediaID != "":
		b.src = SourceMedia
		if e.deps.Media == nil {
			return nil, fmt.Errorf("load media %s: %w: no media library", req.MediaID, ErrUnavailable)
		}
		if b.packets, err = e.deps.Media.Packets(ctx, req.MediaID); err != nil {
			return nil, fmt.Errorf("load media %s: %w", req.MediaID, err)
		}
	case req.Text != "":
		b.src = SourceText
		if e.deps.Speaker == nil {
			return nil, fmt.Errorf("speak text: %w: no text-to-speech", ErrUnavailable)
		}
		if b.packets, err = e.deps.Speaker.SpeakPackets(ctx, req.Text, req.Language); err != nil {
			return nil, fmt.Errorf("speak text: %w", err)
		}
	default:
		b.src = SourcePackets
		b.packets = req.Packets
	}
	if !live {
		if len(b.packets) == 0 {
			return nil, fmt.Errorf("%w: packets: no audio", ErrInvalid)
		}
		for i, p := range b.packets {
			if len(p) == 0 || len(p) > wire.MaxOpusPacket {
				return nil, fmt.Errorf("%w: packets[%d]: %d bytes, want 1–%d", ErrInvalid, i, len(p), wire.MaxOpusPacket)
			}
		}
		if d := time.Duration(len(b.packets)) * packetDur; d > e.cfg.MaxDuration {
			return nil, fmt.Errorf("%w: duration %s exceeds the maximum %s", ErrInvalid, d, e.cfg.MaxDuration)
		}
	}
	b.acct = newLedger(b, e.deps.Directory.Members(zones), e.deps.Directory.Online)
	return b, nil
}

// prewarm asks the hall output to get ready when zones include a wired
// one, before the audio is loaded or spoken: text-to-speech of a long
// emergency bulletin takes seconds, which the amplifier's warm-up can use.
func (e *Engine) prewarm(zones []string) {
	w, ok := e.deps.Output.(Warmer)
	if !ok {
		return
	}
	for _, z := range zones {
		if e.wired[z] {
			w.Prewarm()
			return
		}
	}
}

func newBroadcastID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+).
	return "b-" + hex.EncodeToString(b[:])
}
