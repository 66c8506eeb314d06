// Package daemon wires loalangd together: store, broker, MQTT client,
// device presence, HTTP API and the broadcast, camera and hall services.
// cmd/loalangd parses flags and calls it; end-to-end tests run it
// in-process on :0 ports.
package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/loalang/loalang/audit"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/loalang/loalang/auth"
	"github.com/loalang/loalang/broadcast"
	"github.com/loalang/loalang/broadcast/media"
	"github.com/loalang/loalang/broadcast/schedule"
	"github.com/loalang/loalang/broker"
	"github.com/loalang/loalang/bus"
	"github.com/loalang/loalang/camera"
	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/device"
	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/hall"
	"github.com/loalang/loalang/health"
	"github.com/loalang/loalang/store"
	"github.com/loalang/loalang/web"
)

// Version is the build's version, set with -ldflags.
var Version = "dev"

// healthMQTT is the health component of the daemon's MQTT client: bad while
// it is not connected or its subscriptions do not deliver.
const healthMQTT = "mqtt"

// mqttProbeInterval is how often the MQTT client proves to itself that its
// subscriptions deliver; tests shorten it (export_test.go).
var mqttProbeInterval = bus.DefaultProbeInterval

// Ready is the content of <data_dir>/ready.json: the addresses actually
// bound, so callers using port 0 can find the daemon.
type Ready struct {
	HTTP string `json:"http"`
	MQTT string `json:"mqtt"`
	// HTTPS is the TLS listener's address, when one is on (tls.go).
	HTTPS string `json:"https,omitempty"`
	// Pprof is the profiling listener's address, when debug.pprof_addr is set.
	Pprof string `json:"pprof,omitempty"`
}

// Daemon is a running loalangd.
type Daemon struct {
	cfg     config.Config
	base    *slog.Logger // without a component, for the parts' own loggers
	log     *slog.Logger
	topics  wire.Topics
	db      *store.DB
	broker  *broker.Embedded
	bus     *bus.Client
	busCfg  bus.Config // kept for tests (export_test.go)
	devices *device.Registry
	cmds    *device.Commander
	web     *web.Server
	// sessions is sign-in and its throttled-sign-in audit (auth.Sessions).
	sessions *auth.Sessions
	metrics  *prometheus.Registry
	health   *health.Registry // what /healthz and loalang_component_up report
	httpLn   net.Listener
	httpSrv  *http.Server
	ready    Ready
	audit    chan store.Event
	retry    *retrier // writes held for retry while the disk is full (storage.go)
	media    *media.Library
	tts      tts // one espeak-ng limit for API and scheduled text
	engine   *broadcast.Engine
	sched    *schedule.Scheduler // timetable runner (schedule.go)
	ops      *opsMetrics         // broadcast, delivery and firing metrics (opsmetrics.go)
	hall     *hall.Hall
	cameras  *camera.Relay
	up       *uplinkParts // nil unless uplink.url is set (uplink.go)

	opts        options
	brokerRules broker.Rules       // the embedded broker's, for a restart in tests
	pprofSrv    *http.Server       // debug.pprof_addr (pprof.go)
	auditCancel context.CancelFunc // ends the audit writer's supervision
	auditMu     sync.RWMutex       // orders recordAudit's sends against close(audit)
	auditClosed bool               // the queue is closed: record synchronously

	closers   []func() error
	wg        sync.WaitGroup
	cancel    context.CancelFunc
	closeOnce sync.Once
	closeErr  error
}

