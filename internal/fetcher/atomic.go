package fetcher

import (
	"os"
	"path/filepath"

	"github.com/wasmxds/wasmxds/internal/atomicfile"
)

// writeIndexFiles replaces path, then path+prevSuffix, with b, each by an
// fsynced temp file renamed into place, then fsyncs the directory. The two
// copies are never mid-write together, so whatever tears or garbles one
// (a crash, a full disk, a stray edit) leaves the other whole.
func writeIndexFiles(tmpDir, path string, b []byte) error {
	for _, p := range []string{path, path + prevSuffix} {
		tmp, err := atomicfile.WriteTemp(tmpDir, "part-*", b, 0o644)
		if err != nil {
			return err
		}
		if err := os.Rename(tmp, p); err != nil {
			_ = os.Remove(tmp)
			return err
		}
	}
	return atomicfile.SyncDir(filepath.Dir(path))
}
