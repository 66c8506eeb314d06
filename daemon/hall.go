package daemon

import (
	"context"
	"fmt"

	"github.com/loalang/loalang/broadcast"
	"github.com/loalang/loalang/hall"
)

// startHall starts the hall output when the config has a sound card sink or
// a relay board. Neither failing device stops the daemon: the hall reports
// them in its status, metrics and log, and IP speakers keep working.
func (d *Daemon) startHall(ctx context.Context) error {
	var hc hall.Config
	if d.cfg.Sound.Enabled {
		hc.Sink = &hall.SinkConfig{OutputLatency: d.cfg.Sound.OutputLatency}
	}
	if len(d.cfg.RelayBoards) > 0 {
		rb := d.cfg.RelayBoards[0]
		zones := map[string]uint16{}
		for z, coil := range rb.ZoneCoils {
			zones[z] = uint16(coil)
		}
		hc.Board = &hall.BoardConfig{Port: rb.Port, Baud: rb.Baud, SlaveID: uint8(rb.SlaveID), AmpCoil: uint16(rb.AmpCoil),
			Zones: zones, Warmup: rb.Warmup, Tail: rb.Tail, IdleOff: rb.IdleOff}
	}
	if hc.Sink == nil && hc.Board == nil {
		return nil
	}
	h, err := hall.New(hc, d.base)
	if err != nil {
		return fmt.Errorf("hall output: %w", err)
	}
	d.hall = h
	d.metrics.MustRegister(h.Collector())
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := h.Run(ctx); err != nil {
			d.log.Error("hall output stopped", "err", err)
			d.health.Set("hall", err) // not restartable: its parts heal themselves; a stop must not be silent
		}
	}()
	d.closers = append(d.closers, h.Close)
	d.web.EnableHall(h)
	return nil
}

// The hall tells the engine when its wired zones can play (a cold
// amplifier), so streams that include them start no earlier.
var _ broadcast.Warmer = (*hall.Hall)(nil)

// output is the hall as the broadcast engine's Output, or nil without one.
func (d *Daemon) output() broadcast.Output {
	if d.hall == nil {
		return nil
	}
	return d.hall
}
