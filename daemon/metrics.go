package daemon

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/loalang/loalang/device"
)

// deviceCollector reports devices online per kind at scrape time.
type deviceCollector struct {
	reg  *device.Registry
	desc *prometheus.Desc
}

func newDeviceCollector(reg *device.Registry) *deviceCollector {
	return &deviceCollector{reg: reg, desc: prometheus.NewDesc("loalang_devices_online", "Devices online, by kind.", []string{"kind"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *deviceCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *deviceCollector) Collect(ch chan<- prometheus.Metric) {
	for kind, n := range c.reg.CountOnline() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), kind)
	}
}
