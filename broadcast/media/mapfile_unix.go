//go:build unix

package media

import (
	"fmt"
	"os"
	"syscall"
)

// mapFile maps a spooled upload read-only, so the decoder reads it from the
// page cache instead of a copy on the Go heap: a 20 MiB upload costs no heap
// at all, and the kernel can drop its pages under memory pressure. The
// file is the library's own temporary file, never truncated while mapped.
// unmap must be called once the decoder is done; nothing it returned may
// point into data (decoders return fresh sample slices).
func mapFile(path string) (data []byte, unmap func() error, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := st.Size()
	if size <= 0 || size != int64(int(size)) {
		return nil, nil, fmt.Errorf("map %s: size %d", path, size)
	}
	data, err = syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("map %s: %w", path, err)
	}
	return data, func() error { return syscall.Munmap(data) }, nil
}
