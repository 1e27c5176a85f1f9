package fetcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"

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

// openFile opens path, confined to the file roots when there are any (see
// regularfile.OpenConfined).
func (f *Fetcher) openFile(path string) (*os.File, error) {
	file, err := regularfile.OpenConfined(path, f.fileRoots)
	if errors.Is(err, regularfile.ErrOutsideRoots) {
		return nil, fmt.Errorf("%w: file %w", ErrRefused, err)
	}
	return file, err
}
