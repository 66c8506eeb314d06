package media

import (
	"context"
	"errors"
	"fmt"
	"io"

	mp3 "github.com/hajimehoshi/go-mp3"
)

// Transcoder turns a live MP3 stream (an Icecast/SHOUTcast mount or any
// HTTP MP3 stream) into 20 ms Opus packets as it arrives: frame validation
// (the same MPEG-1 Layer III whitelist as uploads), go-mp3 decoding, a
// streaming band-limited resampler to 48 kHz and libopus encoding. There is
// no loudness pass: a relay plays at the level the station sends.
//
// Request the stream without "Icy-MetaData: 1", or metadata blocks will be
// skipped as junk at the cost of a glitch each time. A Transcoder is not safe
// for concurrent use.
type Transcoder struct {
	src     *frameSource
	dec     *mp3.Decoder
	rs      *Resampler
	enc     *encoder
	raw     []byte
	mono    []float32
	pcm     []float32 // 48 kHz samples waiting to be encoded
	warm    int       // decoded samples still to drop
	eof     bool
	flushed bool
}

// NewMP3Transcoder returns a transcoder reading MP3 from r and encoding at
// bitrate bit/s (0 selects DefaultBitrate). It reads nothing until Next.
func NewMP3Transcoder(r io.Reader, bitrate int) (*Transcoder, error) {
	enc, err := newEncoder(bitrate)
	if err != nil {
		return nil, err
	}
	return &Transcoder{src: &frameSource{fr: newFrameReader(r)}, enc: enc, raw: make([]byte, 4*1152)}, nil
}

// Next returns the next 20 ms Opus packet. It blocks reading the stream;
// to stop it, cancel the context of the HTTP request whose body it reads (or
// close r), which makes the pending read fail. At the end of the stream it
// returns the final, zero-padded packet and then io.EOF. A stream that is not
// MPEG-1 Layer III is ErrUnsupported; one without MPEG frames is ErrCorrupt.
func (t *Transcoder) Next(ctx context.Context) ([]byte, error) {
	for len(t.pcm) < FrameSamples {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if t.eof {
			if !t.flushed {
				t.flushed = true
				if t.rs != nil {
					t.pcm = t.rs.Flush(t.pcm)
				}
				if len(t.pcm) > 0 {
					t.pcm = append(t.pcm, make([]float32, FrameSamples-len(t.pcm)%FrameSamples)...)
					continue
				}
			}
			return nil, io.EOF
		}
		if err := t.decodeSome(); err != nil {
			return nil, err
		}
	}
	p, err := t.enc.encode(t.pcm[:FrameSamples])
	if err != nil {
		return nil, err
	}
	t.pcm = append(t.pcm[:0], t.pcm[FrameSamples:]...)
	return p, nil
}

// Run calls emit with every packet until the stream ends (nil), ctx is
// cancelled (ctx.Err()) or emit or decoding fails.
func (t *Transcoder) Run(ctx context.Context, emit func([]byte) error) error {
	for {
		p, err := t.Next(ctx)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := emit(p); err != nil {
			return err
		}
	}
}

// decodeSome decodes at least one MP3 frame's worth of samples into t.pcm,
// or sets t.eof.
func (t *Transcoder) decodeSome() (err error) {
	defer func() {
		// See goMP3DecodeAll: a decoder panic on crafted data is bad input.
		if r := recover(); r != nil {
			err = fmt.Errorf("mp3 stream: decoder failed on malformed audio data: %w", ErrCorrupt)
		}
	}()
	if t.dec == nil {
		dec, err := mp3.NewDecoder(t.src)
		if err != nil {
			return t.srcErr(err)
		}
		t.dec = dec
		t.rs = NewResampler(dec.SampleRate(), OpusRate)
		// Joining a stream mid-way, the first frame's bit reservoir lies in
		// frames never received: drop two frames of output (its garbage and
		// the overlap it leaves in the next).
		t.warm = 2 * 1152
	}
	n, err := t.dec.Read(t.raw)
	if n > 0 {
		t.mono = stereoS16ToMonoInto(t.mono[:0], t.raw[:n-n%4])
		m := t.mono
		if t.warm > 0 {
			d := min(t.warm, len(m))
			m, t.warm = m[d:], t.warm-d
		}
		t.pcm = t.rs.Process(t.pcm, m)
	}
	if errors.Is(err, io.EOF) {
		if t.src.err != nil {
			return t.src.err
		}
		t.eof = true
		return nil
	}
	if err != nil {
		return t.srcErr(err)
	}
	return nil
}

func (t *Transcoder) srcErr(err error) error {
	if t.src.err != nil {
		return t.src.err
	}
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("mp3 stream: ended before the first frame: %w", ErrCorrupt)
	}
	return fmt.Errorf("mp3 stream: %v: %w", err, ErrCorrupt)
}

// frameSource feeds go-mp3 only frames the frameReader validated. It keeps
// the first non-EOF error, because go-mp3 turns some read errors into EOF.
type frameSource struct {
	fr  *frameReader
	cur []byte
	err error
}

func (s *frameSource) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	for len(s.cur) == 0 {
		_, frame, err := s.fr.next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				s.err = err
			}
			return 0, err
		}
		s.cur = frame
	}
	n := copy(p, s.cur)
	s.cur = s.cur[n:]
	return n, nil
}

func stereoS16ToMonoInto(dst []float32, raw []byte) []float32 {
	for i := 0; i+4 <= len(raw); i += 4 {
		l := int16(uint16(raw[i]) | uint16(raw[i+1])<<8)
		r := int16(uint16(raw[i+2]) | uint16(raw[i+3])<<8)
		dst = append(dst, (float32(l)+float32(r))/65536)
	}
	return dst
}
