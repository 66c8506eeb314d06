package hall

import "github.com/prometheus/client_golang/prometheus"

// metrics are the hall's Prometheus series.
type metrics struct {
	boardAlarm  prometheus.Gauge
	boardFaults *prometheus.CounterVec
	coil        *prometheus.GaugeVec
	sinkUp      prometheus.Gauge
	packets     *prometheus.CounterVec
	underrun    prometheus.Counter
	driftPPM    prometheus.Gauge
	driftErr    prometheus.Gauge
	all         []prometheus.Collector
}

func newMetrics() *metrics {
	m := &metrics{
		boardAlarm: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "loalang_hall_board_alarm",
			Help: "1 while the hall relay board is in alarm (dead port, CRC error, timeout, read-back mismatch).",
		}),
		boardFaults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loalang_hall_board_faults_total",
			Help: "Relay board faults by kind: open, io, timeout, crc, protocol, verify.",
		}, []string{"kind"}),
		coil: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "loalang_hall_coil_on",
			Help: "Last confirmed relay state (1 on, 0 off) of the amplifier and each wired zone.",
		}, []string{"coil"}),
		sinkUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "loalang_hall_sink_up",
			Help: "1 when the hall sound device is usable, 0 when it failed to open.",
		}),
		packets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loalang_hall_sink_packets_total",
			Help: "20 ms Opus packets through the hall sound card by result: played, late, dropped, undecodable, concealed (loss concealment played in place of a missing packet).",
		}, []string{"result"}),
		underrun: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loalang_hall_sink_underrun_seconds_total",
			Help: "Audio skipped to restore play-at alignment after the sound card ran dry (output_latency too small or the host stalled).",
		}),
		driftPPM: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "loalang_hall_sink_drift_ppm",
			Help: "Estimated sound card clock rate error against the controller clock, in ppm (positive: the card runs fast); the sink resamples by this much.",
		}),
		driftErr: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "loalang_hall_sink_offset_seconds",
			Help: "Last one-second mean of the hall line's offset from its start-of-stream alignment (positive: the hall plays late).",
		}),
	}
	m.all = []prometheus.Collector{m.boardAlarm, m.boardFaults, m.coil, m.sinkUp, m.packets, m.underrun, m.driftPPM, m.driftErr}
	return m
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.all {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.all {
		c.Collect(ch)
	}
}
