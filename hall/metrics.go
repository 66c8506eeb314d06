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
			Help: "20 ms Opus packets through the hall sound card by result: played, late, dropped, undecodable.",
		}, []string{"result"}),
		underrun: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loalang_hall_sink_underrun_seconds_total",
			Help: "Audio skipped to restore play-at alignment after the sound card ran dry (output_latency too small or the host stalled).",
		}),
	}
	m.all = []prometheus.Collector{m.boardAlarm, m.boardFaults, m.coil, m.sinkUp, m.packets, m.underrun}
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
