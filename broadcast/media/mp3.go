package media

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	mp3 "github.com/hajimehoshi/go-mp3"
)

// MPEG audio version IDs as coded in the frame header (ISO/IEC 11172-3
// §2.4.2.3, ISO/IEC 13818-3 §2.4.2.3; "2.5" is Fraunhofer's unofficial
// extension).
const (
	mpeg25 = 0
	mpeg2  = 2
	mpeg1  = 3
)

// frameHeader is a parsed 4-byte MPEG audio frame header.
type frameHeader struct {
	Version    int // mpeg1, mpeg2 or mpeg25
	Layer      int // 1, 2 or 3
	CRC        bool
	Bitrate    int // bit/s
	SampleRate int // Hz
	Padding    bool
	Channels   int // 1 or 2
	rateIndex  int
}

var (
	mp3Bitrates = [2][3][15]int{ // [v1, v2/2.5][layer-1][index], kbit/s
		{
			{0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448},
			{0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384},
			{0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320},
		},
		{
			{0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256},
			{0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160},
			{0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160},
		},
	}
	mp3Rates = map[int][3]int{
		mpeg1:  {44100, 48000, 32000},
		mpeg2:  {22050, 24000, 16000},
		mpeg25: {11025, 12000, 8000},
	}
)

var errBadHeader = errors.New("not an MPEG audio frame header")

// parseFrameHeader parses the 32-bit MPEG audio frame header at the start of
// b (ISO/IEC 11172-3 §2.4.1.3 and §2.4.2.3). It rejects the reserved values
// (version 01, layer 00, sample rate index 11, emphasis 10) and free-format
// bitrate (index 0), which no supported decoder handles.
func parseFrameHeader(b []byte) (frameHeader, error) {
	if len(b) < 4 || b[0] != 0xFF || b[1]&0xE0 != 0xE0 {
		return frameHeader{}, errBadHeader
	}
	var h frameHeader
	h.Version = int(b[1]>>3) & 3
	layerBits := int(b[1]>>1) & 3
	h.CRC = b[1]&1 == 0
	bri := int(b[2] >> 4)
	h.rateIndex = int(b[2]>>2) & 3
	h.Padding = b[2]&2 != 0
	mode := int(b[3] >> 6)
	emphasis := int(b[3] & 3)
	if h.Version == 1 || layerBits == 0 || bri == 0 || bri == 15 || h.rateIndex == 3 || emphasis == 2 {
		return frameHeader{}, errBadHeader
	}
	h.Layer = 4 - layerBits
	v := 0
	if h.Version != mpeg1 {
		v = 1
	}
	h.Bitrate = mp3Bitrates[v][h.Layer-1][bri] * 1000
	h.SampleRate = mp3Rates[h.Version][h.rateIndex]
	h.Channels = 2
	if mode == 3 {
		h.Channels = 1
	}
	return h, nil
}

// SamplesPerFrame returns the PCM samples per channel one frame decodes to.
func (h frameHeader) SamplesPerFrame() int {
	switch {
	case h.Layer == 1:
		return 384
	case h.Layer == 3 && h.Version != mpeg1:
		return 576
	}
	return 1152
}

// FrameSize returns the frame length in bytes including the header
// (ISO/IEC 11172-3 §2.4.3.1).
func (h frameHeader) FrameSize() int {
	pad := 0
	if h.Padding {
		pad = 1
	}
	if h.Layer == 1 {
		return (12*h.Bitrate/h.SampleRate + pad) * 4
	}
	return h.SamplesPerFrame()/8*h.Bitrate/h.SampleRate + pad
}

// sideInfoSize returns the Layer III side information length in bytes.
func (h frameHeader) sideInfoSize() int {
	switch {
	case h.Version == mpeg1 && h.Channels == 1:
		return 17
	case h.Version == mpeg1:
		return 32
	case h.Channels == 1:
		return 9
	}
	return 17
}

// sameStream reports whether o can follow h in one stream: the fields that a
// decoder fixes at the first frame (version, layer, sample rate) agree.
func (h frameHeader) sameStream(o frameHeader) bool {
	return h.Version == o.Version && h.Layer == o.Layer && h.rateIndex == o.rateIndex
}

