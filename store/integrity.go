package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// CorruptError says why a store file failed the integrity check. The file
// was only read: a file that fails the check is never written.
type CorruptError struct {
	Path     string
	Problems []string // at most maxProblems, in the order found
	More     int      // problems found beyond those listed
}

const maxProblems = 8

// Error names the file and lists what is wrong with it.
func (e *CorruptError) Error() string {
	s := fmt.Sprintf("store file %s is damaged: %s", e.Path, strings.Join(e.Problems, "; "))
	if e.More > 0 {
		s += fmt.Sprintf(" (and %d more problems)", e.More)
	}
	return s
}

// Unwrap makes a CorruptError match ErrCorrupt.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

func (e *CorruptError) add(format string, args ...any) {
	if len(e.Problems) < maxProblems {
		e.Problems = append(e.Problems, fmt.Sprintf(format, args...))
	} else {
		e.More++
	}
}

func (e *CorruptError) err() error {
	if len(e.Problems) == 0 {
		return nil
	}
	return e
}

// Layout of a bbolt meta page (go.etcd.io/bbolt/internal/common/meta.go):
// a 16-byte page header, then magic, version, page size and flags (4 bytes
// each), the root bucket (8+8), the freelist, high-water and transaction
// ids (8 each) and an FNV-64a checksum of everything before it. bbolt
// writes it in native byte order; loalang runs on little-endian machines.
const (
	metaMagic      = 0xED0CDAED
	metaVersion    = 2
	metaOffset     = 16
	metaSumOffset  = metaOffset + 56
	metaPgidOffset = metaOffset + 40
	metaTxidOffset = metaOffset + 48
)

type metaPage struct {
	pageSize int64
	root     uint64
	pgid     int64
	txid     uint64
}

// readMeta decodes and validates the meta page at off.
func readMeta(f *os.File, off int64) (metaPage, error) {
	buf := make([]byte, metaSumOffset+8)
	if _, err := f.ReadAt(buf, off); err != nil {
		return metaPage{}, fmt.Errorf("read meta page at %d: %w", off, err)
	}
	le := binary.LittleEndian
	if le.Uint32(buf[metaOffset:]) != metaMagic {
		return metaPage{}, fmt.Errorf("meta page at %d: bad magic", off)
	}
	if le.Uint32(buf[metaOffset+4:]) != metaVersion {
		return metaPage{}, fmt.Errorf("meta page at %d: unknown version", off)
	}
	h := fnv.New64a()
	h.Write(buf[metaOffset:metaSumOffset])
	if h.Sum64() != le.Uint64(buf[metaSumOffset:]) {
		return metaPage{}, fmt.Errorf("meta page at %d: checksum mismatch", off)
	}
	return metaPage{pageSize: int64(le.Uint32(buf[metaOffset+8:])), root: le.Uint64(buf[metaOffset+16:]), pgid: int64(le.Uint64(buf[metaPgidOffset:])), txid: le.Uint64(buf[metaTxidOffset:])}, nil
}

// checkFile checks what bbolt takes on trust when it opens a file: that a
// meta page is valid and the file holds every page it names. A truncated
// file would otherwise be read past its end through the memory map, which
// is a fatal SIGBUS rather than a recoverable panic.
func checkFile(path string, size int64) error {
	ce := &CorruptError{Path: path}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if size < 2*int64(os.Getpagesize()) && size < 2*4096 {
		ce.add("file is %d bytes, smaller than bbolt's two meta pages", size)
		return ce
	}
	m0, err0 := readMeta(f, 0)
	pageSize := m0.pageSize
	if err0 != nil {
		pageSize = int64(os.Getpagesize())
	}
	m1, err1 := readMeta(f, pageSize)
	var m metaPage
	switch {
	case err0 != nil && err1 != nil:
		ce.add("both meta pages are invalid (%v; %v)", err0, err1)
		return ce
	case err0 != nil:
		m = m1
	case err1 != nil:
		m = m0
	case m1.txid > m0.txid:
		m = m1
	default:
		m = m0
	}
	if m.pageSize < 512 || m.pageSize&(m.pageSize-1) != 0 {
		ce.add("meta page names an impossible page size %d", m.pageSize)
		return ce
	}
	if want := m.pgid * m.pageSize; want > size {
		ce.add("file is truncated: it should hold %d pages (%d bytes) but has %d bytes", m.pgid, want, size)
		return ce
	}
	w := walker{f: f, pageSize: m.pageSize, hwm: uint64(m.pgid), seen: map[uint64]bool{}, ce: ce}
	w.page(m.root, 0)
	if w.readErr != nil {
		return fmt.Errorf("read %s: %w", path, w.readErr)
	}
	return ce.err()
}