// New starts every part of the daemon and writes ready.json. On error,
// whatever was started is closed again. Options are for tests and tools
// (WithClock); production passes none.
func New(ctx context.Context, cfg config.Config, log *slog.Logger, opts ...Option) (_ *Daemon, err error) {
	ctx, cancel := context.WithCancel(ctx)
	d := &Daemon{cfg: cfg, base: log, log: log.With("component", "daemon"), topics: wire.MustTopics(cfg.Site), cancel: cancel,
		audit: make(chan store.Event, 1024), health: health.New()}
	for _, o := range opts {
		o(&d.opts)
	}
	defer func() {
		if err != nil {
			d.Close()
			err = explainStoreError(cfg.DataDir, err) // storage.go
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	os.Remove(filepath.Join(cfg.DataDir, ReadyFile))
	if d.db, err = openStore(cfg.DataDir); err != nil { // storage.go
		return nil, err
	}
	// The store is not among the closers: it closes last, after every
	// goroutine that writes to it has ended (Close).
	d.startStorage(ctx) // storage.go: disk and store alarms, retry of held writes
	if created, err := bootstrapAdmin(d.db, cfg.DataDir); err != nil {
		return nil, fmt.Errorf("create admin: %w", err)
	} else if created {
		d.log.Info("created admin user", "password_file", filepath.Join(cfg.DataDir, AdminPassFile))
	}
	// The audit writer drains its queue after ctx ends (Close), so it has
	// a context of its own, cancelled just before the queue is closed.
	auditCtx, auditCancel := context.WithCancel(context.WithoutCancel(ctx))
	d.auditCancel = auditCancel
	d.supervise(auditCtx, "audit-writer", d.writeAudit)

	if err := d.startMQTT(ctx); err != nil {
		return nil, err
	}
	if err := d.startWeb(); err != nil {
		return nil, err
	}
	if err := d.startHall(ctx); err != nil {
		return nil, err
	}
	if err := d.startBroadcast(ctx); err != nil {
		return nil, err
	}
	if err := d.connectMQTT(ctx); err != nil {
		return nil, err
	}
	if err := d.startSchedule(ctx); err != nil { // after the engine: schedules fire into it
		return nil, err
	}
	if err := d.startUplink(ctx); err != nil { // after the engine: commands play through it (uplink.go)
		return nil, err
	}
	if err := d.startCameras(ctx); err != nil {
		return nil, err
	}
	// The commune's camera requests reach the relay from now on (uplink_cameras.go).
	d.uplinkCamerasReady()
	if err := d.startLive(ctx); err != nil { // WHIP live speech (live.go)
		return nil, err
	}
	if err := d.listenHTTP(); err != nil {
		return nil, err
	}
	if err := d.listenTLS(); err != nil { // http.tls_addr (tls.go)
		return nil, err
	}
	if err := d.listenPprof(); err != nil { // debug.pprof_addr (pprof.go)
		return nil, err
	}
	raw, _ := json.Marshal(d.ready)
	if err := writeSecretFile(filepath.Join(cfg.DataDir, ReadyFile), raw); errors.Is(err, syscall.ENOSPC) {
		// A full disk must not stop the daemon: it serves, and the disk
		// alarm says why (storage.go).
		d.log.Error("ready file not written: disk full", "err", err)
	} else if err != nil {
		return nil, fmt.Errorf("write ready file: %w", err)
	}
	d.supervise(ctx, "presence", d.sweep)
	d.startAudit(ctx)                                   // retention and the size alarm (audit.go)
	d.supervise(ctx, "backup-scheduler", d.backupDaily) // storage.go
	d.log.Info("ready", "http", d.ready.HTTP, "https", d.ready.HTTPS, "mqtt", d.ready.MQTT, "site", cfg.Site)
	return d, nil
}

func (d *Daemon) startMQTT(ctx context.Context) error {
	cfg := d.cfg
	url, user, pass := cfg.MQTT.URL, cfg.MQTT.Username, ""
	if url == "" {
		// Embedded broker: the daemon's account gets a fresh secret per
		// start; it never leaves this process.
		pass = auth.RandomSecret(24)
		hash, err := broker.HashPassword(pass)
		if err != nil {
			return err
		}
		user = broker.ServiceUsername
		emb, err := broker.NewEmbedded(broker.EmbeddedConfig{Addr: cfg.MQTT.Listen}, broker.Rules{Site: cfg.Site}, d.base)
		if err != nil {
			return fmt.Errorf("embedded broker: %w", err)
		}
		// Not ctx: the broker must outlive the signal that ends the daemon
		// until the engine has told every speaker to stop (Close closes it,
		// last but the store).
		if err := emb.Start(context.WithoutCancel(ctx)); err != nil {
			return err
		}
		d.broker = emb
		d.closers = append(d.closers, func() error { return d.broker.Close() }) // the broker in place at Close
		url = "tcp://" + emb.Addr()
		d.ready.MQTT = emb.Addr()
		devices, err := provision(d.db, cfg, firstNonEmpty(cfg.MQTT.PublicURL, url))
		if err != nil {
			return err
		}
		rules, err := brokerRules(d.db, cfg.Site, devices, hash)
		if err != nil {
			return err
		}
		if err := emb.SetRules(rules); err != nil {
			return fmt.Errorf("embedded broker rules: %w", err)
		}
		d.brokerRules = rules
		d.initDevices(devices)
	} else {
		raw, err := os.ReadFile(cfg.MQTT.PasswordFile)
		if err != nil {
			return &config.Error{File: "config", Key: "mqtt.password_file", Reason: err.Error()}
		}
		pass = strings.TrimSpace(string(raw))
		d.ready.MQTT = strings.TrimPrefix(strings.TrimPrefix(url, "tcp://"), "mqtt://")
		devices, err := provision(d.db, cfg, firstNonEmpty(cfg.MQTT.PublicURL, url))
		if err != nil {
			return err
		}
		d.initDevices(devices)
	}
	// The client id is bound to the service account on both brokers
	// (docs/security.md); the probe proves the subscriptions deliver, and
	// the "mqtt" health component says so while they don't.
	d.busCfg = bus.Config{URL: url, ClientID: broker.ServiceClientID(cfg.Site), Username: user, Password: pass,
		ProbeTopic: d.topics.ControllerProbe(), ProbeInterval: mqttProbeInterval,
		OnHealth: func(err error) { d.health.Set(healthMQTT, err) }}
	d.health.Set(healthMQTT, bus.ErrNotConnected)
	d.bus = bus.New(d.busCfg, d.base)
	d.closers = append(d.closers, d.bus.Close)
	d.cmds = device.NewCommander(d.bus, d.topics, func(id string) bool { _, ok := d.devices.Get(id); return ok }, 5*time.Second)
	d.subscribe()
	return nil
}

// connectMQTT connects the daemon's client in the background: the HTTP API
// and ready.json never wait for a broker that is down (it may be an
// external one, restarting or not yet booted), and while it is, /healthz
// names "mqtt". It runs once the engine is wired, so no device message is
// handled before everything it reaches exists, and it waits for the first
// attempt's answer (a few ms on a reachable broker), so a catch-up firing
// of the scheduler started next can usually publish. A refused login at
// that first attempt is a configuration error and fails the start.
func (d *Daemon) connectMQTT(ctx context.Context) error {
	up, failed := d.bus.ConnectBackground(ctx)
	t := time.NewTimer(mqttFirstWait)
	defer t.Stop()
	select {
	case <-up:
		return nil
	case err := <-failed:
		return fmt.Errorf("mqtt: %w", err)
	case <-d.bus.Attempted():
		// A first attempt that ended the dialling has its outcome ready.
		select {
		case <-up:
			return nil
		case err := <-failed:
			return fmt.Errorf("mqtt: %w", err)
		default:
		}
	case <-t.C:
	}
	d.log.Warn("mqtt broker not reachable; serving degraded, connecting in the background", "broker", d.ready.MQTT)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		select {
		case <-up:
		case err := <-failed:
			if ctx.Err() == nil {
				d.log.Error("mqtt connection abandoned", "err", err)
			}
		}
	}()
	return nil
}

// mqttFirstWait bounds how long New waits for the first MQTT attempt.
const mqttFirstWait = 3 * time.Second

// supervise runs a background service under health.Supervise: restarted
// with backoff when it fails or panics, and named in /healthz while down.
func (d *Daemon) supervise(ctx context.Context, name string, run func(context.Context) error) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.health.Supervise(ctx, d.base.With("component", name), name, run)
	}()
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (d *Daemon) initDevices(devices []device.Device) {
	zones := make([]string, 0, len(d.cfg.Zones))
	for _, z := range d.cfg.Zones {
		zones = append(zones, z.ID)
	}
	d.devices = device.NewRegistry(devices, zones, d.cfg.MQTT.OfflineAfter, time.Now, func(c device.Change) {
		action := audit.DeviceOffline
		if c.Online {
			action = audit.DeviceOnline
		}
		d.recordAudit(store.Event{Time: c.At, Actor: c.ID, Action: action, Target: c.ID, Detail: map[string]any{"reason": c.Reason}})
		if c.Online { // the engine exists before the first message (connectMQTT)
			d.engine.DeviceOnline(c.ID) // an emergency still playing is sent again
		}
	})
}

