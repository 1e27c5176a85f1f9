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

// writeFileAtomic replaces path with b: temp file in tmpDir (same file
// system), fsync, rename, fsync of the parent directory.
func writeFileAtomic(tmpDir, path string, b []byte) error {
	tmp, err := writeTemp(tmpDir, b)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
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
