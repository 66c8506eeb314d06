package media

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"gopkg.in/hraban/opus.v2"

	"github.com/loalang/loalang/internal/ogg"
)

// Opus framing used for everything loalang stores and streams.
const (
	// OpusRate is the only rate loalang encodes at (Opus' native rate).
	OpusRate = 48000
	// FrameSamples is one 20 ms Opus frame at 48 kHz.
	FrameSamples = OpusRate / 50
	// FrameMS is the Opus frame duration in milliseconds.
	FrameMS = 20
	// DefaultBitrate is the Opus bitrate for speech, in bit/s.
	DefaultBitrate = 24000
	// opusPreSkip is libopus' encoder lookahead at 48 kHz for the VoIP and
	// audio applications: 2.5 ms + 4 ms delay compensation = 312 samples
	// (the value opusenc and ffmpeg write). RFC 7845 §4.2 asks decoders to
	// discard this many samples from the start.
	opusPreSkip = ogg.OpusPreSkip
	// maxOpusPacketSamples is 120 ms at 48 kHz, the longest Opus packet
	// (RFC 6716 §3.2.5).
	maxOpusPacketSamples = 5760
	// maxOpusPacketBytes is an ample output buffer for one encoded frame.
	maxOpusPacketBytes = 1500
)

// opusHead is the identification header (RFC 7845 §5.1).
type opusHead struct {
	Channels   int
	PreSkip    int
	InputRate  uint32
	OutputGain int16 // Q7.8 dB
	Mapping    int
}

func parseOpusHead(b []byte) (opusHead, error) {
	if len(b) < 19 || string(b[:8]) != "OpusHead" {
		return opusHead{}, fmt.Errorf("opus: bad OpusHead packet: %w", ErrCorrupt)
	}
	if b[8]>>4 != 0 {
		// RFC 7845 §5.1: a major version other than 0 is incompatible.
		return opusHead{}, fmt.Errorf("opus: OpusHead version %d is not supported: %w", b[8], ErrUnsupported)
	}
	h := opusHead{
		Channels:   int(b[9]),
		PreSkip:    int(binary.LittleEndian.Uint16(b[10:])),
		InputRate:  binary.LittleEndian.Uint32(b[12:]),
		OutputGain: int16(binary.LittleEndian.Uint16(b[16:])),
		Mapping:    int(b[18]),
	}
	if h.Channels == 0 {
		return opusHead{}, fmt.Errorf("opus: OpusHead has zero channels: %w", ErrCorrupt)
	}
	if h.Mapping != 0 || h.Channels > 2 {
		// Family 0 is mono/stereo in one Opus stream (RFC 7845 §5.1.1.1);
		// others need a multistream decoder.
		return opusHead{}, fmt.Errorf("opus: %d channels with mapping family %d are not supported (mono or stereo only): %w", h.Channels, h.Mapping, ErrUnsupported)
	}
	return h, nil
}

