package fetcher

import (
	"fmt"
	"os"
	"path/filepath"
)

// writeTemp writes b to a new file in dir and fsyncs it, so that a later
// rename publishes complete content even across a crash.
func writeTemp(dir string, b []byte) (string, error) {
	f, err := os.CreateTemp(dir, "part-*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	_, werr := f.Write(b)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(name, 0o644)
	}
	if werr != nil {
		_ = os.Remove(name)
		return "", werr
	}
	return name, nil
}

// writeIndexFiles replaces path, then path+prevSuffix, with b, each by an
// fsynced temp file renamed into place, then fsyncs the directory. The two
// copies are never mid-write together, so whatever tears or garbles one
// (a crash, a full disk, a stray edit) leaves the other whole.
func writeIndexFiles(tmpDir, path string, b []byte) error {
	for _, p := range []string{path, path + prevSuffix} {
		tmp, err := writeTemp(tmpDir, b)
		if err != nil {
			return err
		}
		if err := os.Rename(tmp, p); err != nil {
			_ = os.Remove(tmp)
			return err
		}
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
