package fetcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
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
// into w.
func readFileModule(path string, max int64, w io.Writer) error {
	file, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	if err != nil {
		return err
	}
	defer file.Close()
	return extractModule(file, max, w)
}
