package fetcher

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
)

// fetchHTTP downloads an http(s) module: the body is the module or a
// tar/tar+gzip holding plugin.wasm.
func (f *Fetcher) fetchHTTP(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidReference, err)
	}
	req.Header.Set("User-Agent", "wasmxds")
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, classify(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: GET %s: %s", statusSentinel(resp.StatusCode), url, resp.Status)
	}
	if limit := archiveExpansion * f.maxSize; resp.ContentLength > limit {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, resp.ContentLength, limit)
	}
	b, err := extractModule(resp.Body, f.maxSize)
	if err != nil {
		return nil, classify(err)
	}
	return b, nil
}

// readFileModule reads a local module (or archive holding plugin.wasm).
func readFileModule(path string, max int64) ([]byte, error) {
	file, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	if err != nil {
		return nil, err
	}
	defer file.Close()
	return extractModule(file, max)
}
