package media

import (
	"encoding/binary"
	"fmt"

	"github.com/loalang/loalang/internal/ogg"
)

// Ogg page header flags (RFC 3533 §6) and the fixed header length; the
// writer and the CRC are internal/ogg's, shared with the live archive.
const (
	oggContinued = ogg.Continued
	oggBOS       = ogg.BOS
	oggEOS       = ogg.EOS
	oggHeaderLen = ogg.HeaderLen
)

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
	crc := ogg.CRC(0, b[:22])
	crc = ogg.CRC(crc, []byte{0, 0, 0, 0})
	crc = ogg.CRC(crc, b[26:total])
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
