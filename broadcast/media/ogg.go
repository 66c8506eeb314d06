package media

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Ogg page header flags (RFC 3533 §6).
const (
	oggContinued = 0x01
	oggBOS       = 0x02
	oggEOS       = 0x04
)

// oggHeaderLen is the fixed part of a page header before the segment table.
const oggHeaderLen = 27

// oggCRCTable is the CRC-32 used by Ogg: polynomial 0x04c11db7, initial value
// 0, no bit reflection and no final XOR (RFC 3533 §6, "CRC checksum").
var oggCRCTable = func() (t [256]uint32) {
	for i := range t {
		r := uint32(i) << 24
		for j := 0; j < 8; j++ {
			if r&0x80000000 != 0 {
				r = r<<1 ^ 0x04c11db7
			} else {
				r <<= 1
			}
		}
		t[i] = r
	}
	return t
}()

func oggCRC(crc uint32, b []byte) uint32 {
	for _, c := range b {
		crc = crc<<8 ^ oggCRCTable[byte(crc>>24)^c]
	}
	return crc
}

// oggPage is one parsed Ogg page (RFC 3533 §6).
type oggPage struct {
	Flags   byte
	Granule int64
	Serial  uint32
	Seq     uint32
	Lacing  []byte // segment table
	Body    []byte
}

// parseOggPage parses and CRC-checks the page at the start of b and returns
// it with the number of bytes it occupies. Errors wrap ErrCorrupt.
func parseOggPage(b []byte) (oggPage, int, error) {
	if len(b) < oggHeaderLen || string(b[0:4]) != "OggS" {
		return oggPage{}, 0, fmt.Errorf("ogg: missing page capture pattern: %w", ErrCorrupt)
	}
	if b[4] != 0 {
		return oggPage{}, 0, fmt.Errorf("ogg: unknown page version %d: %w", b[4], ErrCorrupt)
	}
	nseg := int(b[26])
	if len(b) < oggHeaderLen+nseg {
		return oggPage{}, 0, fmt.Errorf("ogg: page header truncated: %w", ErrCorrupt)
	}
	lacing := b[oggHeaderLen : oggHeaderLen+nseg]
	bodyLen := 0
	for _, l := range lacing {
		bodyLen += int(l)
	}
	total := oggHeaderLen + nseg + bodyLen
	if len(b) < total {
		return oggPage{}, 0, fmt.Errorf("ogg: page body truncated (need %d bytes, have %d): %w", total, len(b), ErrCorrupt)
	}
	want := binary.LittleEndian.Uint32(b[22:26])
	crc := oggCRC(0, b[:22])
	crc = oggCRC(crc, []byte{0, 0, 0, 0})
	crc = oggCRC(crc, b[26:total])
	if crc != want {
		return oggPage{}, 0, fmt.Errorf("ogg: page checksum mismatch: %w", ErrCorrupt)
	}
	return oggPage{
		Flags:   b[5],
		Granule: int64(binary.LittleEndian.Uint64(b[6:14])),
		Serial:  binary.LittleEndian.Uint32(b[14:18]),
		Seq:     binary.LittleEndian.Uint32(b[18:22]),
		Lacing:  lacing,
		Body:    b[oggHeaderLen+nseg : total],
	}, total, nil
}

// oggPacket is a packet reassembled from one logical stream. Granule is the
// granule position of the page on which the packet completed if it is the
// last packet completed on that page, else -1 (RFC 3533 §6: a page's granule
// position belongs to the last packet that ends on it).
type oggPacket struct {
	Data    []byte
	Granule int64
	EOS     bool
}

// maxOggPacket bounds packet reassembly; no Opus header or audio packet comes
// near it, so anything bigger is corrupt input.
const maxOggPacket = 1 << 20

