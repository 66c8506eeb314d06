package wire

import (
	"encoding/binary"
	"fmt"
)

// Priority levels follow the bulletin levels of Circular 39/2020/TT-BTTTT,
// highest first.
const (
	PriorityEmergency  = "emergency"
	PriorityPriority   = "priority"
	PriorityNormal     = "normal"
	PriorityBackground = "background"
)

// PriorityRank orders priorities: a higher rank pre-empts a lower one. It
// returns 0 for an unknown priority.
func PriorityRank(p string) int {
	switch p {
	case PriorityEmergency:
		return 4
	case PriorityPriority:
		return 3
	case PriorityNormal:
		return 2
	case PriorityBackground:
		return 1
	}
	return 0
}

// Stream control operations.
const (
	StreamStart = "start"
	StreamStop  = "stop"
)

// CodecOpus is the only codec of protocol v1: Opus (RFC 6716), 48 kHz mono,
// 20 ms frames.
const CodecOpus = "opus"

// StreamControl starts or stops a stream on zone/<zone>/stream, published at
// QoS 1 and never retained.
type StreamControl struct {
	Op       string `json:"op"`
	StreamID uint32 `json:"stream_id"`
	Codec    string `json:"codec,omitempty"`
	// Priority is one of the Priority* levels.
	Priority string `json:"priority,omitempty"`
	// Volume in percent, 0–100; an emergency always carries 100.
	Volume int `json:"volume,omitempty"`
	// StartAt is the play-at time of packet 0, in microseconds on the
	// controller clock (Unix epoch).
	StartAt int64 `json:"start_at,omitempty"`
	// PlayoutDelayMS is added to every frame's play-at time.
	PlayoutDelayMS int `json:"playout_delay_ms,omitempty"`
	// Packets is the total number of 20 ms packets, or 0 when unknown (live).
	Packets uint32 `json:"packets,omitempty"`
	// Reason says why a stream stopped: done, stopped, preempted, stop_all, expired.
	Reason string `json:"reason,omitempty"`
}

// Validate checks a control message.
func (c StreamControl) Validate() error {
	switch c.Op {
	case StreamStart:
		if c.Codec != CodecOpus {
			return fmt.Errorf("stream: codec %q not supported", c.Codec)
		}
		if PriorityRank(c.Priority) == 0 {
			return fmt.Errorf("stream: unknown priority %q", c.Priority)
		}
		if c.Volume < 0 || c.Volume > 100 {
			return fmt.Errorf("stream: volume %d outside 0–100", c.Volume)
		}
		if c.PlayoutDelayMS < 0 || c.PlayoutDelayMS > 60000 {
			return fmt.Errorf("stream: playout delay %d ms outside 0–60000", c.PlayoutDelayMS)
		}
	case StreamStop:
	default:
		return fmt.Errorf("stream: unknown op %q", c.Op)
	}
	if c.StreamID == 0 {
		return fmt.Errorf("stream: stream id 0 is reserved")
	}
	return nil
}

// Audio frame constants. See docs/protocol.md, "Audio frame".
const (
	// FrameMagic opens every audio frame: "LA".
	FrameMagic uint16 = 0x4C41
	// FrameVersion is the binary frame layout version.
	FrameVersion = 1
	// FrameHeaderLen is the fixed header size in bytes.
	FrameHeaderLen = 24
	// PacketMS is the duration of one Opus packet in protocol v1.
	PacketMS = 20
	// MaxPacketsPerFrame bounds the packet count of one frame (1 s of audio).
	MaxPacketsPerFrame = 50
	// MaxOpusPacket is the largest Opus packet, RFC 6716 §3.4 (R2).
	MaxOpusPacket = 1275
)

// Frame flags.
const (
	// FlagLast marks the final frame of a stream.
	FlagLast = 1 << 0
	// FlagLive marks live speech (low play-out delay, no known length).
	FlagLive = 1 << 1
)

// Frame is one audio message on zone/<zone>/audio: consecutive 20 ms Opus
// packets that share a header.
type Frame struct {
	Flags    uint8
	StreamID uint32
	// Seq is the stream-wide index of the first packet in Packets, so a
	// receiver can count lost packets across lost frames.
	Seq uint32
	// PlayAt is when the first sample of Packets[0] plays, in microseconds
	// on the controller clock (Unix epoch), before the play-out delay.
	PlayAt int64
	// DelayMS is the play-out delay the receiver adds to PlayAt.
	DelayMS uint16
	Packets [][]byte
}

// MarshalBinary encodes the frame, big-endian, as specified in
// docs/protocol.md.
func (f Frame) MarshalBinary() ([]byte, error) {
	if len(f.Packets) == 0 || len(f.Packets) > MaxPacketsPerFrame {
		return nil, fmt.Errorf("frame: %d packets, want 1–%d", len(f.Packets), MaxPacketsPerFrame)
	}
	n := FrameHeaderLen
	for _, p := range f.Packets {
		if len(p) == 0 || len(p) > MaxOpusPacket {
			return nil, fmt.Errorf("frame: packet of %d bytes, want 1–%d", len(p), MaxOpusPacket)
		}
		n += 2 + len(p)
	}
	b := make([]byte, FrameHeaderLen, n)
	binary.BigEndian.PutUint16(b[0:], FrameMagic)
	b[2] = FrameVersion
	b[3] = f.Flags
	binary.BigEndian.PutUint32(b[4:], f.StreamID)
	binary.BigEndian.PutUint32(b[8:], f.Seq)
	binary.BigEndian.PutUint64(b[12:], uint64(f.PlayAt))
	binary.BigEndian.PutUint16(b[20:], f.DelayMS)
	b[22] = PacketMS
	b[23] = uint8(len(f.Packets))
	for _, p := range f.Packets {
		b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
		b = append(b, p...)
	}
	return b, nil
}

