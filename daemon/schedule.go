package daemon

import (
	"context"
	"slices"

	"github.com/loalang/loalang/broadcast/media"
	"github.com/loalang/loalang/broadcast/schedule"
	"github.com/loalang/loalang/broadcast/trigger"
	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/internal/egress"
	"github.com/loalang/loalang/store"
	"github.com/loalang/loalang/web"
)

// startSchedule wires the timetable: the schedule service over bbolt
// (schedules, their audit entries and the firing records), the scheduler
// on the timetable's clock (WithClock's, else the system clock) with quiet
// hours from the config, supervised, the trigger that turns firings into
// broadcasts and relays, and the schedule API. See docs/scheduling.md.
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
	clock := d.opts.clock
	if clock == nil {
		clock = schedule.NewRealClock()
	}
	trig, err := trigger.New(ctx, trigger.Config{Engine: d.engine, Media: d.media, Speaker: d.tts, Policy: policy,
		Bitrate: d.cfg.Broadcast.BitrateBPS, Audit: d.recordAudit, Log: d.base.With("component", "schedule-trigger"),
		MinInterval: sc.MinInterval, Now: clock.Now, UserAgent: "loalangd/" + Version})
	if err != nil {
		return err
	}
	d.closers = append(d.closers, trig.Close)
	st := store.NewScheduleStore(d.db)
	known := func(z string) bool { return d.devices.ZoneExists(z) || slices.Contains(d.cfg.WiredZones(), z) }
	svc := schedule.NewService(st, schedule.ServiceConfig{
		KnownZone: known, TimeZone: sc.TimeZone, MaxRelay: d.cfg.Broadcast.MaxDuration, MinInterval: sc.MinInterval,
		CheckRelayURL: policy.CheckURL, CheckLanguage: media.CheckLanguage, DefaultLanguage: media.DefaultLanguage,
		CheckVoice: func(code string) error { _, err := media.VoiceFor(code); return err },
		Now:        clock.Now,
		Reload:     func() { d.sched.Reload() },
		Damaged:    func(err error) { d.health.Set("schedules", err) },
	})
	var firings schedule.FiringLog = st
	if d.ops != nil {
		firings = meteredFirings{st, d.ops}
	}
	d.sched = schedule.New(cfg, svc.Runnable(firings), trig, clock, d.base)
	// A scheduler that cannot read its store (a damaged record, a disk
	// error) is restarted with backoff and named in /healthz meanwhile;
	// it once stopped for good after one log line.
	d.supervise(ctx, "scheduler", d.sched.Run)
	d.web.EnableSchedules(web.ScheduleDeps{Service: svc})
	return nil
}
