// Package fsutil holds the file-system rules every optimctl writer follows: outputs appear
// atomically (temp file in the same folder, fsync, rename) or not at all, an input is never
// written over, and read-only views of large files come from copy-on-write mappings.
package fsutil

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// WriteAtomic creates path by calling write on a temp file beside it, then renames it into
// place. On any error the temp file is removed and an existing file at path is untouched.
func WriteAtomic(path string, write func(w io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = write(f); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err = os.Chmod(tmp, 0o644); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	syncDir(dir)
	return nil
}

// syncDir makes a rename in dir survive a crash. Best effort: some platforms cannot sync a
// folder, and the output is already in place.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// WriteFileAtomic is WriteAtomic for a byte slice.
func WriteFileAtomic(path string, data []byte) error {
	return WriteAtomic(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// ErrSameFile is returned by CheckNotSame when an output would overwrite an input.
var ErrSameFile = errors.New("output is the same file as the input; refusing to overwrite the input")

// CheckNotSame refuses an output path that names the input file (also through links).
func CheckNotSame(input, output string) error {
	ai, err1 := filepath.Abs(input)
	ao, err2 := filepath.Abs(output)
	if err1 == nil && err2 == nil && ai == ao {
		return fmt.Errorf("%s: %w", output, ErrSameFile)
	}
	si, err := os.Stat(input)
	if err != nil {
		return nil
	}
	so, err := os.Stat(output)
	if err != nil {
		return nil
	}
	if os.SameFile(si, so) {
		return fmt.Errorf("%s: %w", output, ErrSameFile)
	}
	return nil
}
