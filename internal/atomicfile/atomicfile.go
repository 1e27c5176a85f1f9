// Package atomicfile replaces files so that a crash leaves either the old or
// the new content, never a torn file: the content goes to a temp file that
// is fsynced and then renamed into place, and the directory is fsynced so
// the rename itself survives.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteFile replaces path with data by a temp file in path's directory.
// The file gets mode perm exactly (the umask does not narrow it). The
// directory must exist. On error path keeps its old content, no temp file
// is left behind, and the error names path.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := WriteTemp(dir, ".tmp-"+filepath.Base(path)+"-*", data, perm)
	if err == nil {
		if err = os.Rename(tmp, path); err != nil {
			_ = os.Remove(tmp)
		}
	}
	if err == nil {
		err = SyncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// WriteTemp writes data to a new file in dir, named after pattern as by
// os.CreateTemp, and finishes it with SyncClose, ready to be renamed into
// place. It returns the file's name; on error no file is left behind.
func WriteTemp(dir, pattern string, data []byte, perm os.FileMode) (string, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err != nil {
		_ = f.Close()
	} else {
		err = SyncClose(f, perm)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// SyncClose fsyncs f, sets its mode to perm and closes it, so that a later
// rename publishes complete content even across a crash. f is closed
// whichever step fails.
func SyncClose(f *os.File, perm os.FileMode) error {
	err := f.Sync()
	if err == nil {
		err = f.Chmod(perm)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Rename moves from to to, then fsyncs to's directory so that the rename
// survives a crash.
func Rename(from, to string) error {
	if err := os.Rename(from, to); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(to))
}

// SyncDir fsyncs directory dir, which makes the renames into it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