func (h frameHeader) versionName() string {
	switch h.Version {
	case mpeg1:
		return "MPEG-1"
	case mpeg2:
		return "MPEG-2"
	}
	return "MPEG-2.5"
}

// checkSupported accepts only what go-mp3 v0.3.4 has been proven to decode
// faithfully: MPEG-1 Layer III at 32, 44.1 and 48 kHz (matches ffmpeg's
// decoder to 69–80 dB SNR at 32–320 kbit/s, mono and stereo). MPEG-2 Layer
// III decodes to noise at 22.05 kHz (32 and 160 kbit/s) and loses accuracy at
// 24 kHz, and MPEG-2.5 (8–12 kHz) is refused by go-mp3, so both are rejected
// with advice rather than risk broadcasting noise. Layers I and II are not
// decoded by go-mp3 at all.
func checkSupported(h frameHeader) error {
	if h.Layer != 3 {
		return fmt.Errorf("mp3: MPEG audio layer %d is not supported (only Layer III, i.e. .mp3): %w", h.Layer, ErrUnsupported)
	}
	if h.Version != mpeg1 {
		return fmt.Errorf("mp3: %d Hz %s audio is not supported (the decoder garbles it); re-encode at 44.1 or 48 kHz: %w", h.SampleRate, h.versionName(), ErrUnsupported)
	}
	return nil
}

// id3v2Size returns the total length of an ID3v2 tag at the start of b
// (header, synchsafe size, optional footer; ID3v2.4 §3.1), or 0 if there is
// none or the size field is not synchsafe.
func id3v2Size(b []byte) int {
	if len(b) < 10 || string(b[0:3]) != "ID3" || b[3] == 0xFF || b[4] == 0xFF {
		return 0
	}
	if b[6]|b[7]|b[8]|b[9] >= 0x80 {
		return 0
	}
	n := 10 + (int(b[6])<<21 | int(b[7])<<14 | int(b[8])<<7 | int(b[9]))
	if b[5]&0x10 != 0 {
		n += 10
	}
	return n
}

// maxJunk bounds how many bytes the frame reader skips looking for a frame
// sync before it gives up, so garbage cannot keep it busy.
const maxJunk = 64 << 10

// frameReader yields whole, validated MPEG audio frames from a byte stream.
// It skips ID3v2/ID3v1/APE tags and junk, locks onto the first frame whose
// successor confirms it (so a stray 0xFFE sync in junk is not taken for a
// frame), and afterwards accepts only frames of the same version, layer and
// sample rate.
type frameReader struct {
	br      *bufio.Reader
	first   *frameHeader
	inSync  bool
	junk    int // bytes skipped since the last good frame
	skipped int64
	frames  int64
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{br: bufio.NewReaderSize(r, 8192)}
}

// next returns the next frame's header and bytes (valid until the next call).
// It returns io.EOF at a clean end; a final frame cut short is dropped and
// reported as io.EOF too, because a cut is indistinguishable from a file that
// simply ends there unless a Xing header says otherwise.
func (fr *frameReader) next() (frameHeader, []byte, error) {
	for {
		if fr.junk > maxJunk {
			if fr.frames == 0 {
				return frameHeader{}, nil, fmt.Errorf("mp3: no MPEG audio frames found: %w", ErrCorrupt)
			}
			return frameHeader{}, nil, fmt.Errorf("mp3: more than %d bytes of garbage after frame %d: %w", maxJunk, fr.frames, ErrCorrupt)
		}
		p, err := fr.br.Peek(10)
		if len(p) < 4 {
			if errors.Is(err, io.EOF) || err == nil {
				return frameHeader{}, nil, io.EOF
			}
			return frameHeader{}, nil, err
		}
		if n := id3v2Size(p); n > 0 {
			if _, err := fr.br.Discard(n); err != nil {
				return frameHeader{}, nil, io.EOF
			}
			continue
		}
		h, herr := parseFrameHeader(p)
		if herr != nil || (fr.first != nil && !fr.first.sameStream(h)) {
			if fr.inSync && (string(p[:3]) == "TAG" || string(p[:4]) == "APET" || string(p[:4]) == "LYRI") {
				// Trailing ID3v1/APE/Lyrics3 tags end the audio.
				return frameHeader{}, nil, io.EOF
			}
			fr.skip()
			continue
		}
		size := h.FrameSize()
		if h.Layer == 3 && size < 4+h.sideInfoSize()+crcLen(h) {
			fr.skip()
			continue
		}
		frame, err := fr.br.Peek(size + 4)
		if len(frame) < size {
			// A frame cut short by the end of the stream.
			if errors.Is(err, io.EOF) {
				return frameHeader{}, nil, io.EOF
			}
			return frameHeader{}, nil, err
		}
		if !fr.inSync && len(frame) == size+4 {
			// Out of sync: demand that the following header confirms this one.
			if nh, err := parseFrameHeader(frame[size:]); err != nil || !h.sameStream(nh) {
				fr.skip()
				continue
			}
		}
		if fr.first == nil {
			if err := checkSupported(h); err != nil {
				return frameHeader{}, nil, err
			}
			hh := h
			fr.first = &hh
		}
		frame = frame[:size]
		if _, err := fr.br.Discard(size); err != nil {
			return frameHeader{}, nil, err
		}
		fr.inSync = true
		fr.junk = 0
		fr.frames++
		return h, frame, nil
	}
}

