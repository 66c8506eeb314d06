// Package atomicfile replaces files so that a reader, or a power cut, sees
// either the old content or the new one, never a part of it: the village
// hall's mini-PC loses power as a matter of course.
package atomicfile

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Write writes what fill produces to a temporary file beside path
// (".<name>.*.tmp"), syncs it, gives it perm, renames it over path and
// syncs the directory, so the rename itself survives a power cut. On any
// failure (a full disk, say) the temporary file is removed and path is
// left as it was.
func Write(path string, perm os.FileMode, fill func(io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("write %s: %w", path, err)
		}
	}()
	if err = fill(f); err != nil {
		return err
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// WriteBytes is Write for content already in memory.
func WriteBytes(path string, perm os.FileMode, data []byte) error {
	return Write(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteIfChanged is WriteBytes that leaves a file already holding data
// alone, so a start that changes nothing writes nothing (and can start on
// a full disk).
func WriteIfChanged(path string, perm os.FileMode, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	return WriteBytes(path, perm, data)
}
