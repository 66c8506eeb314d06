package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/loalang/loalang/broadcast"
	"github.com/loalang/loalang/broadcast/schedule"
	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/device/wire"
	"github.com/loalang/loalang/store"
)

// opsMetrics are the metrics of what the product does (docs/operations-records.md):
// broadcasts by state and priority, frames per zone from the speakers'
// delivery reports, schedule firings, store size and audit write failures.
type opsMetrics struct {
	broadcasts *prometheus.CounterVec
	frames     *prometheus.CounterVec
	firings    *prometheus.CounterVec
	lateness   prometheus.Histogram
	zonesOf    func(id string) []string

	mu    sync.Mutex
	seen  map[string]*seenBroadcast
	order []string // ids in first-seen order, to bound seen
}

// seenBroadcast is what the metrics last counted of one broadcast.
type seenBroadcast struct {
	states  []string
	devices map[string]broadcast.Delivery
}

// maxSeen bounds the broadcasts whose counts are remembered: delivery
// reports arrive for seconds after a broadcast ends, never for hundreds of
// broadcasts later.
const maxSeen = 1024

func newOpsMetrics(reg *prometheus.Registry, db *store.DB, zonesOf func(string) []string, active func() []broadcast.Broadcast) *opsMetrics {
	m := &opsMetrics{
		broadcasts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "loalang_broadcasts_total",
			Help: "Broadcasts that entered a state (queued, playing, preempted, done, stopped, failed, interrupted), by priority."}, []string{"state", "priority"}),
		frames: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "loalang_frames_total",
			Help: "20 ms audio frames per zone from the speakers' delivery reports: expected, played, late, lost."}, []string{"zone", "kind"}),
		firings: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "loalang_schedule_firings_total",
			Help: "Schedule occurrences by outcome: fired, failed, missed (later than schedule.grace), skipped_quiet."}, []string{"outcome"}),
		lateness: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "loalang_schedule_lateness_seconds",
			Help:    "How late the scheduler acted on each occurrence it fired.",
			Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 15, 60}}),
		zonesOf: zonesOf,
		seen:    map[string]*seenBroadcast{},
	}
	activeDesc := prometheus.NewDesc("loalang_broadcasts_active", "Broadcasts not yet ended, by state and priority.", []string{"state", "priority"}, nil)
	reg.MustRegister(m.broadcasts, m.frames, m.firings, m.lateness,
		collectorFunc{desc: activeDesc, collect: func(ch chan<- prometheus.Metric) {
			counts := map[[2]string]int{}
			for _, b := range active() {
				if !broadcast.Terminal(b.State) {
					counts[[2]string{string(b.State), string(b.Priority)}]++
				}
			}
			for k, n := range counts {
				ch <- prometheus.MustNewConstMetric(activeDesc, prometheus.GaugeValue, float64(n), k[0], k[1])
			}
		}},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "loalang_store_bytes", Help: "Size of the store file (loalang.db) on disk."}, func() float64 {
			fi, err := os.Stat(db.Path())
			if err != nil {
				return 0
			}
			return float64(fi.Size())
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "loalang_audit_write_failures_total",
			Help: "Write transactions carrying audit entries that failed (a full disk, a damaged file); held writes count per attempt."},
			func() float64 { return float64(db.AuditWriteFailures()) }),
	)
	// Every priority shows, at zero, before its first broadcast.
	for _, p := range []string{wire.PriorityEmergency, wire.PriorityPriority, wire.PriorityNormal, wire.PriorityBackground} {
		m.broadcasts.WithLabelValues(string(broadcast.StateDone), p)
	}
	for _, o := range []string{schedule.OutcomeFired, schedule.OutcomeFailed, schedule.OutcomeMissed, schedule.OutcomeSkippedQuiet} {
		m.firings.WithLabelValues(o)
	}
	return m
}

// observe counts a broadcast record the engine saved: a state it had not
// been in before, and what its speakers' reports added since the last one.
func (m *opsMetrics) observe(b broadcast.Record) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.seen[b.ID]
	if s == nil {
		s = &seenBroadcast{devices: map[string]broadcast.Delivery{}}
		m.seen[b.ID] = s
		m.order = append(m.order, b.ID)
		if len(m.order) > maxSeen {
			delete(m.seen, m.order[0])
			m.order = m.order[1:]
		}
	}
	if !slices.Contains(s.states, string(b.State)) {
		s.states = append(s.states, string(b.State))
		m.broadcasts.WithLabelValues(string(b.State), string(b.Priority)).Inc()
	}
	for _, d := range b.Devices {
		prev := s.devices[d.ID]
		s.devices[d.ID] = d
		zone := "unknown"
		if zs := m.zonesOf(d.ID); len(zs) > 0 {
			zone = zs[0]
			for _, z := range zs {
				if slices.Contains(b.Zones, z) {
					zone = z
					break
				}
			}
		}
		add := func(kind string, now, before uint64) {
			if now > before {
				m.frames.WithLabelValues(zone, kind).Add(float64(now - before))
			}
		}
		add("expected", d.FramesExpected, prev.FramesExpected)
		add("played", d.FramesPlayed, prev.FramesPlayed)
		add("late", d.FramesLate, prev.FramesLate)
		add("lost", d.FramesLost, prev.FramesLost)
	}
}

// collectorFunc is a collector of one descriptor computed at scrape time.
type collectorFunc struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

// Describe implements prometheus.Collector.
func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

// meteredFirings is the scheduler's store with firing metrics: each
// recorded outcome is counted, and a fired occurrence's lateness observed.
type meteredFirings struct {
	*store.ScheduleStore
	m *opsMetrics
}

// ClaimFiring implements schedule.Store.
func (f meteredFirings) ClaimFiring(ctx context.Context, fr schedule.Firing) (bool, error) {
	ok, err := f.ScheduleStore.ClaimFiring(ctx, fr)
	if ok && err == nil {
		switch fr.Outcome {
		case schedule.OutcomeClaimed:
			f.m.lateness.Observe(max(fr.Fired.Sub(fr.Occurrence).Seconds(), 0))
		default:
			f.m.firings.WithLabelValues(fr.Outcome).Inc()
		}
	}
	return ok, err
}

// UpdateFiring implements schedule.Store.
func (f meteredFirings) UpdateFiring(ctx context.Context, fr schedule.Firing) error {
	err := f.ScheduleStore.UpdateFiring(ctx, fr)
	f.m.firings.WithLabelValues(fr.Outcome).Inc()
	return err
}

// minMetricsToken is the shortest metrics token accepted (128 bits in hex).
const minMetricsToken = 32

// readMetricsToken reads metrics.token_file ("" : no token). The token is
// never logged; errors name the file, never its content.
func readMetricsToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", &config.Error{File: "config", Key: "metrics.token_file", Reason: fmt.Sprintf("read %s: %v", path, errors.Unwrap(err))}
	}
	tok := strings.TrimSpace(string(raw))
	if len(tok) < minMetricsToken || strings.ContainsAny(tok, " \t\r\n") {
		return "", &config.Error{File: "config", Key: "metrics.token_file", Reason: fmt.Sprintf("%s must hold one token of at least %d characters (e.g. openssl rand -hex 16)", path, minMetricsToken)}
	}
	return tok, nil
}