func (fr *frameReader) skip() {
	_, _ = fr.br.Discard(1)
	fr.inSync = false
	fr.junk++
	fr.skipped++
}

func crcLen(h frameHeader) int {
	if h.CRC {
		return 2
	}
	return 0
}

// mainDataBegin returns the Layer III main_data_begin field of a frame: how
// many bytes of its audio data lie in earlier frames' bit reservoir
// (ISO/IEC 11172-3 §2.4.1.7). A first frame with a non-zero value means the
// file was cut from a longer stream and its first frame cannot be decoded.
func mainDataBegin(h frameHeader, frame []byte) int {
	off := 4 + crcLen(h)
	if len(frame) < off+2 {
		return 0
	}
	if h.Version == mpeg1 {
		return int(frame[off])<<1 | int(frame[off+1]>>7)
	}
	return int(frame[off])
}

// lameInfo is what a Xing/Info (LAME) or VBRI header in the first frame says.
type lameInfo struct {
	present    bool // the first frame is a metadata frame that decodes to silence
	frames     int  // declared audio frame count, 0 if unknown
	delay      int  // encoder delay in samples, -1 if unknown
	padding    int  // encoder padding in samples, -1 if unknown
	hasPadding bool
}

// parseInfoFrame looks for a Xing/Info header (with the LAME extension that
// carries encoder delay and padding) or a Fraunhofer VBRI header in a first
// frame.
func parseInfoFrame(h frameHeader, frame []byte) lameInfo {
	li := lameInfo{delay: -1, padding: -1}
	off := 4 + crcLen(h) + h.sideInfoSize()
	if off+8 <= len(frame) && (string(frame[off:off+4]) == "Xing" || string(frame[off:off+4]) == "Info") {
		li.present = true
		flags := binary.BigEndian.Uint32(frame[off+4:])
		p := off + 8
		if flags&1 != 0 {
			if p+4 <= len(frame) {
				li.frames = int(binary.BigEndian.Uint32(frame[p:]))
			}
			p += 4
		}
		if flags&2 != 0 {
			p += 4
		}
		if flags&4 != 0 {
			p += 100
		}
		if flags&8 != 0 {
			p += 4
		}
		// LAME tag: 9-byte encoder version, then at +21 the 12-bit delay and
		// 12-bit padding.
		if p+24 <= len(frame) && (string(frame[p:p+4]) == "LAME" || string(frame[p:p+4]) == "Lavc" || string(frame[p:p+4]) == "Lavf") {
			d := frame[p+21:]
			li.delay = int(d[0])<<4 | int(d[1]>>4)
			li.padding = int(d[1]&0x0F)<<8 | int(d[2])
			li.hasPadding = true
		}
		return li
	}
	if off := 4 + 32; off+18 <= len(frame) && string(frame[off:off+4]) == "VBRI" {
		li.present = true
		li.delay = int(binary.BigEndian.Uint16(frame[off+6:]))
		li.frames = int(binary.BigEndian.Uint32(frame[off+14:]))
	}
	return li
}

// Encoder and decoder delays for Layer III. LAME's default encoder delay is
// 576 samples; a standard (ISO reference-compatible) decoder such as go-mp3
// adds 529 (the hybrid filterbank's latency), which was measured against
// ffmpeg's gapless decode to the sample.
const (
	defaultEncoderDelay = 576
	decoderDelay        = 529
)

