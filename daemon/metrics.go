package daemon

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/loalang/loalang/broker"
	"github.com/loalang/loalang/bus"
	"github.com/loalang/loalang/device"
	"github.com/loalang/loalang/health"
)

// boolGauge maps true to 1 and false to 0.
func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// mqttRecoveryCollector counts what the MQTT client's probe did to make
// its subscriptions deliver again.
type mqttRecoveryCollector struct {
	bus  *bus.Client
	desc *prometheus.Desc
}

func newMQTTRecoveryCollector(b *bus.Client) *mqttRecoveryCollector {
	return &mqttRecoveryCollector{bus: b, desc: prometheus.NewDesc("loalang_mqtt_recoveries_total",
		"Times the MQTT client's probe found its subscriptions not delivering and resubscribed or reconnected.", []string{"action"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *mqttRecoveryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *mqttRecoveryCollector) Collect(ch chan<- prometheus.Metric) {
	resubs, redials := c.bus.Recoveries()
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(resubs), "resubscribe")
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(redials), "reconnect")
}

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

// healthCollector reports each supervised component as up (1) or down (0),
// from the same registry /healthz reads.
type healthCollector struct {
	reg  *health.Registry
	desc *prometheus.Desc
}

func newHealthCollector(reg *health.Registry) *healthCollector {
	return &healthCollector{reg: reg, desc: prometheus.NewDesc("loalang_component_up", "1 while a component of loalangd works, 0 while it is down (see /healthz for why).", []string{"component"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *healthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *healthCollector) Collect(ch chan<- prometheus.Metric) {
	for name, up := range c.reg.Components() {
		v := 0.0
		if up {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, name)
	}
}

// brokerCollector reports the embedded broker's traffic counters at scrape
// time (mochi's live counters, the figures of its $SYS topics). It reads
// the broker the daemon started with; none is registered on an external
// broker, whose own metrics say the same.
type brokerCollector struct {
	emb                                    *broker.Embedded
	received, sent, dropped, pktIn, pktOut *prometheus.Desc
	clients                                *prometheus.Desc
}

func newBrokerCollector(emb *broker.Embedded) *brokerCollector {
	return &brokerCollector{emb: emb,
		received: prometheus.NewDesc("loalang_broker_messages_received_total", "PUBLISH packets the embedded MQTT broker received from clients.", nil, nil),
		sent:     prometheus.NewDesc("loalang_broker_messages_sent_total", "PUBLISH packets the embedded MQTT broker delivered to subscribers.", nil, nil),
		dropped:  prometheus.NewDesc("loalang_broker_messages_dropped_total", "Messages the embedded MQTT broker dropped for a subscriber whose queue was full.", nil, nil),
		pktIn:    prometheus.NewDesc("loalang_broker_packets_received_total", "MQTT packets of every type the embedded broker received.", nil, nil),
		pktOut:   prometheus.NewDesc("loalang_broker_packets_sent_total", "MQTT packets of every type the embedded broker sent.", nil, nil),
		clients:  prometheus.NewDesc("loalang_broker_clients_connected", "MQTT clients connected to the embedded broker.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *brokerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.received, c.sent, c.dropped, c.pktIn, c.pktOut, c.clients} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *brokerCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.emb.Stats()
	ch <- prometheus.MustNewConstMetric(c.received, prometheus.CounterValue, float64(s.MessagesReceived))
	ch <- prometheus.MustNewConstMetric(c.sent, prometheus.CounterValue, float64(s.MessagesSent))
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(s.MessagesDropped))
	ch <- prometheus.MustNewConstMetric(c.pktIn, prometheus.CounterValue, float64(s.PacketsReceived))
	ch <- prometheus.MustNewConstMetric(c.pktOut, prometheus.CounterValue, float64(s.PacketsSent))
	ch <- prometheus.MustNewConstMetric(c.clients, prometheus.GaugeValue, float64(s.ClientsConnected))
}
