package catalog

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Size limits: spec files are small; anything bigger is a mistake, and
// non-YAML files are only read to warn about misnamed specs.
const (
	maxSpecSize  = 8 << 20
	maxSniffSize = 1 << 20
)

// sourceFile is one file found under the config directory that may
// contribute documents or errors.
type sourceFile struct {
	rel  string // slash-separated path relative to the root, as walked
	dir  string // absolute directory holding the file
	data []byte
	// parsed is set when the outcome is known without parsing YAML
	// (unreadable, too large, or a misnamed spec).
	parsed *parsedFile
}

func (sf sourceFile) hash() [32]byte {
	if sf.parsed != nil {
		return sha256.Sum256([]byte(fmt.Sprint(sf.parsed.errs)))
	}
	return sha256.Sum256(append([]byte("yaml\x00"), sf.data...))
}

func (sf sourceFile) parse() parsedFile {
	if sf.parsed != nil {
		return *sf.parsed
	}
	return parseFile(sf.rel, sf.dir, sf.data)
}

// scanner walks the config tree. Hidden entries (leading '.') are skipped:
// editors' swap files, and Kubernetes ConfigMap internals (..data and the
// ..<timestamp> directories), whose files are loaded exactly once through
// the top-level symlinks. Symlinks are followed, with a guard against loops.
type scanner struct {
	root    string // absolute
	log     *slog.Logger
	onDir   func(path string) // called before a directory is listed
	include func(rel string) bool
	visited map[string]bool
	files   []sourceFile
}

func (s *scanner) scan() error {
	s.visited = map[string]bool{}
	info, err := os.Stat(s.root)
	if err != nil {
		return fmt.Errorf("config directory: %w", err)
	}
	if !info.IsDir() {
		return fmt.Errorf("config directory %s is not a directory", s.root)
	}
	return s.walk(s.root, "")
}

func (s *scanner) walk(abs, rel string) error {
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		if s.visited[real] {
			return nil
		}
		s.visited[real] = true
	}
	if s.onDir != nil {
		s.onDir(abs)
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return fmt.Errorf("reading %s: %w", abs, err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		s.visit(filepath.Join(abs, e.Name()), path.Join(rel, e.Name()))
	}
	return nil
}

func (s *scanner) visit(abs, rel string) {
	info, err := os.Stat(abs) // follows symlinks
	if err != nil {
		// Dangling symlinks appear briefly during ConfigMap updates.
		s.log.Debug("skipping unreadable entry", "path", rel, "err", err)
		return
	}
	switch {
	case info.IsDir():
		if err := s.walk(abs, rel); err != nil {
			s.fail(abs, rel, "cannot read directory: "+unwrapPathErr(err))
		}
	case info.Mode().IsRegular():
		if s.include == nil || s.include(rel) {
			s.read(abs, rel, info.Size())
		}
	}
}

func (s *scanner) fail(abs, rel, msg string) {
	pf := parsedFile{errs: []SpecError{{File: rel, Line: 1, Message: msg}}}
	s.files = append(s.files, sourceFile{rel: rel, dir: filepath.Dir(abs), parsed: &pf})
}

func (s *scanner) read(abs, rel string, size int64) {
	yamlFile := isYAMLName(rel)
	switch {
	case !yamlFile && size > maxSniffSize:
		return
	case yamlFile && size > maxSpecSize:
		s.fail(abs, rel, fmt.Sprintf("file is larger than %d MiB; spec files are expected to be small", maxSpecSize>>20))
		return
	}
	data, err := os.ReadFile(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return // removed while we were walking; the next scan settles it
	case err != nil:
		s.fail(abs, rel, "cannot read file: "+unwrapPathErr(err))
	case yamlFile:
		s.files = append(s.files, sourceFile{rel: rel, dir: filepath.Dir(abs), data: data})
	default:
		if errs := sniffForeign(rel, data); errs != nil {
			s.files = append(s.files, sourceFile{rel: rel, dir: filepath.Dir(abs), parsed: &parsedFile{errs: errs}})
		}
	}
}

func unwrapPathErr(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