// subscribe registers the device topics. Garbage payloads are counted and
// dropped with a debug log: a device can never crash the daemon.
func (d *Daemon) subscribe() {
	malformed := func(m bus.Message, err error) {
		d.log.Debug("dropped device payload", "topic", m.Topic, "err", err)
	}
	deviceID := func(m bus.Message) (string, bool) {
		id, _, ok := d.topics.ParseDevice(m.Topic)
		return id, ok
	}
	d.bus.Subscribe(d.topics.DeviceAll(wire.SufStatus), 1, func(m bus.Message) {
		id, ok := deviceID(m)
		if !ok || len(m.Payload) == 0 {
			return
		}
		st, err := wire.Decode[wire.Status](m.Payload)
		if err != nil {
			malformed(m, err)
			return
		}
		d.devices.HandleStatus(id, st)
	})
	d.bus.Subscribe(d.topics.DeviceAll(wire.SufHeartbeat), 0, func(m bus.Message) {
		id, ok := deviceID(m)
		if !ok {
			return
		}
		hb, err := wire.Decode[wire.Heartbeat](m.Payload)
		if err != nil {
			malformed(m, err)
			return
		}
		d.devices.HandleHeartbeat(id, hb)
	})
	d.bus.Subscribe(d.topics.DeviceAll(wire.SufReply), 1, func(m bus.Message) {
		id, ok := deviceID(m)
		if !ok {
			return
		}
		r, err := wire.Decode[wire.Reply](m.Payload)
		if err != nil {
			malformed(m, err)
			return
		}
		d.cmds.HandleReply(id, r)
	})
	d.bus.Subscribe(d.topics.DeviceAll(wire.SufClock), 0, d.answerClock)
	d.bus.Subscribe(d.topics.DeviceAll(wire.SufReport), 1, d.handleReport)
}

