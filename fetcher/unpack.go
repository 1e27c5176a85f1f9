package fetcher

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// pluginFile is the file a compat image carries its module in.
const pluginFile = "plugin.wasm"

// archiveExpansion bounds how many decompressed bytes an archive may make us
// read, relative to MaxModuleSize, so a small gzip bomb cannot keep a pull busy.
const archiveExpansion = 4

var (
	errNoPluginFile = fmt.Errorf("%w: no %s in archive", ErrNotFound, pluginFile)
	errUnrecognized = fmt.Errorf("%w: content is neither a Wasm module nor a tar or tar+gzip archive holding %s",
		ErrNotWasm, pluginFile)
	errWhiteout = fmt.Errorf("%w: %s deleted by a whiteout in a higher layer", ErrNotFound, pluginFile)
	gzipMagic   = []byte{0x1f, 0x8b}
)

// extractModule returns the module in r: r is either the module itself, or
// a tar (optionally gzip-compressed) holding plugin.wasm at its root. max
// caps the module size.
func extractModule(r io.Reader, max int64) ([]byte, error) {
	br := bufio.NewReaderSize(r, 4096)
	head, _ := br.Peek(512)
	if bytes.HasPrefix(head, gzipMagic) {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%w: bad gzip stream: %w", ErrNotWasm, err)
		}
		defer gz.Close()
		limit := archiveExpansion*max + 1<<20
		inner := &capReader{r: gz, n: limit, limit: limit}
		return extractUncompressed(bufio.NewReaderSize(inner, 4096), max)
	}
	return extractUncompressed(br, max)
}

func extractUncompressed(br *bufio.Reader, max int64) ([]byte, error) {
	head, _ := br.Peek(512)
	switch {
	case isWasm(head):
		return readCapped(br, max)
	case isTar(head):
		return findInTar(tar.NewReader(br), max)
	}
	return nil, errUnrecognized
}

func isTar(head []byte) bool {
	return len(head) >= 262 && string(head[257:262]) == "ustar"
}

// findInTar returns plugin.wasm from the archive root ("plugin.wasm",
// "./plugin.wasm" or "/plugin.wasm").
func findInTar(tr *tar.Reader, max int64) ([]byte, error) {
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, errNoPluginFile
		}
		if err != nil {
			return nil, fmt.Errorf("%w: bad tar archive: %w", ErrNotWasm, err)
		}
		name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		switch {
		case name == ".wh."+pluginFile:
			return nil, errWhiteout
		case name != pluginFile:
			continue
		case hdr.Typeflag != tar.TypeReg:
			return nil, fmt.Errorf("%w: %s in archive is not a regular file", ErrNotWasm, pluginFile)
		case hdr.Size > max:
			return nil, fmt.Errorf("%w: %s is %d bytes, limit %d", ErrTooLarge, pluginFile, hdr.Size, max)
		}
		b, err := readCapped(tr, max)
		if err != nil {
			return nil, err
		}
		if !isWasm(b) {
			return nil, fmt.Errorf("%w: %s lacks the Wasm magic number and version 1 header", ErrNotWasm, pluginFile)
		}
		return b, nil
	}
}

// readCapped reads r to the end, failing with ErrTooLarge past max bytes.
func readCapped(r io.Reader, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, max)
	}
	return b, nil
}

// capReader fails with ErrTooLarge instead of silently truncating.
type capReader struct {
	r        io.Reader
	n, limit int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, fmt.Errorf("%w: archive expands past %d bytes", ErrTooLarge, c.limit)
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	return n, err
}
