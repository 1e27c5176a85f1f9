package fetcher

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/flate"
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

// extractModule writes the module in r to w: r is either the module
// itself, or a tar (optionally gzip-compressed) holding plugin.wasm at its
// root. max caps the module size; r may be up to archiveExpansion×max
// bytes, and so may a decompressed archive. Nothing is buffered beyond
// small copy buffers, so the caps hold while streaming.
func extractModule(r io.Reader, max int64, w io.Writer) error {
	limit := archiveExpansion * max
	br := bufio.NewReaderSize(newCapReader(r, limit, "input"), 4096)
	head, _ := br.Peek(512)
	if bytes.HasPrefix(head, gzipMagic) {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("%w: bad gzip stream: %w", ErrNotWasm, err)
		}
		defer gz.Close()
		inner := newCapReader(gzipErrors{gz}, limit, "decompressed archive")
		return extractUncompressed(bufio.NewReaderSize(inner, 4096), max, w)
	}
	return extractUncompressed(br, max, w)
}

func extractUncompressed(br *bufio.Reader, max int64, w io.Writer) error {
	head, _ := br.Peek(512)
	switch {
	case isWasm(head):
		return copyCapped(w, br, max)
	case isTar(head):
		return findInTar(tar.NewReader(br), max, w)
	}
	return errUnrecognized
}

func isTar(head []byte) bool {
	return len(head) >= 262 && string(head[257:262]) == "ustar"
}

// findInTar writes plugin.wasm from the archive root ("plugin.wasm",
// "./plugin.wasm" or "/plugin.wasm") to w.
func findInTar(tr *tar.Reader, max int64, w io.Writer) error {
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return errNoPluginFile
		}
		if err != nil {
			return fmt.Errorf("%w: bad tar archive: %w", ErrNotWasm, err)
		}
		name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		switch {
		case name == ".wh."+pluginFile:
			return errWhiteout
		case name != pluginFile:
			continue
		case hdr.Typeflag != tar.TypeReg:
			return fmt.Errorf("%w: %s in archive is not a regular file", ErrNotWasm, pluginFile)
		case hdr.Size > max:
			return fmt.Errorf("%w: %s is %d bytes, limit %d", ErrTooLarge, pluginFile, hdr.Size, max)
		}
		head := make([]byte, len(wasmHeader))
		n, err := io.ReadFull(tr, head)
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: bad tar archive: %w", ErrNotWasm, err)
		}
		if !isWasm(head[:n]) {
			return fmt.Errorf("%w: %s lacks the Wasm magic number and version 1 header", ErrNotWasm, pluginFile)
		}
		return copyCapped(w, io.MultiReader(bytes.NewReader(head), tr), max)
	}
}

// copyCapped copies r to w to the end, failing with ErrTooLarge past max
// bytes.
func copyCapped(w io.Writer, r io.Reader, max int64) error {
	n, err := io.Copy(w, io.LimitReader(r, max+1))
	if err != nil {
		return err
	}
	if n > max {
		return fmt.Errorf("%w: more than %d bytes (the module size limit)", ErrTooLarge, max)
	}
	return nil
}

// gzipErrors marks corrupt compressed data as ErrNotWasm; the errors of
// the reader underneath (a network read) pass unchanged.
type gzipErrors struct{ r io.Reader }

func (g gzipErrors) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	var corrupt flate.CorruptInputError
	if errors.As(err, &corrupt) || errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) {
		err = fmt.Errorf("%w: bad gzip stream: %w", ErrNotWasm, err)
	}
	return n, err
}

// capReader fails with ErrTooLarge once more than limit bytes were read,
// instead of silently truncating.
type capReader struct {
	r     io.Reader
	n     int64 // bytes left, plus one to tell "exactly limit" from "more"
	limit int64
	what  string
}

func newCapReader(r io.Reader, limit int64, what string) *capReader {
	return &capReader{r: r, n: limit + 1, limit: limit, what: what}
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, fmt.Errorf("%w: %s exceeds %d bytes", ErrTooLarge, c.what, c.limit)
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	if c.n <= 0 && err == nil {
		err = fmt.Errorf("%w: %s exceeds %d bytes", ErrTooLarge, c.what, c.limit)
	}
	return n, err
}
