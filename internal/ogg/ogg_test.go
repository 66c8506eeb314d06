package ogg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// goldenPackets are packets of awkward sizes: 255 bytes needs a 0 lacing
// value, 600 and 3000 span several, 0 is a DTX packet; 130 of them fill
// several pages by count and by segments.
func goldenPackets() [][]byte {
	var pkts [][]byte
	for i := range 130 {
		n := []int{1, 254, 255, 256, 600, 0, 3000, 70, 71}[i%9]
		pkts = append(pkts, bytes.Repeat([]byte{byte(i + 1)}, n))
	}
	return pkts
}

// TestOpusWriterGolden pins the writer's bytes. The golden files were
// written by the two writers this package replaced (the media library's
// writeOggOpus, with its end trim, and the live archive's oggOpus, without),
// so stored clips and archives keep their exact bytes. UPDATE_GOLDEN=1
// rewrites them.
func TestOpusWriterGolden(t *testing.T) {
	for _, c := range []struct {
		file    string
		endTrim int64
	}{
		{"opus-trimmed.ogg", 130*960 - 500},
		{"opus-stream.ogg", -1},
	} {
		var buf bytes.Buffer
		w, err := NewOpusWriter(&buf, 0x1234abcd, 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range goldenPackets() {
			if err := w.Write(p, 960); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(c.endTrim); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", c.file)
		if os.Getenv("UPDATE_GOLDEN") == "1" {
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("%s: %d bytes differ from the golden %d bytes", c.file, buf.Len(), len(want))
		}
	}
}

// TestOpusWriterPages walks the pages of a few seconds of packets: capture
// pattern, CRC, sequence numbers, flags and granule positions (RFC 7845
// §4), each packet intact.
func TestOpusWriterPages(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewOpusWriter(&buf, 7, 1)
	if err != nil {
		t.Fatal(err)
	}
	pkt := bytes.Repeat([]byte{0xf8, 0xaa}, 150) // 300 bytes: 2 lacing values
	for range 120 {
		if err := w.Write(pkt, 960); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(-1); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()
	var pages, packets int
	var granule int64
	var flags byte
	for off := 0; off < len(raw); {
		if string(raw[off:off+4]) != "OggS" {
			t.Fatalf("no capture pattern at %d", off)
		}
		n := int(raw[off+26])
		size := HeaderLen + n
		for _, l := range raw[off+HeaderLen : off+HeaderLen+n] {
			size += int(l)
		}
		page := bytes.Clone(raw[off : off+size])
		want := binary.LittleEndian.Uint32(page[22:])
		clear(page[22:26])
		if got := CRC(0, page); got != want {
			t.Fatalf("page %d CRC %08x, want %08x", pages, got, want)
		}
		if seq := binary.LittleEndian.Uint32(page[18:]); seq != uint32(pages) {
			t.Fatalf("page %d has sequence number %d", pages, seq)
		}
		flags = page[5]
		if (flags&BOS != 0) != (pages == 0) {
			t.Fatalf("page %d flags %#x", pages, flags)
		}
		granule = int64(binary.LittleEndian.Uint64(page[6:]))
		switch pages {
		case 0:
			if !bytes.HasPrefix(page[HeaderLen+n:], []byte("OpusHead")) {
				t.Fatal("first page is not OpusHead")
			}
		case 1:
			if !bytes.HasPrefix(page[HeaderLen+n:], []byte("OpusTags")) {
				t.Fatal("second page is not OpusTags")
			}
		default:
			body := page[HeaderLen+n:]
			for i := 0; i < n; i += 2 {
				if !bytes.Equal(body[:300], pkt) {
					t.Fatalf("page %d: packet %d altered", pages, i/2)
				}
				body = body[300:]
				packets++
			}
			if granule != int64(packets)*960 {
				t.Fatalf("page %d granule %d after %d packets", pages, granule, packets)
			}
		}
		pages++
		off += size
	}
	if packets != 120 || flags&EOS == 0 || pages != 2+3 {
		t.Fatalf("%d pages, %d packets, last flags %#x; want 5 pages, 120 packets and EOS", pages, packets, flags)
	}
}

func TestOpusWriterRefusesHugePacket(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewOpusWriter(&buf, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(make([]byte, 255*255), 960); !errors.Is(err, ErrPacketTooLarge) {
		t.Fatalf("65025-byte packet: %v, want ErrPacketTooLarge", err)
	}
	if err := w.Close(-1); !errors.Is(err, ErrPacketTooLarge) {
		t.Fatalf("Close after the error: %v", err)
	}
}

// TestOpusWriterFlushes checks a buffered file sees each page as it is
// written: a power cut loses at most the page being filled.
func TestOpusWriterFlushes(t *testing.T) {
	var file bytes.Buffer
	bw := &flushCounter{w: &file}
	w, err := NewOpusWriter(bw, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if bw.flushes != 1 {
		t.Fatalf("%d flushes after the headers, want 1", bw.flushes)
	}
	for range PacketsPerPage + 1 {
		w.Write([]byte{0xf8}, 960)
	}
	if bw.flushes != 2 {
		t.Fatalf("%d flushes after one full page, want 2", bw.flushes)
	}
	w.Close(-1)
	if bw.flushes != 3 {
		t.Fatalf("%d flushes after Close, want 3", bw.flushes)
	}
}

type flushCounter struct {
	w       *bytes.Buffer
	flushes int
}

func (f *flushCounter) Write(b []byte) (int, error) { return f.w.Write(b) }
func (f *flushCounter) Flush() error                { f.flushes++; return nil }
