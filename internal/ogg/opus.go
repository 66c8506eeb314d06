package ogg

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Opus stream constants (RFC 7845).
const (
	// OpusPreSkip is libopus's encoder lookahead at 48 kHz: 2.5 ms + 4 ms
	// delay compensation = 312 samples, the value opusenc, ffmpeg and
	// browsers use. RFC 7845 §4.2 asks decoders to discard this many
	// samples from the start.
	OpusPreSkip = 312
	// PacketsPerPage is how many packets go on one audio page at most: one
	// second of 20 ms packets, like opusenc's default page delay.
	PacketsPerPage = 50
	// vendor is the comment header's vendor string; there are no user
	// comments, so a stored file's bytes depend on the audio alone.
	vendor = "loalang"
)

// OpusHead returns the identification header (RFC 7845 §5.1): version 1,
// the channel count, pre-skip, the input sample rate, output gain 0 and
// channel mapping family 0 (mono or stereo, §5.1.1.1).
func OpusHead(channels int, preSkip uint16, inputRate uint32) []byte {
	b := make([]byte, 0, 19)
	b = append(b, "OpusHead"...)
	b = append(b, 1, byte(channels))
	b = binary.LittleEndian.AppendUint16(b, preSkip)
	b = binary.LittleEndian.AppendUint32(b, inputRate)
	b = binary.LittleEndian.AppendUint16(b, 0)
	return append(b, 0)
}

// OpusTags returns a comment header (RFC 7845 §5.2) holding only the vendor
// string "loalang".
func OpusTags() []byte {
	b := []byte("OpusTags")
	b = binary.LittleEndian.AppendUint32(b, uint32(len(vendor)))
	b = append(b, vendor...)
	return binary.LittleEndian.AppendUint32(b, 0)
}

// OpusWriter writes Opus packets, untouched, as one Ogg Opus stream (RFC
// 7845 §3): OpusHead alone on the BOS page, OpusTags alone on the second
// page, then audio pages of up to PacketsPerPage packets whose granule
// positions count the 48 kHz samples of every packet completed so far,
// pre-skip included (§4). Close writes the last page, flagged EOS.
//
// It streams: after each page it flushes w if w has a Flush method, so a
// live archive on disk lags the speech by at most one page.
type OpusWriter struct {
	ow      *Writer
	flush   func() error
	granule int64
	pending [][]byte
	segs    int
	err     error
	closed  bool
}

// NewOpusWriter writes the two header pages of a stream of the given
// channel count (1 or 2) to w.
func NewOpusWriter(w io.Writer, serial uint32, channels int) (*OpusWriter, error) {
	o := &OpusWriter{ow: NewWriter(w, serial)}
	if f, ok := w.(interface{ Flush() error }); ok {
		o.flush = f.Flush
	}
	if err := o.ow.WritePage(BOS, 0, OpusHead(channels, OpusPreSkip, 48000)); err != nil {
		return nil, fmt.Errorf("ogg opus: write OpusHead: %w", err)
	}
	if err := o.ow.WritePage(0, 0, OpusTags()); err != nil {
		return nil, fmt.Errorf("ogg opus: write OpusTags: %w", err)
	}
	if err := o.doFlush(); err != nil {
		return nil, fmt.Errorf("ogg opus: write headers: %w", err)
	}
	return o, nil
}

func (o *OpusWriter) doFlush() error {
	if o.flush == nil {
		return nil
	}
	return o.flush()
}

// Write adds one packet lasting samples at 48 kHz. A full page (PacketsPerPage
// packets or MaxSegments lacing values) is written before the packet that
// would overflow it. The first error is kept and returned by every later
// call.
func (o *OpusWriter) Write(pkt []byte, samples int) error {
	if o.err != nil {
		return o.err
	}
	n := LacingLen(len(pkt))
	if n > MaxSegments {
		o.err = fmt.Errorf("%w (%d bytes)", ErrPacketTooLarge, len(pkt))
		return o.err
	}
	if o.segs+n > MaxSegments || len(o.pending) >= PacketsPerPage {
		o.page(0, o.granule)
	}
	o.pending = append(o.pending, append([]byte(nil), pkt...))
	o.segs += n
	o.granule += int64(samples)
	return o.err
}

func (o *OpusWriter) page(flags byte, granule int64) {
	if o.err != nil {
		return
	}
	if err := o.ow.WritePage(flags, granule, o.pending...); err != nil {
		o.err = fmt.Errorf("ogg opus: write page: %w", err)
		return
	}
	o.pending, o.segs = nil, 0
	if err := o.doFlush(); err != nil {
		o.err = fmt.Errorf("ogg opus: flush page: %w", err)
	}
}

// Close writes the pending packets as the last page, flagged EOS (an
// empty EOS page when there are none). endTrim, when at least 0, is the
// number of samples of real audio after pre-skip: the final granule
// position is then trimmed to OpusPreSkip+endTrim (§4.5), so a decoder drops
// the padding of the last frame. Close does not close the underlying
// writer. It returns the first error of the stream.
func (o *OpusWriter) Close(endTrim int64) error {
	if o.closed {
		return o.err
	}
	o.closed = true
	g := o.granule
	if endTrim >= 0 {
		g = min(g, OpusPreSkip+endTrim)
	}
	o.page(EOS, g)
	return o.err
}