// answerClock is the server half of the NTP-style exchange (RFC 5905 §8):
// T2 is when paho received the request, T3 when the answer is sent.
func (d *Daemon) answerClock(m bus.Message) {
	id, _, ok := d.topics.ParseDevice(m.Topic)
	if !ok {
		return
	}
	req, err := wire.Decode[wire.ClockRequest](m.Payload)
	if err != nil {
		return
	}
	resp := wire.ClockResponse{Seq: req.Seq, T1: req.T1, T2: m.Received.UnixMicro()}
	resp.T3 = max(time.Now().UnixMicro(), resp.T2)
	payload, _ := wire.Encode(resp)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	// QoS 0: a lost answer is just a lost sample.
	if err := d.bus.Publish(ctx, d.topics.Device(id, wire.SufTime), 0, false, payload); err != nil {
		d.log.Debug("clock answer failed", "device", id, "err", err)
	}
}

// recordAudit queues an event for the audit writer without blocking the
// caller (an MQTT handler). If the queue is full it writes synchronously:
// audit entries are never dropped.
func (d *Daemon) recordAudit(e store.Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	d.auditMu.RLock()
	defer d.auditMu.RUnlock()
	if !d.auditClosed {
		select {
		case d.audit <- e:
			return
		default:
		}
	}
	d.retry.Do("audit "+string(e.Action), func(tx *store.Tx) error { return tx.AppendAudit(e) })
}

// writeAudit batches queued audit events into one transaction each, until
// the queue is closed. A failed write is held and retried by d.retry, which
// reports it as the "store" component's fault until it succeeds.
func (d *Daemon) writeAudit(context.Context) error {
	for e := range d.audit {
		batch := []store.Event{e}
	more:
		for len(batch) < 256 {
			select {
			case e, ok := <-d.audit:
				if !ok {
					break more
				}
				batch = append(batch, e)
			default:
				break more
			}
		}
		d.retry.Do(fmt.Sprintf("%d audit entries", len(batch)), func(tx *store.Tx) error { return tx.AppendAudit(batch...) })
	}
	// Last chance for writes held while the disk was full; what still
	// fails is named in the log, never dropped silently.
	if err := d.retry.Flush(); err != nil {
		d.log.Error("writes lost at shutdown", "pending", d.retry.Pending(), "err", err)
	}
	return nil
}

// sweep marks silent devices offline, once a second.
func (d *Daemon) sweep(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			d.devices.Sweep()
			d.sessions.FlushAudit(ctx, false) // summaries of throttled sign-ins
		}
	}
}