// decodeOggOpus decodes an Ogg Opus file (RFC 7845) with libopus: it applies
// the header's output gain, discards pre-skip samples (§4.2) and trims the end
// to the final granule position (§4.5), then averages stereo to mono.
func decodeOggOpus(data []byte, maxDuration time.Duration) (Audio, error) {
	pkts, err := readOggStream(data, "OpusHead")
	if err != nil {
		return Audio{}, err
	}
	if len(pkts) < 2 {
		return Audio{}, fmt.Errorf("opus: missing comment header: %w", ErrCorrupt)
	}
	head, err := parseOpusHead(pkts[0].Data)
	if err != nil {
		return Audio{}, err
	}
	if len(pkts[1].Data) < 8 || string(pkts[1].Data[:8]) != "OpusTags" {
		return Audio{}, fmt.Errorf("opus: second packet is not OpusTags: %w", ErrCorrupt)
	}
	audio := pkts[2:]
	if len(audio) == 0 {
		return Audio{}, fmt.Errorf("opus: no audio packets: %w", ErrEmpty)
	}
	lastGranule := int64(-1)
	for i := len(audio) - 1; i >= 0; i-- {
		if audio[i].Granule >= 0 {
			lastGranule = audio[i].Granule
			break
		}
	}
	if maxDuration > 0 && lastGranule > 0 {
		if d := durationOf(lastGranule-int64(head.PreSkip), OpusRate); d > maxDuration {
			return Audio{}, tooLong(d, maxDuration)
		}
	}
	// Hard upper bound even if granules lie: 120 ms per packet.
	if maxDuration > 0 {
		if d := durationOf(int64(len(audio))*FrameSamples, OpusRate); d > maxDuration*6+time.Second {
			return Audio{}, tooLong(d/6, maxDuration)
		}
	}
	dec, err := opus.NewDecoder(OpusRate, head.Channels)
	if err != nil {
		return Audio{}, fmt.Errorf("opus: new decoder: %w", err)
	}
	buf := make([]float32, maxOpusPacketSamples*head.Channels)
	var (
		pcm        []float32
		firstEnd   = int64(-1) // decoded samples up to the first page that sets a granule
		firstGran  = int64(-1)
		gain       = float32(math.Pow(10, float64(head.OutputGain)/(20*256)))
		maxSamples = int64(-1)
	)
	if maxDuration > 0 {
		maxSamples = int64(maxDuration/time.Millisecond)*OpusRate/1000 + int64(head.PreSkip) + maxOpusPacketSamples
	}
	for i, p := range audio {
		n, err := dec.DecodeFloat32(p.Data, buf)
		if err != nil {
			return Audio{}, fmt.Errorf("opus: packet %d: %v: %w", i, err, ErrCorrupt)
		}
		for j := 0; j < n; j++ {
			var s float32
			for c := 0; c < head.Channels; c++ {
				s += buf[j*head.Channels+c]
			}
			pcm = append(pcm, gain*s/float32(head.Channels))
		}
		if maxSamples > 0 && int64(len(pcm)) > maxSamples {
			return Audio{}, tooLong(durationOf(int64(len(pcm)), OpusRate), maxDuration)
		}
		if p.Granule >= 0 && firstGran < 0 && !p.EOS {
			firstGran, firstEnd = p.Granule, int64(len(pcm))
		}
	}
	// Map decoded sample index i to granule start+i (RFC 7845 §4.3/§4.5).
	start := int64(0)
	if firstGran >= 0 {
		start = firstGran - firstEnd
		if start < 0 {
			return Audio{}, fmt.Errorf("opus: first granule position %d is before the audio it ends: %w", firstGran, ErrCorrupt)
		}
	}
	from := int64(head.PreSkip) - start
	to := int64(len(pcm))
	if lastGranule >= 0 {
		to = min(to, lastGranule-start)
	}
	from = max(from, 0)
	if from >= to {
		return Audio{}, fmt.Errorf("opus: no audio after pre-skip: %w", ErrEmpty)
	}
	return Audio{Samples: pcm[from:to], Rate: OpusRate, Channels: head.Channels, Format: FormatOggOpus}, nil
}

// encoder wraps a libopus encoder configured for loalang's speech stream:
// 48 kHz mono, the VoIP application (speech-tuned, RFC 6716 §2.1.1), a fixed
// bitrate and 20 ms frames.
type encoder struct {
	enc *opus.Encoder
	out []byte
}

func newEncoder(bitrate int) (*encoder, error) {
	if bitrate <= 0 {
		bitrate = DefaultBitrate
	}
	if bitrate < 6000 || bitrate > 510000 {
		return nil, fmt.Errorf("opus: bitrate %d bit/s outside 6000–510000", bitrate)
	}
	enc, err := opus.NewEncoder(OpusRate, 1, opus.AppVoIP)
	if err != nil {
		return nil, fmt.Errorf("opus: new encoder: %w", err)
	}
	if err := enc.SetBitrate(bitrate); err != nil {
		return nil, fmt.Errorf("opus: set bitrate %d: %w", bitrate, err)
	}
	return &encoder{enc: enc, out: make([]byte, maxOpusPacketBytes)}, nil
}

// encode encodes exactly one FrameSamples-long frame and returns a fresh
// packet.
func (e *encoder) encode(frame []float32) ([]byte, error) {
	n, err := e.enc.EncodeFloat32(frame, e.out)
	if err != nil {
		return nil, fmt.Errorf("opus: encode: %w", err)
	}
	return bytes.Clone(e.out[:n]), nil
}

// writeOggOpus writes packets as an Ogg Opus file (RFC 7845) with
// internal/ogg's writer: OpusHead alone on the BOS page, OpusTags alone on
// the second page, then audio pages of a second each, the last page flagged
// EOS with the granule trimmed to preSkip+samples (§4.5).
func writeOggOpus(buf *bytes.Buffer, serial uint32, packets [][]byte, samples int64) error {
	w, err := ogg.NewOpusWriter(buf, serial, 1)
	if err != nil {
		return err
	}
	for _, p := range packets {
		if err := w.Write(p, FrameSamples); err != nil {
			return err
		}
	}
	return w.Close(samples)
}