// readOggStream reassembles the packets of the first logical stream in data
// whose first packet begins with magic. Pages of other (multiplexed) streams
// are skipped; a chained stream (a new BOS page after the chosen stream's
// pages began) is ErrUnsupported; a gap in page sequence numbers or a
// continuation that does not continue is ErrCorrupt.
func readOggStream(data []byte, magic string) ([]oggPacket, error) {
	var (
		serial     uint32
		chosen     bool
		seenNonBOS bool
		nextSeq    uint32
		pending    []byte
		packets    []oggPacket
		ended      bool
	)
	for off := 0; off < len(data); {
		p, n, err := parseOggPage(data[off:])
		if err != nil {
			return nil, fmt.Errorf("%w (at byte %d)", err, off)
		}
		off += n
		if p.Flags&oggBOS != 0 {
			if seenNonBOS {
				return nil, fmt.Errorf("ogg: chained streams are not supported: %w", ErrUnsupported)
			}
			if !chosen && len(p.Body) >= len(magic) && string(p.Body[:len(magic)]) == magic {
				serial, chosen, nextSeq = p.Serial, true, p.Seq
			}
		} else {
			seenNonBOS = true
		}
		if !chosen || p.Serial != serial {
			continue
		}
		if ended {
			return nil, fmt.Errorf("ogg: page after end of stream: %w", ErrCorrupt)
		}
		if p.Seq != nextSeq {
			return nil, fmt.Errorf("ogg: page %d missing (got page %d): %w", nextSeq, p.Seq, ErrCorrupt)
		}
		nextSeq++
		if p.Flags&oggContinued == 0 && pending != nil {
			return nil, fmt.Errorf("ogg: packet not continued on page %d: %w", p.Seq, ErrCorrupt)
		}
		if p.Flags&oggContinued != 0 && pending == nil {
			return nil, fmt.Errorf("ogg: page %d continues a packet that never started: %w", p.Seq, ErrCorrupt)
		}
		body := p.Body
		last := -1
		for i, l := range p.Lacing {
			pending = append(pending, body[:l]...)
			body = body[l:]
			if len(pending) > maxOggPacket {
				return nil, fmt.Errorf("ogg: packet larger than %d bytes: %w", maxOggPacket, ErrCorrupt)
			}
			if l < 255 {
				packets = append(packets, oggPacket{Data: pending, Granule: -1})
				pending = nil
				last = i
			}
		}
		if last >= 0 {
			packets[len(packets)-1].Granule = p.Granule
		}
		if p.Flags&oggEOS != 0 {
			if len(packets) > 0 {
				packets[len(packets)-1].EOS = true
			}
			ended = true
		}
	}
	if !chosen {
		return nil, fmt.Errorf("ogg: no %s stream: %w", magic, ErrUnsupported)
	}
	if pending != nil {
		return nil, fmt.Errorf("ogg: last packet truncated: %w", ErrCorrupt)
	}
	return packets, nil
}

// oggWriter writes one logical Ogg stream (RFC 3533).
type oggWriter struct {
	w      io.Writer
	serial uint32
	seq    uint32
	buf    []byte
}

// writePage writes packets as one page with the given flags and granule
// position. The caller keeps the page within 255 lacing values; every packet
// ends on this page.
func (o *oggWriter) writePage(flags byte, granule int64, packets ...[]byte) error {
	var lacing []byte
	bodyLen := 0
	for _, p := range packets {
		n := len(p)
		for n >= 255 {
			lacing = append(lacing, 255)
			n -= 255
		}
		lacing = append(lacing, byte(n))
		bodyLen += len(p)
	}
	if len(lacing) > 255 {
		return fmt.Errorf("ogg: page would need %d lacing values", len(lacing))
	}
	b := o.buf[:0]
	b = append(b, "OggS"...)
	b = append(b, 0, flags)
	b = binary.LittleEndian.AppendUint64(b, uint64(granule))
	b = binary.LittleEndian.AppendUint32(b, o.serial)
	b = binary.LittleEndian.AppendUint32(b, o.seq)
	b = append(b, 0, 0, 0, 0, byte(len(lacing)))
	b = append(b, lacing...)
	for _, p := range packets {
		b = append(b, p...)
	}
	binary.LittleEndian.PutUint32(b[22:], oggCRC(0, b))
	o.buf = b
	o.seq++
	_, err := o.w.Write(b)
	return err
}

// lacingLen returns how many lacing values a packet of n bytes needs.
func lacingLen(n int) int { return n/255 + 1 }
