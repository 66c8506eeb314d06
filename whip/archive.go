package whip

import (
	"bufio"
	"fmt"
	"os"

	"github.com/loalang/loalang/internal/ogg"
)

// archive writes a live session's packets, untouched, to an Ogg Opus file
// (RFC 7845) with internal/ogg's writer, page by page.
type archive struct {
	f  *os.File
	bw *bufio.Writer
	w  *ogg.OpusWriter
}

// createArchive creates path (never overwriting) and writes the header
// pages of a mono stream.
func createArchive(path string, serial uint32) (*archive, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create archive %s: %w", path, err)
	}
	a := &archive{f: f, bw: bufio.NewWriter(f)}
	if a.w, err = ogg.NewOpusWriter(a.bw, serial, 1); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("write archive %s: %w", path, err)
	}
	return a, nil
}

// write adds one packet of the given duration in 48 kHz samples.
func (a *archive) write(pkt []byte, samples int) error { return a.w.Write(pkt, samples) }

// close writes the last page with the end-of-stream flag and syncs the
// file, so the archive survives a power cut right after the speech.
func (a *archive) close() error {
	err := a.w.Close(-1)
	if e := a.f.Sync(); e != nil && err == nil {
		err = e
	}
	if e := a.f.Close(); e != nil && err == nil {
		err = e
	}
	if err != nil {
		return fmt.Errorf("archive %s: %w", a.f.Name(), err)
	}
	return nil
}
