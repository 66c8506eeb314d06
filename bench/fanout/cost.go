package main

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/loalang/loalang/bench/fanout/harness"
	"github.com/loalang/loalang/broadcast/media"
	"github.com/loalang/loalang/config"
	"github.com/loalang/loalang/device/wire"
)

// costRuns is how many times the clip is encoded; the median is reported.
const costRuns = 3

// measureCost encodes pcm with media.EncodePCM at the default 24 kbit/s and
// returns the CPU it took per second of audio (process user+system time,
// getrusage(2)), and what the packets cost on the wire per speaker: MQTT
// PUBLISH bytes of frames of the daemon's default packets per message on a
// zone audio topic of this site
// (docs/broadcast.md, "Bandwidth"), and the same with 52 B of TCP/IP
// headers per message. It also returns the sizes of the encoded packets,
// which the baseline sends.
func measureCost(ctx context.Context, pcm []float32, _ int) (map[string]any, []int, error) {
	secs := float64(len(pcm)) / harness.Rate
	var cpus []float64
	var packets [][]byte
	for range costRuns {
		c0 := cpuSelf()
		p, err := media.EncodePCM(ctx, pcm, media.DefaultBitrate)
		if err != nil {
			return nil, nil, err
		}
		cpus = append(cpus, float64(cpuSelf()-c0)/float64(time.Millisecond)/secs)
		packets = p
	}
	topic := wire.MustTopics(site).ZoneAudio("z1")
	var opusBytes, mqttBytes, msgs int
	per := config.Default().Broadcast.PacketsPerFrame
	for i := 0; i < len(packets); i += per {
		f := wire.Frame{StreamID: 1, Seq: uint32(i), Packets: packets[i:min(i+per, len(packets))]}
		payload, err := f.MarshalBinary()
		if err != nil {
			return nil, nil, err
		}
		for _, p := range f.Packets {
			opusBytes += len(p)
		}
		mqttBytes += wire.PublishSize(topic, 0, len(payload))
		msgs++
	}
	sizes := make([]int, len(packets))
	for i, p := range packets {
		sizes[i] = len(p)
	}
	audioMin := float64(len(packets)) * wire.PacketMS / 60000
	perMin := float64(mqttBytes) / audioMin
	tcpPerMin := float64(mqttBytes+52*msgs) / audioMin
	return map[string]any{
		"date":                              time.Now().UTC().Format(time.RFC3339),
		"audio_s":                           harness.Round(secs, 1),
		"bitrate_bps":                       media.DefaultBitrate,
		"encode_cpu_ms_per_audio_s":         harness.Round(harness.Median(cpus), 2),
		"encode_runs":                       costRuns,
		"opus_kbit_s":                       harness.Round(float64(opusBytes)*8/(audioMin*60)/1000, 2),
		"mqtt_bytes_per_speaker_per_minute": harness.Round(perMin, 0),
		"mqtt_kbit_s_per_speaker":           harness.Round(perMin*8/60/1000, 2),
		"with_tcpip_bytes_per_minute":       harness.Round(tcpPerMin, 0),
		"with_tcpip_kbit_s_per_speaker":     harness.Round(tcpPerMin*8/60/1000, 2),
		"topic":                             topic,
		"packets_per_message":               per,
		"note":                              "MQTT bytes = whole PUBLISH packets (MQTT 3.1.1 §3.3) of the default packets per message; TCP/IP adds 52 B per message (IPv4 20 + TCP 20 + timestamps 12)",
	}, sizes, nil
}

// cpuSelf returns this process's user+system CPU time (getrusage(2)).
func cpuSelf() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func printCost(c map[string]any) {
	fmt.Printf("cost: encode %v ms CPU per s of audio (Opus %v kbit/s); per speaker %v B/min MQTT = %v kbit/s (%v kbit/s with TCP/IP)\n",
		c["encode_cpu_ms_per_audio_s"], c["opus_kbit_s"], c["mqtt_bytes_per_speaker_per_minute"],
		c["mqtt_kbit_s_per_speaker"], c["with_tcpip_kbit_s_per_speaker"])
}
