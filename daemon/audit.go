package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/store"
)

// auditCheckEvery is how often the audit trail is measured and pruned; a
// variable so tests can shorten it (export_test.go).
var auditCheckEvery = time.Minute

// auditAlarmAt is the fraction of audit.max_bytes from which the "audit"
// component is reported bad.
const auditAlarmAt = 0.9

// auditPolicy is the retention the configuration asks for. The legal
// minimum is fixed: 12 months of play-out log are never deleted.
func auditPolicy(c config.Audit) store.AuditPolicy {
	day := 24 * time.Hour
	return store.AuditPolicy{
		Retention: time.Duration(c.RetentionDays) * day,
		Keep:      config.AuditMinRetentionDays * day,
		MaxBytes:  c.MaxBytes,
		AlarmAt:   auditAlarmAt,
	}
}

// auditMetrics are the audit trail's gauges.
type auditMetrics struct {
	bytes, maxBytes, entries, oldest prometheus.Gauge
	pruned                           prometheus.Counter
	playoutBytes                     prometheus.Gauge
}

func newAuditMetrics(reg *prometheus.Registry, maxBytes int64) *auditMetrics {
	m := &auditMetrics{
		bytes:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "loalang_audit_bytes", Help: "Bytes the audit trail occupies in the store."}),
		maxBytes:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "loalang_audit_max_bytes", Help: "The audit trail's size bound (audit.max_bytes); /healthz warns from 90%."}),
		entries:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "loalang_audit_entries", Help: "Entries in the audit trail."}),
		oldest:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "loalang_audit_oldest_timestamp_seconds", Help: "Unix time of the oldest audit entry."}),
		pruned:       prometheus.NewCounter(prometheus.CounterOpts{Name: "loalang_audit_pruned_total", Help: "Audit entries and play-out log records deleted by retention (age, or size beyond 12 months)."}),
		playoutBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "loalang_playout_log_bytes", Help: "Bytes the play-out log (broadcast records) occupies in the store; bounded by audit.playout_max_bytes."}),
	}
	m.maxBytes.Set(float64(maxBytes))
	reg.MustRegister(m.bytes, m.maxBytes, m.entries, m.oldest, m.pruned, m.playoutBytes)
	return m
}

// startAudit measures and prunes the audit trail now and then every
// auditCheckEvery, under supervision: its state is the "audit" component
// of /healthz, bad with the reason while the trail is near or over its
// bound or cannot be checked.
func (d *Daemon) startAudit(ctx context.Context) {
	m := newAuditMetrics(d.metrics, d.cfg.Audit.MaxBytes)
	policy := auditPolicy(d.cfg.Audit)
	check := func() error {
		st, err := d.db.ApplyAuditPolicy(time.Now(), policy)
		if err != nil {
			return err
		}
		m.bytes.Set(float64(st.Bytes))
		m.entries.Set(float64(st.Entries))
		if !st.Oldest.IsZero() {
			m.oldest.Set(float64(st.Oldest.Unix()))
		}
		m.pruned.Add(float64(st.Expired + st.Trimmed))
		if st.Expired+st.Trimmed > 0 {
			d.log.Info("audit pruned", "expired", st.Expired, "trimmed", st.Trimmed, "bytes", st.Bytes)
		}
		if _, err := d.sessions.Purge(ctx); err != nil { // ended sessions, kept small with the audit
			d.log.Warn("purge sessions failed", "err", err)
		}
		// The play-out log, under the same 12-month rule with its own bound.
		pp := policy
		pp.MaxBytes = d.cfg.Audit.PlayoutMaxBytes
		pst, err := d.db.ApplyPlayoutPolicy(time.Now(), pp)
		if err != nil {
			return fmt.Errorf("play-out log: %w", err)
		}
		m.playoutBytes.Set(float64(pst.Bytes))
		m.pruned.Add(float64(pst.Expired + pst.Trimmed))
		if pst.Expired+pst.Trimmed > 0 {
			d.log.Info("play-out log pruned", "expired", pst.Expired, "trimmed", pst.Trimmed, "bytes", pst.Bytes)
		}
		if err := pst.Problem(); err != nil {
			return fmt.Errorf("play-out log: %w", err)
		}
		return st.Problem()
	}
	d.supervise(ctx, "audit-retention", func(ctx context.Context) error {
		t := time.NewTicker(auditCheckEvery)
		defer t.Stop()
		for {
			if err := check(); err != nil {
				d.health.Set("audit", err)
				d.log.Warn("audit trail needs attention", "err", err)
			} else {
				d.health.Set("audit", nil)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
	})
}