// walker checks the tree structure from the file's bytes, with bounds
// checks, before bbolt reads it through its memory map: bbolt trusts page
// headers and element offsets, and following a damaged one out of the map
// is a fault no recover() catches.
type walker struct {
	f        io.ReaderAt
	readErr  error
	pageSize int64
	hwm      uint64
	seen     map[uint64]bool
	ce       *CorruptError
}

// Page layout (go.etcd.io/bbolt/internal/common/page.go): id u64, flags
// u16, count u16, overflow u32, then count 16-byte elements. A branch
// element is pos u32, ksize u32, child pgid u64; a leaf element is flags
// u32, pos u32, ksize u32, vsize u32. pos counts from the element itself.
const (
	pageHeader     = 16
	elemSize       = 16
	branchPage     = 0x01
	leafPage       = 0x02
	bucketLeafFlag = 0x01
	bucketHeader   = 16 // root pgid u64, sequence u64
	maxDepth       = 64
)

func (w *walker) page(id uint64, depth int) {
	if id < 2 || id >= w.hwm {
		w.ce.add("page %d: out of range (the file has %d pages)", id, w.hwm)
		return
	}
	if w.seen[id] {
		w.ce.add("page %d: referenced twice", id)
		return
	}
	w.seen[id] = true
	if depth > maxDepth {
		w.ce.add("page %d: tree deeper than %d", id, maxDepth)
		return
	}
	off := int64(id) * w.pageSize
	hdr := make([]byte, pageHeader)
	if _, err := w.f.ReadAt(hdr, off); err != nil {
		w.readErr = err
		return
	}
	le := binary.LittleEndian
	overflow := uint64(le.Uint32(hdr[12:]))
	if le.Uint64(hdr) != id {
		w.ce.add("page %d: header says page %d", id, le.Uint64(hdr))
		return
	}
	if id+overflow >= w.hwm {
		w.ce.add("page %d: %d overflow pages run past the end of the file", id, overflow)
		return
	}
	for i := uint64(1); i <= overflow; i++ {
		w.seen[id+i] = true
	}
	buf := make([]byte, int64(1+overflow)*w.pageSize)
	if _, err := w.f.ReadAt(buf, off); err != nil {
		w.readErr = err
		return
	}
	w.node(fmt.Sprintf("page %d", id), buf, depth)
}

// node checks one branch or leaf node held in buf (a page with its
// overflow, or an inline bucket's page).
func (w *walker) node(where string, buf []byte, depth int) {
	le := binary.LittleEndian
	if len(buf) < pageHeader {
		w.ce.add("%s: shorter than a page header", where)
		return
	}
	flags, count := le.Uint16(buf[8:]), int(le.Uint16(buf[10:]))
	if flags != branchPage && flags != leafPage {
		w.ce.add("%s: not a branch or leaf page (flags %#x)", where, flags)
		return
	}
	if pageHeader+count*elemSize > len(buf) {
		w.ce.add("%s: %d elements do not fit in it", where, count)
		return
	}
	var prev []byte
	for i := range count {
		e := pageHeader + i*elemSize
		var pos, ksize, vsize int
		if flags == branchPage {
			pos, ksize = int(le.Uint32(buf[e:])), int(le.Uint32(buf[e+4:]))
		} else {
			pos, ksize, vsize = int(le.Uint32(buf[e+4:])), int(le.Uint32(buf[e+8:])), int(le.Uint32(buf[e+12:]))
		}
		start := e + pos
		if pos < 0 || ksize < 0 || vsize < 0 || start+ksize+vsize > len(buf) || start < 0 {
			w.ce.add("%s: element %d points outside the page", where, i)
			return
		}
		key := buf[start : start+ksize]
		if prev != nil && bytes.Compare(prev, key) >= 0 {
			w.ce.add("%s: keys out of order at element %d", where, i)
			return
		}
		prev = key
		if flags == branchPage {
			w.page(le.Uint64(buf[e+8:]), depth+1)
			continue
		}
		if le.Uint32(buf[e:])&bucketLeafFlag == 0 {
			continue
		}
		val := buf[start+ksize : start+ksize+vsize]
		if len(val) < bucketHeader {
			w.ce.add("%s: bucket %q has a short header", where, printable(key))
			return
		}
		if root := le.Uint64(val); root != 0 {
			w.page(root, depth+1)
		} else {
			w.node(fmt.Sprintf("inline bucket %q in %s", printable(key), where), val[bucketHeader:], depth+1)
		}
	}
}

