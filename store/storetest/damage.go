package storetest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Damage kinds for Damage: the ways a store file is found broken after a
// power cut, a failing SD card or a careless copy.
const (
	Halved       = "halved"         // the second half of the file is gone
	OnePageShort = "one-page-short" // the last page is gone
	DataPages    = "data-pages"     // random bytes flipped in three leaf pages
	ZeroedPage   = "zeroed-page"    // one leaf page is all zeros
	LeafHeader   = "leaf-header"    // a leaf page's flags flipped
	BranchHeader = "branch-header"  // a branch page's element count flipped
	FreelistPage = "freelist"       // the freelist page flipped
	Meta0        = "meta0"          // the first meta page flipped (bbolt keeps a second)
	BothMetas    = "both-metas"     // both meta pages flipped
	Empty        = "empty"          // the file is there with 0 bytes
	Missing      = "missing"        // the file is gone
	// Value damages one byte inside a stored value so that the JSON is
	// still valid but a timestamp no longer parses: nothing structural
	// to see.
	Value = "value"
)

// DamageKinds lists every kind Damage knows, in a stable order.
var DamageKinds = []string{Halved, OnePageShort, DataPages, ZeroedPage, LeafHeader, BranchHeader, FreelistPage, Meta0, BothMetas, Value, Empty, Missing}

const pageSize = 4096

// Compact rewrites the bbolt file at path with bbolt's compaction, so that
// every page in it is reachable and each damage lands on live data.
func Compact(tb testing.TB, path string) {
	tb.Helper()
	src, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		tb.Fatal(err)
	}
	tmp := path + ".compact"
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	if err := bolt.Compact(dst, src, 1<<20); err != nil {
		tb.Fatal(err)
	}
	src.Close()
	// One more (empty) transaction, so the older meta page also describes
	// the whole compacted tree, as it does in a long-used file.
	if err := dst.Update(func(*bolt.Tx) error { return nil }); err != nil {
		tb.Fatal(err)
	}
	dst.Close()
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
}

// highWater reads the page count from the meta page with the newest
// transaction.
func highWater(path string) (int64, error) {
	hwm, _, err := newestMeta(path)
	return hwm, err
}

// newestMeta reads the page count and the freelist page from the meta
// page with the newest transaction.
func newestMeta(path string) (hwm int64, freelist int, err error) {
	raw := make([]byte, 2*pageSize)
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	if _, err := f.ReadAt(raw, 0); err != nil {
		return 0, 0, err
	}
	le := binary.LittleEndian
	m0, m1 := raw[16:], raw[pageSize+16:]
	m := m0
	if le.Uint64(m1[48:]) > le.Uint64(m0[48:]) {
		m = m1
	}
	return int64(le.Uint64(m[40:])), int(le.Uint64(m[32:])), nil
}

// Damage breaks the store file at path in the named way, choosing pages
// and bytes from seed so a run can be repeated. It returns what it did.
func Damage(path, kind string, seed uint64) (string, error) {
	rng := rand.New(rand.NewPCG(seed, 0x10a1a9))
	info, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	size := info.Size()
	switch kind {
	case Halved:
		return fmt.Sprintf("truncated %d → %d bytes", size, size/2), os.Truncate(path, size/2)
	case OnePageShort:
		// bbolt grows files in steps; cut the last page the meta counts.
		hwm, err := highWater(path)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("truncated %d → %d bytes (%d pages in use)", size, (hwm-1)*pageSize, hwm), os.Truncate(path, (hwm-1)*pageSize)
	case Empty:
		return "truncated to 0 bytes", os.Truncate(path, 0)
	case Missing:
		return "removed", os.Remove(path)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	pages := map[uint16][]int{}
	for id := 2; (id+1)*pageSize <= len(raw); id++ {
		p := raw[id*pageSize:]
		flags := binary.LittleEndian.Uint16(p[8:])
		pages[flags] = append(pages[flags], id)
		id += int(binary.LittleEndian.Uint32(p[12:])) // skip overflow pages
	}
	pick := func(flags uint16, what string) (int, error) {
		ids := pages[flags]
		if len(ids) == 0 {
			return 0, fmt.Errorf("damage %s: the file has no %s page", kind, what)
		}
		return ids[rng.IntN(len(ids))], nil
	}
	flip := func(off, span, n int) { // n random bytes in [off, off+span)
		for range n {
			raw[off+rng.IntN(span)] ^= byte(1 + rng.IntN(255))
		}
	}
	var did string
	switch kind {
	case DataPages:
		var ids []int
		for range 3 {
			id, err := pick(0x02, "leaf")
			if err != nil {
				return "", err
			}
			flip(id*pageSize+16, pageSize-16, 16)
			ids = append(ids, id)
		}
		did = fmt.Sprintf("flipped 16 bytes in each of leaf pages %v", ids)
	case ZeroedPage:
		id, err := pick(0x02, "leaf")
		if err != nil {
			return "", err
		}
		clear(raw[id*pageSize : (id+1)*pageSize])
		did = fmt.Sprintf("zeroed leaf page %d", id)
	case LeafHeader, BranchHeader, FreelistPage:
		flags, what := uint16(0x02), "leaf"
		if kind == BranchHeader {
			flags, what = 0x01, "branch"
		}
		id, err := pick(flags, what)
		if kind == FreelistPage {
			// Stale freelist pages are free; damage the live one.
			what = "freelist"
			_, id, err = newestMeta(path)
		}
		if err != nil {
			return "", err
		}
		// The leaf's flags, the branch's element count, the freelist's
		// whole header: each reaches a different check.
		from, to := 8, 16
		switch kind {
		case LeafHeader:
			from, to = 8, 10
		case BranchHeader:
			from, to = 10, 12
		}
		for i := from; i < to; i++ {
			raw[id*pageSize+i] ^= byte(1 + rng.IntN(255))
		}
		did = fmt.Sprintf("flipped header bytes %d-%d of %s page %d", from, to-1, what, id)
	case Value:
		at := bytes.Index(raw, []byte(`"created_at":"20`))
		if at < 0 {
			return "", fmt.Errorf("damage %s: no stored timestamp found", kind)
		}
		at += len(`"created_at":"`)
		raw[at] = 'x'
		did = fmt.Sprintf("one digit of a stored timestamp at byte %d made a letter", at)
	case Meta0:
		flip(16, 64, 8)
		did = "flipped 8 bytes in meta page 0"
	case BothMetas:
		flip(16, 64, 8)
		flip(pageSize+16, 64, 8)
		did = "flipped 8 bytes in each meta page"
	default:
		return "", fmt.Errorf("damage: unknown kind %q", kind)
	}
	return did, os.WriteFile(path, raw, 0o600)
}
