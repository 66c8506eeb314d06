// Package ogg writes Ogg pages (RFC 3533) and Ogg Opus streams (RFC 7845).
// It is the one Ogg writer of the daemon: the media library stores clips
// with it (broadcast/media) and live speech archives the received packets
// with it (whip). It uses the standard library only.
package ogg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Page header flags (RFC 3533 §6, header_type_flag).
const (
	// Continued marks a page whose first packet continues one begun on the
	// previous page.
	Continued = 0x01
	// BOS marks the first page of a logical stream.
	BOS = 0x02
	// EOS marks the last page of a logical stream.
	EOS = 0x04
)

// HeaderLen is the fixed part of a page header, before the segment table
// (RFC 3533 §6).
const HeaderLen = 27

// MaxSegments is the most lacing values one page can hold (the segment
// count is one byte, RFC 3533 §6).
const MaxSegments = 255

// ErrPacketTooLarge means a packet needs more lacing values than one page
// holds; the writers here never split a packet across pages.
var ErrPacketTooLarge = errors.New("ogg: packet too large for a page")

var crcTable = func() (t [256]uint32) {
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
	return t
}()

// CRC updates crc with b using Ogg's CRC-32: polynomial 0x04c11db7, initial
// value 0, no bit reflection and no final XOR (RFC 3533 §6, "CRC checksum").
// A page's checksum is CRC(0, page) computed with the checksum field zeroed.
func CRC(crc uint32, b []byte) uint32 {
	for _, c := range b {
		crc = crc<<8 ^ crcTable[byte(crc>>24)^c]
	}
	return crc
}

// LacingLen returns how many lacing values a packet of n bytes needs: one
// per full 255 bytes and a final one below 255 (RFC 3533 §6).
func LacingLen(n int) int { return n/255 + 1 }

// Writer writes the pages of one logical Ogg stream (RFC 3533).
type Writer struct {
	w      io.Writer
	serial uint32
	seq    uint32
	buf    []byte
}

// NewWriter returns a writer of the logical stream serial to w.
func NewWriter(w io.Writer, serial uint32) *Writer { return &Writer{w: w, serial: serial} }

// WritePage writes packets as one page with the given flags and granule
// position. Every packet ends on this page, so the page must fit within
// MaxSegments lacing values.
func (o *Writer) WritePage(flags byte, granule int64, packets ...[]byte) error {
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
	if len(lacing) > MaxSegments {
		return fmt.Errorf("%w: page would need %d lacing values", ErrPacketTooLarge, len(lacing))
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
	binary.LittleEndian.PutUint32(b[22:], CRC(0, b))
	o.buf = b
	o.seq++
	_, err := o.w.Write(b)
	return err
}