// UnmarshalBinary decodes a frame. It never panics on any input and copies
// nothing: Packets alias b. Every failure wraps ErrMalformed.
func (f *Frame) UnmarshalBinary(b []byte) error {
	if len(b) < FrameHeaderLen {
		return fmt.Errorf("%w: frame of %d bytes shorter than header", ErrMalformed, len(b))
	}
	if binary.BigEndian.Uint16(b) != FrameMagic {
		return fmt.Errorf("%w: bad frame magic", ErrMalformed)
	}
	if b[2] != FrameVersion {
		return fmt.Errorf("%w: frame version %d not supported", ErrMalformed, b[2])
	}
	if b[22] != PacketMS {
		return fmt.Errorf("%w: packet duration %d ms not supported", ErrMalformed, b[22])
	}
	count := int(b[23])
	if count == 0 || count > MaxPacketsPerFrame {
		return fmt.Errorf("%w: %d packets, want 1–%d", ErrMalformed, count, MaxPacketsPerFrame)
	}
	pkts := make([][]byte, 0, count)
	rest := b[FrameHeaderLen:]
	for i := 0; i < count; i++ {
		if len(rest) < 2 {
			return fmt.Errorf("%w: packet %d length truncated", ErrMalformed, i)
		}
		n := int(binary.BigEndian.Uint16(rest))
		rest = rest[2:]
		if n == 0 || n > MaxOpusPacket || n > len(rest) {
			return fmt.Errorf("%w: packet %d length %d invalid", ErrMalformed, i, n)
		}
		pkts = append(pkts, rest[:n:n])
		rest = rest[n:]
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(rest))
	}
	*f = Frame{
		Flags:    b[3],
		StreamID: binary.BigEndian.Uint32(b[4:]),
		Seq:      binary.BigEndian.Uint32(b[8:]),
		PlayAt:   int64(binary.BigEndian.Uint64(b[12:])),
		DelayMS:  binary.BigEndian.Uint16(b[20:]),
		Packets:  pkts,
	}
	if f.StreamID == 0 {
		return fmt.Errorf("%w: stream id 0 is reserved", ErrMalformed)
	}
	return nil
}

// ClockRequest is an NTP-style time request on dev/<id>/clock (RFC 5905 §8,
// the client half of the on-wire protocol).
type ClockRequest struct {
	Seq uint32 `json:"seq"`
	// T1 is the device's transmit time in microseconds on its own clock.
	T1 int64 `json:"t1"`
}

// Validate checks the request.
func (r ClockRequest) Validate() error {
	if r.T1 <= 0 {
		return fmt.Errorf("clock: t1 must be positive")
	}
	return nil
}

// ClockResponse answers a ClockRequest on dev/<id>/time. With T4 the
// device's receive time, the device computes offset = ((T2-T1)+(T3-T4))/2
// and round-trip delay = (T4-T1)-(T3-T2), RFC 5905 §8.
type ClockResponse struct {
	Seq uint32 `json:"seq"`
	T1  int64  `json:"t1"`
	// T2 is the controller's receive time, T3 its transmit time, both in
	// microseconds on the controller clock.
	T2 int64 `json:"t2"`
	T3 int64 `json:"t3"`
}

// Validate checks the response.
func (r ClockResponse) Validate() error {
	if r.T1 <= 0 || r.T2 <= 0 || r.T3 < r.T2 {
		return fmt.Errorf("clock: timestamps out of order")
	}
	return nil
}

// Report is a per-stream delivery report on dev/<id>/report. Devices send
// one while a stream plays (at least every few seconds) and a final one when
// it ends. Counts are of 20 ms Opus packets.
type Report struct {
	StreamID uint32 `json:"stream_id"`
	Expected uint32 `json:"expected"`
	Played   uint32 `json:"played"`
	Late     uint32 `json:"late"`
	Lost     uint32 `json:"lost"`
	// ClockErrorUS is the device's estimate of its clock error against the
	// controller after correction, in microseconds (half the round-trip
	// spread of its recent samples).
	ClockErrorUS int64 `json:"clock_error_us"`
	// Final is true in the report sent when the stream has ended.
	Final bool `json:"final,omitempty"`
	// Malformed counts frames dropped because they did not decode.
	Malformed uint32 `json:"malformed,omitempty"`
}

// Validate checks consistency of the counters.
func (r Report) Validate() error {
	if r.StreamID == 0 {
		return fmt.Errorf("report: stream id 0 is reserved")
	}
	if uint64(r.Played)+uint64(r.Late)+uint64(r.Lost) > uint64(r.Expected)+uint64(MaxPacketsPerFrame) {
		return fmt.Errorf("report: played+late+lost exceeds expected")
	}
	return nil
}
