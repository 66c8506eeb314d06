package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/loalang/loalang/broadcast"
	"github.com/loalang/loalang/broadcast/playout"
	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/internal/egress"
	"github.com/loalang/loalang/uplink"
)

// uplinkParts is the running uplink (docs/uplink.md), nil when
// uplink.url is empty.
type uplinkParts struct {
	client *uplink.Client
	outbox *uplink.Outbox
	cmds   *uplink.Commands
	tail   *uplink.AuditTail
	// cams answers the commune's camera requests (uplink_cameras.go).
	cams *uplink.CameraService
	// camRelay is the camera relay, set once startCameras has run.
	camRelay *uplinkCameraRelay
}

// uplinkReportDelay is how long after a command's broadcast ended its
// "played" report waits, so late delivery reports from speakers are in it.
var uplinkReportDelay = 2 * time.Second

// startUplink registers the status endpoint and metrics and, when
// uplink.url is set, starts the connection upstream, the audit tail into
// the outbox and the command handler. It runs after the broadcast engine:
// accepted commands play through it.
func (d *Daemon) startUplink(ctx context.Context) error {
	d.web.EnableUplink(func() any { return d.uplinkStatus() })
	d.metrics.MustRegister(uplinkCollector{d})
	d.web.EnableUplinkDrafts(uplinkDrafts{d})
	u := d.cfg.Uplink
	if u.URL == "" {
		return nil
	}
	topics, err := uplink.NewTopics(u.Province, u.Commune, d.cfg.Site)
	if err != nil {
		return &config.Error{File: "config", Key: "uplink.commune", Reason: err.Error()}
	}
	pass := ""
	if u.PasswordFile != "" {
		raw, err := os.ReadFile(u.PasswordFile)
		if err != nil {
			return &config.Error{File: "config", Key: "uplink.password_file", Reason: err.Error()}
		}
		pass = strings.TrimSpace(string(raw))
	}
	keys, err := uplink.ParseKeys(u.ProvinceKeys, u.CommuneKeys)
	if err != nil {
		return &config.Error{File: "config", Key: "uplink.province_keys", Reason: err.Error()}
	}
	policy, err := egress.ParsePolicy("uplink.media_allow", u.MediaAllow)
	if err != nil {
		return &config.Error{File: "config", Key: "uplink.media_allow", Reason: err.Error()}
	}
	ob, err := uplink.OpenOutbox(d.db, topics, u.OutboxMax, nil)
	if err != nil {
		return err
	}
	mediaMax := u.MediaMaxBytes
	if mediaMax <= 0 {
		mediaMax = d.cfg.Broadcast.MaxUploadBytes
	}
	live := uplink.NewLiveReceiver(topics, keys.Commune, 0, d.base)
	cmds := uplink.NewCommands(uplink.CommandsConfig{Topics: topics, Keys: keys, MediaMaxBytes: mediaMax, MediaPolicy: policy, Live: live}, d.db, ob, uplinkPlayer{d}, d.base)
	client, err := uplink.New(uplink.Config{URL: u.URL, CAFile: u.CAFile, Username: u.Username, Password: pass, ClientID: u.ClientID,
		Topics: topics, Keys: keys, MaxBackoff: u.MaxBackoff, MinBackoff: uplinkMinBackoff}, ob, cmds, d.base)
	if err != nil {
		return &config.Error{File: "config", Key: "uplink.ca_file", Reason: err.Error()}
	}
	d.up = &uplinkParts{client: client, outbox: ob, cmds: cmds, tail: uplink.NewAuditTail(d.db, ob)}
	d.wireUplinkCameras(topics, keys)
	d.supervise(ctx, "uplink", client.Run)
	d.supervise(ctx, "uplink-commands", cmds.Run)
	d.supervise(ctx, "uplink-live", func(ctx context.Context) error { <-ctx.Done(); live.Close(); return nil })
	d.supervise(ctx, "uplink-audit", func(ctx context.Context) error { return d.up.tail.Run(ctx, time.Second) })
	d.supervise(ctx, "uplink-reports", d.reportCommands)
	return nil
}

// uplinkMinBackoff is the first reconnect wait; tests shorten it.
var uplinkMinBackoff = time.Second

func (d *Daemon) uplinkStatus() uplink.Status {
	if d.up == nil {
		return uplink.Status{Commands: map[string]int{}}
	}
	return d.up.client.Status()
}

