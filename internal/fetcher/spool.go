package fetcher

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/wasmxds/wasmxds/internal/atomicfile"
)

// spool is a module being downloaded: its bytes go to a temp file in the
// cache's tmp directory while being hashed, so a pull holds no more than a
// copy buffer in memory until the size cap has been enforced.
type spool struct {
	cache     *cache
	file      *os.File
	name      string
	hash      hash.Hash
	size      int64
	committed bool
}

// newSpool creates the temp file, recreating the tmp directory if needed so
// that a cache directory that became writable again recovers.
func (c *cache) newSpool() (*spool, error) {
	if err := os.MkdirAll(c.tmpDir(), 0o755); err != nil {
		return nil, c.writeFailed(fmt.Errorf("create cache directory: %w", err))
	}
	file, err := os.CreateTemp(c.tmpDir(), "part-*")
	if err != nil {
		return nil, c.writeFailed(fmt.Errorf("create temp file: %w", err))
	}
	return &spool{cache: c, file: file, name: file.Name(), hash: sha256.New()}, nil
}

// Write stores and hashes p. Its errors are the cache's, never the
// source's, and say so with ErrCacheWrite.
func (s *spool) Write(p []byte) (int, error) {
	n, err := s.file.Write(p)
	s.hash.Write(p[:n])
	s.size += int64(n)
	if err != nil {
		return n, s.cache.writeFailed(err)
	}
	return n, nil
}

// reset empties the spool for another attempt (the next layer of an image).
func (s *spool) reset() error {
	if err := s.file.Truncate(0); err != nil {
		return s.cache.writeFailed(err)
	}
	if _, err := s.file.Seek(0, io.SeekStart); err != nil {
		return s.cache.writeFailed(err)
	}
	s.hash.Reset()
	s.size = 0
	return nil
}

// sum is the sha256 hex of what was written.
func (s *spool) sum() string { return hex.EncodeToString(s.hash.Sum(nil)) }

// contents reads the spooled module back, once it passed the size cap.
func (s *spool) contents() ([]byte, error) {
	b := make([]byte, s.size)
	if _, err := io.ReadFull(io.NewSectionReader(s.file, 0, s.size), b); err != nil {
		return nil, s.cache.writeFailed(fmt.Errorf("read back %s: %w", s.name, err))
	}
	return b, nil
}

// finish makes the content durable and readable before it is renamed into
// place.
func (s *spool) finish() error {
	return atomicfile.SyncClose(s.file, 0o644)
}

// discard removes the temp file unless it was committed.
func (s *spool) discard() {
	if s.committed {
		return
	}
	_ = s.file.Close()
	_ = os.Remove(s.name)
}
