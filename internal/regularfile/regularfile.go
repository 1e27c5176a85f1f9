// Package regularfile opens files that must be regular files (modules,
// secrets) without ever blocking on something else at the path: a named
// pipe with no writer, a terminal or a device would hang an ordinary open
// or read, holding whatever waits on it.
package regularfile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrNotRegular is returned for a path that is not a regular file.
var ErrNotRegular = errors.New("not a regular file")

// ErrOutsideRoots is returned for a path outside every allowed root.
var ErrOutsideRoots = errors.New("outside the allowed roots")

// Open opens path for reading if it is a regular file (symlinks followed).
// The open never blocks: it is non-blocking, and the file is checked before
// anything is read.
func Open(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	return check(f)
}

// OpenInRoot opens name inside root as Open does; name may not lead out of
// root (see os.OpenInRoot).
func OpenInRoot(root, name string) (*os.File, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	f, err := r.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	return check(f)
}

func check(f *os.File) (*os.File, error) {
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !info.Mode().IsRegular() {
		f.Close()
		return nil, &fs.PathError{Op: "open", Path: f.Name(), Err: fmt.Errorf("%w: it is %s", ErrNotRegular, describe(info.Mode()))}
	}
	return f, nil
}

func describe(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "of mode " + m.String()
}

// ContextReader returns a reader of r that stops with ctx's error once ctx
// is done, so that a long copy is bounded by the caller's deadline.
func ContextReader(ctx context.Context, r io.Reader) io.Reader {
	return &ctxReader{ctx: ctx, r: r}
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Inside reports whether path, its symlinks resolved, is inside one of
// roots (always, when there are none).
func Inside(path string, roots []string) bool {
	_, _, _, ok := locate(path, roots)
	return len(roots) == 0 || ok
}

// OpenConfined opens path as Open does, confined to roots when there are
// any: the path is judged once its symlinks are resolved, and opened
// through os.Root, so that a symlink swapped in after the check cannot lead
// outside. roots must be absolute (see CleanRoots).
func OpenConfined(path string, roots []string) (*os.File, error) {
	if len(roots) == 0 {
		return Open(path)
	}
	root, rel, real, ok := locate(path, roots)
	if ok {
		return OpenInRoot(root, rel)
	}
	if real != path {
		path += " (resolving to " + real + ")"
	}
	return nil, fmt.Errorf("%s is %w %s", path, ErrOutsideRoots, strings.Join(roots, ", "))
}

// locate finds the root holding path once its symlinks (and the roots')
// are resolved, and path relative to it; real is where path resolves to.
func locate(path string, roots []string) (root, rel, real string, ok bool) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		real = path // judged by its name; opening it reports the error
	}
	for _, r := range roots {
		resolved, err := filepath.EvalSymlinks(r)
		if err != nil {
			continue
		}
		if rel, err := filepath.Rel(resolved, real); err == nil && filepath.IsLocal(rel) {
			return resolved, rel, real, true
		}
	}
	return "", "", real, false
}

// CleanRoots makes roots absolute and clean; an empty one is an error.
func CleanRoots(roots []string) ([]string, error) {
	out := make([]string, 0, len(roots))
	for _, r := range roots {
		if r == "" {
			return nil, errors.New("empty root directory")
		}
		abs, err := filepath.Abs(r)
		if err != nil {
			return nil, fmt.Errorf("root %s: %w", r, err)
		}
		out = append(out, abs)
	}
	return out, nil
}