// reportCommands reports each command's broadcast once it has ended, with
// the per-speaker delivery, and the health problems as they change, into
// the outbox.
func (d *Daemon) reportCommands(ctx context.Context) error {
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	var lastHealth, lastState string
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for _, id := range d.up.cmds.Pending() {
			b, err := d.engine.Get(id)
			if errors.Is(err, broadcast.ErrNotFound) {
				d.reportFromLog(id)
				continue
			}
			if err != nil || !broadcast.Terminal(b.State) || time.Since(b.Ended) < uplinkReportDelay {
				continue
			}
			d.up.cmds.BroadcastEnded(id, string(b.State), b.Reason, b.Devices)
		}
		probs := d.health.Problems()
		key := fmt.Sprint(probs)
		if key != lastHealth {
			lastHealth = key
			if err := d.up.outbox.Append("health", uplink.ClassTelemetry, map[string]any{"problems": probs}); err != nil {
				d.log.Error("uplink health event not queued", "err", err)
			}
		}
		if st := d.uplinkState(); st.key != lastState {
			if err := d.up.outbox.Append(uplink.KindState, uplink.ClassTelemetry, st.StateData); err != nil {
				d.log.Error("uplink state event not queued", "err", err)
			} else {
				lastState = st.key
			}
		}
	}
}

// uplinkStateSnapshot is a state event's data and its comparison key.
type uplinkStateSnapshot struct {
	uplink.StateData
	key string
}

// uplinkState is the village's devices (zones, online) and the broadcasts
// playing now, for the commune's overview (a "state" event whenever it
// changes: docs/protocol.md). A snapshot, not a delta, so a commune that
// missed events is right again with the next one.
func (d *Daemon) uplinkState() uplinkStateSnapshot {
	var st uplink.StateData
	for _, s := range d.devices.List() {
		st.Devices = append(st.Devices, uplink.DeviceState{ID: s.ID, Kind: s.Kind, Zones: s.Zones, Online: s.Online})
	}
	for _, b := range d.engine.List() {
		if broadcast.Terminal(b.State) {
			continue
		}
		st.Broadcasts = append(st.Broadcasts, uplink.RunningBroadcast{ID: b.ID, State: string(b.State), Zones: b.Zones, Priority: string(b.Priority),
			Origin: string(b.Origin), Actor: b.Actor, Started: b.Started})
	}
	slices.SortFunc(st.Broadcasts, func(a, b uplink.RunningBroadcast) int { return strings.Compare(a.ID, b.ID) })
	return uplinkStateSnapshot{StateData: st, key: fmt.Sprint(st)}
}

// reportFromLog reports a command's broadcast that this engine does not
// know: one started before a restart. Its record in the broadcast log says
// how it ended (a shutdown stops what plays: "stopped", "controller shut
// down") and its per-speaker delivery. A record left non-final (the
// process was killed) is reported "stopped", as nothing plays it any more;
// a missing record as "unknown".
func (d *Daemon) reportFromLog(id string) {
	rec, err := (&recorder{retry: d.retry}).log().Get(context.Background(), id)
	switch {
	case errors.Is(err, playout.ErrNotFound):
		d.up.cmds.BroadcastEnded(id, "unknown", "no record of the broadcast", nil)
	case err != nil:
		d.log.Error("uplink played report: read broadcast log", "broadcast", id, "err", err)
	case broadcast.Terminal(rec.State):
		d.up.cmds.BroadcastEnded(id, string(rec.State), rec.Reason, rec.Devices)
	default:
		d.up.cmds.BroadcastEnded(id, string(broadcast.StateStopped), "the controller restarted while it was "+string(rec.State), rec.Devices)
	}
}

// uplinkPlayer plays accepted commands through the broadcast engine, in
// the target's zones that exist here (all of them when it names none).
type uplinkPlayer struct{ d *Daemon }

