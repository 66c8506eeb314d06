package wire

import (
	"math"
	"strings"
	"testing"
)

// TestTopicRulesFitPayloads checks that every payload this package can
// build from valid, extreme values fits its topic's limit, so a broker
// enforcing the limits never refuses a conforming device or controller.
func TestTopicRulesFitPayloads(t *testing.T) {
	limit := map[string]int{}
	for _, r := range DeviceTopicRules {
		limit[r.Suffix] = r.MaxPayload
	}
	for _, r := range ZoneTopicRules {
		limit[r.Suffix] = r.MaxPayload
	}
	long := strings.Repeat("f", 200) // a generous firmware string
	vol := 100
	cases := []struct {
		suffix string
		v      any
	}{
		{SufStatus, Status{State: StateOffline, Kind: KindSpeaker, Firmware: long, TS: math.MaxInt64}},
		{SufHeartbeat, Heartbeat{Firmware: long, Volume: 100, UptimeS: math.MaxInt64, SignalDBm: -150, TS: math.MaxInt64}},
		{SufCmd, Command{ID: strings.Repeat("c", 64), Op: OpSetVolume, Expires: math.MaxInt64, Volume: &vol}},
		{SufReply, Reply{ID: strings.Repeat("c", 64), Error: strings.Repeat("e", 4000), Volume: &vol, TS: math.MaxInt64}},
		{SufReport, Report{StreamID: math.MaxUint32, Expected: math.MaxUint32, Played: math.MaxUint32, Late: math.MaxUint32,
			Lost: math.MaxUint32, ClockErrorUS: math.MinInt64, Final: true, Malformed: math.MaxUint32}},
		{SufClock, ClockRequest{Seq: math.MaxUint32, T1: math.MaxInt64}},
		{SufTime, ClockResponse{Seq: math.MaxUint32, T1: math.MaxInt64, T2: math.MaxInt64, T3: math.MaxInt64}},
		{ZoneKindStream, StreamControl{Op: StreamStart, StreamID: math.MaxUint32, Codec: CodecOpus, Priority: PriorityBackground,
			Volume: 100, StartAt: math.MaxInt64, PlayoutDelayMS: 60000, Packets: math.MaxUint32, Reason: "preempted"}},
	}
	for _, c := range cases {
		b, err := Encode(c.v)
		if err != nil {
			t.Fatal(err)
		}
		if max, ok := limit[c.suffix]; !ok || len(b) > max {
			t.Errorf("%s: %d bytes, limit %d (defined %v)", c.suffix, len(b), max, ok)
		}
	}
	pkts := make([][]byte, MaxPacketsPerFrame)
	for i := range pkts {
		pkts[i] = make([]byte, MaxOpusPacket)
	}
	frame, err := Frame{StreamID: 1, Packets: pkts}.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(frame) != MaxFramePayload || len(frame) > limit[ZoneKindAudio] {
		t.Errorf("largest frame %d bytes, MaxFramePayload %d, audio limit %d", len(frame), MaxFramePayload, limit[ZoneKindAudio])
	}
	tp, level := MustTopics(strings.Repeat("s", 64)), strings.Repeat("x", 64)
	longest := max(len(tp.ZoneStream(level)), len(tp.ZoneAudio(level)))
	for _, r := range DeviceTopicRules {
		longest = max(longest, len(tp.Device(level, r.Suffix)))
	}
	if longest != MaxTopicLen {
		t.Errorf("longest topic %d bytes, MaxTopicLen %d", longest, MaxTopicLen)
	}
}

// TestDeviceTopicRulesMatchProtocol pins the rules of docs/protocol.md:
// only status is retained, and the directions are as the table says.
func TestDeviceTopicRulesMatchProtocol(t *testing.T) {
	from := map[string]bool{}
	for _, r := range DeviceTopicRules {
		if r.Retained != (r.Suffix == SufStatus) {
			t.Errorf("%s retained = %v", r.Suffix, r.Retained)
		}
		from[r.Suffix] = r.Direction == FromDevice
	}
	want := map[string]bool{SufStatus: true, SufHeartbeat: true, SufReply: true, SufReport: true, SufClock: true, SufCmd: false, SufTime: false}
	if len(from) != len(want) {
		t.Fatalf("rules for %v, want %v", from, want)
	}
	for s, w := range want {
		if got, ok := from[s]; !ok || got != w {
			t.Errorf("%s from device = %v (defined %v), want %v", s, got, ok, w)
		}
	}
}
