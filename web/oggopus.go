package web

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
)

// oggOpus writes received Opus packets, untouched, to an Ogg Opus file
// (RFC 7845): an ID header page, a comment header page, then audio pages of
// up to about a second each, the last one flagged end-of-stream.
type oggOpus struct {
	f       *os.File
	w       *bufio.Writer
	serial  uint32
	seq     uint32
	granule int64
	pending [][]byte
	segs    int
	err     error
}

// opusPreSkip is the decoder delay at 48 kHz that players discard (RFC
// 7845 §5.1); 312 samples is libopus's, which browsers use.
const opusPreSkip = 312

// oggCRCTable is the Ogg CRC-32 (polynomial 0x04c11db7, not reflected,
// zero initial value; RFC 3533 §6).
var oggCRCTable = func() (t [256]uint32) {
	for i := range t {
		r := uint32(i) << 24
		for range 8 {
			if r&0x80000000 != 0 {
				r = r<<1 ^ 0x04c11db7
			} else {
				r <<= 1
			}
		}
		t[i] = r
	}
	return
}()

func oggCRC(crc uint32, b []byte) uint32 {
	for _, c := range b {
		crc = crc<<8 ^ oggCRCTable[byte(crc>>24)^c]
	}
	return crc
}

// newOggOpus creates path and writes the two header pages for a mono
// stream.
func newOggOpus(path string, serial uint32) (*oggOpus, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create archive %s: %w", path, err)
	}
	o := &oggOpus{f: f, w: bufio.NewWriter(f), serial: serial}
	head := make([]byte, 19)
	copy(head, "OpusHead")
	head[8] = 1 // version
	head[9] = 1 // channels: the live path takes mono packets
	binary.LittleEndian.PutUint16(head[10:], opusPreSkip)
	binary.LittleEndian.PutUint32(head[12:], 48000) // input sample rate
	// output gain 0, channel mapping family 0 (RFC 7845 §5.1.1)
	vendor := "loalang"
	tags := make([]byte, 8+4+len(vendor)+4)
	copy(tags, "OpusTags")
	binary.LittleEndian.PutUint32(tags[8:], uint32(len(vendor)))
	copy(tags[12:], vendor)
	// zero user comments
	o.page(0x02, 0, [][]byte{head}) // beginning of stream
	o.page(0, 0, [][]byte{tags})
	if o.err == nil {
		o.err = o.w.Flush()
	}
	if o.err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("write archive %s: %w", path, o.err)
	}
	return o, nil
}

// write adds one packet of the given duration in 48 kHz samples.
func (o *oggOpus) write(pkt []byte, samples int) error {
	if o.err != nil {
		return o.err
	}
	n := len(pkt)/255 + 1
	if o.segs+n > 255 || len(o.pending) >= 50 {
		o.flush(0)
	}
	o.pending = append(o.pending, append([]byte(nil), pkt...))
	o.segs += n
	o.granule += int64(samples)
	return o.err
}

// flush writes the pending packets as one page. The granule position is
// the sample count through the last packet completed on the page,
// pre-skip included (RFC 7845 §4).
func (o *oggOpus) flush(flags byte) {
	if len(o.pending) == 0 && flags == 0 {
		return
	}
	o.page(flags, o.granule, o.pending)
	o.pending, o.segs = nil, 0
	if o.err == nil {
		o.err = o.w.Flush()
	}
}

func (o *oggOpus) page(flags byte, granule int64, packets [][]byte) {
	if o.err != nil {
		return
	}
	var lacing []byte
	size := 0
	for _, p := range packets {
		for n := len(p); ; n -= 255 {
			if n < 255 {
				lacing = append(lacing, byte(n))
				break
			}
			lacing = append(lacing, 255)
		}
		size += len(p)
	}
	b := make([]byte, 27+len(lacing), 27+len(lacing)+size)
	copy(b, "OggS")
	b[5] = flags
	binary.LittleEndian.PutUint64(b[6:], uint64(granule))
	binary.LittleEndian.PutUint32(b[14:], o.serial)
	binary.LittleEndian.PutUint32(b[18:], o.seq)
	b[26] = byte(len(lacing))
	copy(b[27:], lacing)
	for _, p := range packets {
		b = append(b, p...)
	}
	binary.LittleEndian.PutUint32(b[22:], oggCRC(0, b))
	o.seq++
	_, o.err = o.w.Write(b)
}

// close writes the last page with the end-of-stream flag and syncs the
// file, so the archive survives a power cut right after the speech.
func (o *oggOpus) close() error {
	o.flush(0x04)
	if err := o.f.Sync(); err != nil && o.err == nil {
		o.err = err
	}
	if err := o.f.Close(); err != nil && o.err == nil {
		o.err = err
	}
	return o.err
}