func (d *Daemon) startWeb() error {
	metricsToken, err := readMetricsToken(d.cfg.Metrics.TokenFile) // opsmetrics.go
	if err != nil {
		return err
	}
	d.metrics = prometheus.NewRegistry()
	d.metrics.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "loalang_mqtt_connected", Help: "1 when the daemon's MQTT client has an open connection to the broker."},
			func() float64 { return boolGauge(d.bus.Connected()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "loalang_mqtt_subscriptions_ok", Help: "1 when the daemon's MQTT subscriptions deliver: its latest probe message to itself came back."},
			func() float64 { return boolGauge(d.bus.Delivering()) }),
		newMQTTRecoveryCollector(d.bus),
		newDeviceCollector(d.devices),
		newHealthCollector(d.health),
	)
	// An info metric reads 1; its labels carry the information.
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{Name: "loalang_build_info", Help: "Build information: always 1, with the version as a label.", ConstLabels: prometheus.Labels{"version": Version}})
	buildInfo.Set(1)
	d.metrics.MustRegister(buildInfo)
	if d.broker != nil {
		d.metrics.MustRegister(newBrokerCollector(d.broker))
	}
	accounts := store.NewAuthStore(d.db) // users and sessions (auth)
	d.sessions = auth.NewSessions(accounts, auth.SessionsConfig{TTL: d.cfg.Auth.TokenTTL, LoginBurst: d.cfg.Auth.LoginBurst, LoginEvery: d.cfg.Auth.LoginEvery, Log: d.base})
	d.web = web.New(web.Config{MetricsToken: metricsToken},
		web.Deps{Audit: d.db, Devices: d.devices, Commands: d.cmds, Metrics: d.metrics, Health: d.health,
			Users: auth.NewUsers(accounts), Sessions: d.sessions}, d.base)
	return nil
}

func (d *Daemon) listenHTTP() error {
	ln, err := net.Listen("tcp", d.cfg.HTTP.Addr)
	if err != nil {
		return &config.Error{File: "config", Key: "http.addr", Reason: err.Error()}
	}
	d.ready.HTTP = ln.Addr().String()
	if ln, err = d.wrapTLS(ln); err != nil { // http.tls (tls.go)
		return err
	}
	d.httpLn = ln
	d.httpSrv = &http.Server{Handler: d.web, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelDebug)}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := d.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("http server stopped", "err", err)
		}
	}()
	return nil
}

// Ready returns the bound addresses.
func (d *Daemon) Ready() Ready { return d.ready }

// Run blocks until ctx ends, then closes the daemon. Cancellation is a
// clean stop, not an error.
func (d *Daemon) Run(ctx context.Context) error {
	<-ctx.Done()
	return d.Close()
}

// Close stops everything in reverse order of start. It is idempotent.
func (d *Daemon) Close() error {
	d.closeOnce.Do(func() {
		d.cancel()
		// Nothing is served any more: say so before tearing down.
		os.Remove(filepath.Join(d.cfg.DataDir, ReadyFile))
		var errs []error
		if d.httpSrv != nil {
			if err := d.stopHTTP(d.httpSrv, "http", 3*time.Second); err != nil {
				errs = append(errs, err)
			}
		}
		d.closePprof()
		// Summaries of throttled sign-ins are written while the store is open.
		if d.sessions != nil && d.db != nil {
			d.sessions.FlushAudit(context.Background(), true)
		}
		// Closers run in reverse order of start, so the engine tells the
		// speakers to stop while the MQTT client and broker are still up,
		// and the broker closes last. The audit queue closes under auditMu,
		// so a service still stopping records synchronously instead of
		// sending on a closed channel; the writer drains it, and the store
		// closes once every goroutine that writes to it has ended.
		for i := len(d.closers) - 1; i >= 0; i-- {
			if err := d.closers[i](); err != nil {
				errs = append(errs, err)
			}
		}
		if d.auditCancel != nil {
			d.auditCancel()
		}
		d.auditMu.Lock()
		if !d.auditClosed {
			d.auditClosed = true
			close(d.audit)
		}
		d.auditMu.Unlock()
		d.wg.Wait()
		if d.db != nil {
			if err := d.db.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		d.closeErr = errors.Join(errs...)
	})
	return d.closeErr
}

// stopHTTP stops srv: it stops accepting, lets the requests in progress
// finish for up to grace, then cuts whatever is still open. Running out of
// grace is not an error: a browser opens connections ahead of need, and
// net/http's Shutdown waits up to 5 s for one that has sent nothing yet
// (Go issue 22682), so it is logged and the connections are closed.
func (d *Daemon) stopHTTP(srv *http.Server, name string, grace time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		d.log.Warn("connections still open at shutdown were cut", "server", name, "grace", grace)
		err = srv.Close()
	}
	if err != nil {
		return fmt.Errorf("stop %s server: %w", name, err)
	}
	return nil
}
