package whip

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

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

// Archive retention defaults (Config.ArchiveKeep, Config.ArchiveMaxBytes):
// a live speech archive is a record of what went on air, kept as long as
// the broadcast log's usual horizon and capped so that it can never fill
// the data disk. At Opus's ~16–32 kbit/s a minute is 0.1–0.2 MB, so the
// cap holds some 100 hours of speech.
const (
	DefaultArchiveKeep     = 180 * 24 * time.Hour
	DefaultArchiveMaxBytes = 1 << 30
)

// pruneArchive deletes the archives in dir older than keep, then the
// oldest ones until the rest fit in maxBytes; the files named in active
// (sessions still writing) are never deleted. It returns how many files
// it deleted; an unreadable directory or a file it cannot delete is an
// error, reported by the caller.
func pruneArchive(dir string, keep time.Duration, maxBytes int64, now time.Time, active map[string]bool) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("prune archive %s: %w", dir, err)
	}
	type file struct {
		name string
		mod  time.Time
		size int64
	}
	var files []file
	var total int64
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".opus") || active[e.Name()] {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		files = append(files, file{e.Name(), info.ModTime(), info.Size()})
		total += info.Size()
	}
	slices.SortFunc(files, func(a, b file) int { return a.mod.Compare(b.mod) })
	deleted := 0
	var errs []error
	for _, f := range files {
		if now.Sub(f.mod) <= keep && total <= maxBytes {
			break
		}
		if err := os.Remove(filepath.Join(dir, f.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		total -= f.size
		deleted++
	}
	if err := errors.Join(errs...); err != nil {
		return deleted, fmt.Errorf("prune archive %s: %w", dir, err)
	}
	return deleted, nil
}