// decodeMP3 validates every frame itself, then decodes with go-mp3 and trims
// the encoder and decoder delay (and LAME's end padding) so that content
// starts and ends where the encoder's input did.
func decodeMP3(data []byte, maxDuration time.Duration) (Audio, error) {
	fr := newFrameReader(bytes.NewReader(data))
	var (
		clean    bytes.Buffer
		first    frameHeader
		info     lameInfo
		nframes  int
		channels = 1
		dropOut  int
	)
	for {
		h, frame, err := fr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Audio{}, err
		}
		if nframes == 0 {
			first = h
			info = parseInfoFrame(h, frame)
			if !info.present && mainDataBegin(h, frame) != 0 {
				// Cut from a stream: the first frame's reservoir is missing;
				// go-mp3 would decode garbage for it and the next.
				dropOut = 2 * h.SamplesPerFrame()
			}
		} else if nframes == 1 && info.present && mainDataBegin(h, frame) != 0 {
			dropOut = 2 * h.SamplesPerFrame()
		}
		if h.Channels == 2 {
			channels = 2
		}
		clean.Write(frame)
		nframes++
		if maxDuration > 0 {
			if d := durationOf(int64(nframes)*int64(h.SamplesPerFrame()), h.SampleRate); d > maxDuration {
				return Audio{}, tooLong(d, maxDuration)
			}
		}
	}
	audioFrames := nframes
	if info.present {
		audioFrames--
	}
	if audioFrames <= 0 {
		return Audio{}, fmt.Errorf("mp3: no audio frames: %w", ErrCorrupt)
	}
	if info.frames > 0 && audioFrames < info.frames {
		// Xing counts the audio frames; fewer present means a cut upload.
		return Audio{}, fmt.Errorf("mp3: header declares %d frames but only %d are present (truncated upload?): %w", info.frames, audioFrames, ErrCorrupt)
	}
	raw, err := goMP3DecodeAll(clean.Bytes())
	if err != nil {
		return Audio{}, err
	}
	pcm := stereoS16ToMono(raw)
	spf := first.SamplesPerFrame()
	skip := decoderDelay
	if info.delay >= 0 {
		skip += info.delay
	} else {
		skip += defaultEncoderDelay
	}
	if info.present {
		skip += spf
	}
	skip = max(skip, dropOut)
	end := len(pcm)
	if info.hasPadding {
		valid := audioFrames*spf - max(info.delay, 0) - info.padding
		end = min(end, skip+max(valid, 0))
	}
	if skip >= end {
		return Audio{}, fmt.Errorf("mp3: too short to hold audio after the encoder delay: %w", ErrCorrupt)
	}
	return Audio{Samples: pcm[skip:end], Rate: first.SampleRate, Channels: channels, Format: FormatMP3}, nil
}

// goMP3DecodeAll runs go-mp3 over validated frames. go-mp3 gets a plain
// io.Reader so it does not rescan a seeker. Crafted main data could drive
// its Huffman decoder out of bounds; a panic there is turned into
// ErrCorrupt rather than taking the daemon down.
func goMP3DecodeAll(frames []byte) (raw []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			raw, err = nil, fmt.Errorf("mp3: decoder failed on malformed audio data: %w", ErrCorrupt)
		}
	}()
	dec, err := mp3.NewDecoder(struct{ io.Reader }{bytes.NewReader(frames)})
	if err != nil {
		return nil, fmt.Errorf("mp3: %v: %w", err, ErrCorrupt)
	}
	raw, err = io.ReadAll(dec)
	if err != nil {
		return nil, fmt.Errorf("mp3: decode: %v: %w", err, ErrCorrupt)
	}
	return raw, nil
}

// stereoS16ToMono converts go-mp3's output (always interleaved stereo 16-bit
// little-endian, even for mono sources) to mono float32.
func stereoS16ToMono(raw []byte) []float32 {
	out := make([]float32, len(raw)/4)
	for i := range out {
		l := int16(binary.LittleEndian.Uint16(raw[4*i:]))
		r := int16(binary.LittleEndian.Uint16(raw[4*i+2:]))
		out[i] = (float32(l) + float32(r)) / 65536
	}
	return out
}
