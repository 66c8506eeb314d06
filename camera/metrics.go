package camera

import "github.com/prometheus/client_golang/prometheus"

// Collector returns a prometheus.Collector exposing per-camera metrics
// (main stream; the substream has substream="true"). The web layer
// registers it; it reads List on every scrape.
func (r *Relay) Collector() prometheus.Collector { return &collector{r: r} }

var (
	labels      = []string{"camera", "substream"}
	descState   = prometheus.NewDesc("loalang_camera_state", "Ingest state of a camera stream (1 for the current state).", append(labels, "state"), nil)
	descViewers = prometheus.NewDesc("loalang_camera_viewers", "Connected WebRTC viewers.", labels, nil)
	descBitrate = prometheus.NewDesc("loalang_camera_bitrate_bits_per_second", "Measured video bitrate from the camera.", labels, nil)
	descFPS     = prometheus.NewDesc("loalang_camera_fps", "Measured frames per second from the camera.", labels, nil)
	descReconn  = prometheus.NewDesc("loalang_camera_reconnects_total", "RTSP sessions that ended in an error.", labels, nil)
	descDropped = prometheus.NewDesc("loalang_camera_viewer_dropped_frames_total", "Frames skipped by slow viewers (queue overflow, skip to next keyframe).", labels, nil)
	descParams  = prometheus.NewDesc("loalang_camera_params_inserted_total", "Keyframes the relay prefixed with SPS/PPS (VPS) missing in-band.", labels, nil)
	descResent  = prometheus.NewDesc("loalang_camera_retransmitted_packets_total", "RTP packets sent again to viewers on a NACK (RFC 4585), all cameras.", nil, nil)
	allStates   = []State{StateIdle, StateConnecting, StateLive, StateError}
)

type collector struct{ r *Relay }

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descState, descViewers, descBitrate, descFPS, descReconn, descDropped, descParams, descResent} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descResent, prometheus.CounterValue, float64(c.r.retransmits.Load()))
	for _, st := range c.r.List() {
		emit(ch, st.ID, "false", st.StreamStatus)
		if st.Substream != nil {
			emit(ch, st.ID, "true", *st.Substream)
		}
	}
}

func emit(ch chan<- prometheus.Metric, id, sub string, s StreamStatus) {
	for _, state := range allStates {
		v := 0.0
		if s.State == state {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, v, id, sub, string(state))
	}
	ch <- prometheus.MustNewConstMetric(descViewers, prometheus.GaugeValue, float64(s.Viewers), id, sub)
	ch <- prometheus.MustNewConstMetric(descBitrate, prometheus.GaugeValue, s.Bitrate, id, sub)
	ch <- prometheus.MustNewConstMetric(descFPS, prometheus.GaugeValue, s.FPS, id, sub)
	ch <- prometheus.MustNewConstMetric(descReconn, prometheus.CounterValue, float64(s.Reconnects), id, sub)
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(s.DroppedFrames), id, sub)
	ch <- prometheus.MustNewConstMetric(descParams, prometheus.CounterValue, float64(s.ParamsInserted), id, sub)
}