// Verify checks the store file at path without ever writing to it: the
// meta pages and file length, bbolt's own consistency check (every page
// reachable once, no page both used and free, keys in order), the schema
// key and that every value decodes as JSON. A damaged file returns a
// *CorruptError (errors.Is ErrCorrupt); a panic inside bbolt on a damaged
// page becomes one too. A missing file returns an error matching
// os.ErrNotExist and an empty one ErrEmpty.
func Verify(path string, lockTimeout time.Duration) (err error) {
	info, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("verify store %s: %w", path, err)
	}
	if info.Size() == 0 {
		return fmt.Errorf("verify store %s: %w", path, ErrEmpty)
	}
	if err := checkFile(path, info.Size()); err != nil {
		return err
	}
	defer recoverCorrupt(path, &err)
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout, ReadOnly: true})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return fmt.Errorf("verify store %s: %w", path, ErrLocked)
	}
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("verify store %s: %w", path, err)
		}
		ce := &CorruptError{Path: path}
		ce.add("bbolt cannot open it: %v", err)
		return ce
	}
	defer b.Close()
	return b.View(func(tx *bolt.Tx) error { return checkTx(path, tx) })
}

// checkTx is the consistency check on an open transaction.
func checkTx(path string, tx *bolt.Tx) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer recoverCorrupt(path, &err)
	ce := &CorruptError{Path: path}
	for err := range tx.Check() {
		// bbolt reports a page it could not read as "panic: ...".
		ce.add("%s", strings.TrimPrefix(err.Error(), "panic: "))
	}
	if len(ce.Problems) > 0 {
		return ce
	}
	m := tx.Bucket([]byte(meta))
	if m == nil {
		if isEmptyTx(tx) {
			return ErrEmpty // initialised by bbolt, but the first migration never committed
		}
		ce.add("bucket %s is missing", meta)
		return ce
	}
	if raw := m.Get([]byte("schema")); len(raw) != 8 {
		ce.add("the schema key is missing or malformed")
	}
	err = tx.ForEach(func(name []byte, b *bolt.Bucket) error {
		if string(name) == meta {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				return nil // a nested bucket; loalang has none
			}
			if !json.Valid(v) {
				ce.add("bucket %s key %q: the value is not valid JSON", name, printable(k))
			}
			return nil
		})
	})
	if err != nil {
		ce.add("walk buckets: %v", err)
	}
	return ce.err()
}

func isEmptyTx(tx *bolt.Tx) bool {
	k, _ := tx.Cursor().First()
	return k == nil
}

// IsEmpty reports whether the store file at path holds no data: it is
// missing, has 0 bytes, or has bbolt's meta pages but no bucket (a first
// start that was cut off before its first transaction). It only reads.
func IsEmpty(path string, lockTimeout time.Duration) (empty bool, err error) {
	info, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	if info.Size() == 0 {
		return true, nil
	}
	if checkFile(path, info.Size()) != nil {
		return false, nil // damaged: Open says how
	}
	defer func() {
		if recover() != nil {
			empty, err = false, nil
		}
	}()
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout, ReadOnly: true})
	if err != nil {
		return false, nil
	}
	defer b.Close()
	b.View(func(tx *bolt.Tx) error { empty = isEmptyTx(tx); return nil })
	return empty, nil
}

// printable shows a key for a message: text keys as they are, binary ones
// (the audit trail's timestamps) in hex.
func printable(k []byte) string {
	for _, c := range k {
		if c < 0x20 || c > 0x7e {
			return fmt.Sprintf("%x", k)
		}
	}
	return string(k)
}

// recoverCorrupt turns a panic inside bbolt, which is how bbolt reacts to
// many kinds of damaged page, into a CorruptError.
func recoverCorrupt(path string, err *error) {
	if r := recover(); r != nil {
		ce := &CorruptError{Path: path}
		ce.add("bbolt failed reading it: %v", r)
		*err = ce
	}
}

// noSpace marks a write that failed because the disk is full, so callers
// can tell it apart (507 Insufficient Storage, RFC 4918 §11.5) and retry.
func noSpace(err error) error {
	if err == nil || errors.Is(err, ErrNoSpace) {
		return err
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}
