package fetcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/wasmxds/wasmxds/internal/regularfile"
)

// fetchHTTP downloads an http(s) module into w: the body is the module or
// a tar/tar+gzip holding plugin.wasm.
func (f *Fetcher) fetchHTTP(ctx context.Context, url string, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidReference, err)
	}
	req.Header.Set("User-Agent", "wasmxds")
	resp, err := f.client.Do(req)
	if err != nil {
		return classify(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: GET %s: %s", statusSentinel(resp.StatusCode), url, resp.Status)
	}
	if limit := archiveExpansion * f.maxSize; resp.ContentLength > limit {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, resp.ContentLength, limit)
	}
	return classify(extractModule(resp.Body, f.maxSize, w))
}

// readFileModule copies a local module (or the plugin.wasm of an archive)
// into w. Only a regular file is read (a named pipe or device would block
// the pull), and the copy stops when ctx, bounded by the pull timeout, is
// done.
func (f *Fetcher) readFileModule(ctx context.Context, path string, w io.Writer) error {
	file, err := f.openFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.Is(err, regularfile.ErrNotRegular):
		return fmt.Errorf("%w: %w", ErrUnsupported, err)
	case err != nil:
		return err
	}
	defer file.Close()
	return extractModule(regularfile.ContextReader(ctx, file), f.maxSize, w)
}

// openFile opens path, confined to the file roots when there are any. The
// path is checked once its symlinks are resolved, and opened through
// os.Root, so a symlink swapped in after the check cannot lead outside.
func (f *Fetcher) openFile(path string) (*os.File, error) {
	if len(f.fileRoots) == 0 {
		return regularfile.Open(path)
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		real = path // judged by its name; opening it reports the error
	}
	for _, root := range f.fileRoots {
		r, err := filepath.EvalSymlinks(root)
		if err != nil {
			continue
		}
		if rel, err := filepath.Rel(r, real); err == nil && filepath.IsLocal(rel) {
			return regularfile.OpenInRoot(r, rel)
		}
	}
	if real != path {
		path += " (resolving to " + real + ")"
	}
	return nil, fmt.Errorf("%w: file %s is outside the allowed file roots %s",
		ErrRefused, path, strings.Join(f.fileRoots, ", "))
}

// cleanRoots makes the file roots absolute and clean.
func cleanRoots(roots []string) ([]string, error) {
	out := make([]string, 0, len(roots))
	for _, r := range roots {
		if r == "" {
			return nil, errors.New("empty file root")
		}
		abs, err := filepath.Abs(r)
		if err != nil {
			return nil, fmt.Errorf("file root %s: %w", r, err)
		}
		out = append(out, abs)
	}
	return out, nil
}