func (p uplinkPlayer) Play(ctx context.Context, pl uplink.Play) (string, error) {
	d := p.d
	var zones []string
	for _, z := range d.cfg.Zones {
		if len(pl.Zones) == 0 || slices.Contains(pl.Zones, z.ID) {
			zones = append(zones, z.ID)
		}
	}
	if len(zones) == 0 {
		return "", fmt.Errorf("none of the zones %q is here", pl.Zones)
	}
	req := broadcast.Request{Zones: zones, Priority: broadcast.Priority(pl.Priority), Actor: pl.Actor, Origin: broadcast.OriginUplink, Text: pl.Text}
	if pl.Media != nil {
		info, err := d.media.Import(ctx, pl.MediaName, bytes.NewReader(pl.Media))
		if err != nil {
			return "", fmt.Errorf("import media: %w", err)
		}
		req.MediaID = info.ID
	}
	b, err := durableStart{d.engine, &recorder{retry: d.retry}}.Start(ctx, req)
	if err != nil {
		return "", err
	}
	return b.ID, nil
}

// PlayLive starts a live broadcast for a commune's live command, in the
// target's zones that exist here; the uplink's live receiver feeds it the
// commune's signed chunks and closes it (docs/commune.md, "Live speech").
func (p uplinkPlayer) PlayLive(ctx context.Context, pl uplink.Play) (string, uplink.LiveSink, error) {
	d := p.d
	var zones []string
	for _, z := range d.cfg.Zones {
		if len(pl.Zones) == 0 || slices.Contains(pl.Zones, z.ID) {
			zones = append(zones, z.ID)
		}
	}
	if len(zones) == 0 {
		return "", nil, fmt.Errorf("none of the zones %q is here", pl.Zones)
	}
	l, err := d.engine.Live(ctx, broadcast.Request{Zones: zones, Priority: broadcast.Priority(pl.Priority), Actor: pl.Actor, Origin: broadcast.OriginUplink})
	if err != nil {
		return "", nil, err
	}
	return l.ID(), l, nil
}

// uplinkCollector exposes the uplink's status to Prometheus.
type uplinkCollector struct{ d *Daemon }

var (
	uplinkConnectedDesc = prometheus.NewDesc("loalang_uplink_connected", "1 when the uplink to the commune or province broker is connected.", nil, nil)
	uplinkDepthDesc     = prometheus.NewDesc("loalang_uplink_outbox_depth", "Events in the uplink outbox waiting for the broker's PUBACK.", nil, nil)
	uplinkOldestDesc    = prometheus.NewDesc("loalang_uplink_oldest_pending_seconds", "Age of the oldest event in the uplink outbox; 0 when it is empty.", nil, nil)
	uplinkSentDesc      = prometheus.NewDesc("loalang_uplink_events_sent_total", "Uplink events acknowledged by the broker and removed from the outbox.", nil, nil)
	uplinkDroppedDesc   = prometheus.NewDesc("loalang_uplink_outbox_dropped_total", "Uplink events dropped by the full-outbox policy (telemetry, then reports; never audit).", nil, nil)
	uplinkConnectsDesc  = prometheus.NewDesc("loalang_uplink_connects_total", "Connections made to the upstream broker.", nil, nil)
	uplinkCommandsDesc  = prometheus.NewDesc("loalang_uplink_commands_total", "Commands from above by outcome (accepted, started, played, refused:<reason>, failed:<reason>).", []string{"outcome"}, nil)
)

func (uplinkCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{uplinkConnectedDesc, uplinkDepthDesc, uplinkOldestDesc, uplinkSentDesc, uplinkDroppedDesc, uplinkConnectsDesc, uplinkCommandsDesc} {
		ch <- d
	}
}

func (c uplinkCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.d.uplinkStatus()
	ch <- prometheus.MustNewConstMetric(uplinkConnectedDesc, prometheus.GaugeValue, boolGauge(s.Connected))
	ch <- prometheus.MustNewConstMetric(uplinkDepthDesc, prometheus.GaugeValue, float64(s.Outbox.Depth))
	ch <- prometheus.MustNewConstMetric(uplinkOldestDesc, prometheus.GaugeValue, s.OldestPendingSeconds)
	ch <- prometheus.MustNewConstMetric(uplinkSentDesc, prometheus.CounterValue, float64(s.Outbox.Sent))
	ch <- prometheus.MustNewConstMetric(uplinkDroppedDesc, prometheus.CounterValue, float64(s.Outbox.Dropped))
	ch <- prometheus.MustNewConstMetric(uplinkConnectsDesc, prometheus.CounterValue, float64(s.Connects))
	for k, v := range s.Commands {
		ch <- prometheus.MustNewConstMetric(uplinkCommandsDesc, prometheus.CounterValue, float64(v), k)
	}
}
