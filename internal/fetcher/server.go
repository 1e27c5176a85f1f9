package fetcher

import (
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/wasmxds/wasmxds/internal/modref"
)

// ModulePathPrefix is the URL path under which Handler serves modules:
// <prefix><sha256 hex>.
const ModulePathPrefix = "/modules/sha256/"

// Handler serves GET and HEAD ModulePathPrefix+<hex> for modules in the
// in-use set (see SetInUse), and 404 for anything else (503 with
// Retry-After for a digest not in use when Options.OnUnknown is set).
// Content never changes for a digest, so responses carry a strong ETag and
// immutable caching headers; If-None-Match is honoured, ranges are not
// (Envoy never asks for them). No response ever carries the whole of a file
// that does not match its name: a GET is hashed as it is sent and cut
// before its last bytes on a mismatch, and a file whose
// identity, size or mtime changed since it was verified is hashed before
// anything is sent. A file that no longer matches its name is quarantined
// (its references pull again) and its later requests are answered with
// 503 until a Resolve brings it back.
func (f *Fetcher) Handler() http.Handler {
	return http.HandlerFunc(f.serveModule)
}

func (f *Fetcher) serveModule(w http.ResponseWriter, r *http.Request) {
	code := f.serveModuleCode(w, r)
	f.metrics.requests.WithLabelValues(strconv.Itoa(code)).Inc()
}

func (f *Fetcher) serveModuleCode(w http.ResponseWriter, r *http.Request) int {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return http.StatusMethodNotAllowed
	}
	hex, ok := strings.CutPrefix(r.URL.Path, ModulePathPrefix)
	if !ok {
		http.NotFound(w, r)
		return http.StatusNotFound
	}
	if !modref.ValidHex(hex) {
		http.Error(w, "module path must end in 64 lowercase hex digits", http.StatusBadRequest)
		return http.StatusBadRequest
	}
	if !f.cache.isInUse(hex) {
		return f.unknownModule(w, r, hex)
	}
	// Every GET sends the whole module, hashed as it streams (see
	// verifyingReader): Envoy never asks for ranges, and a range could only
	// be vouched for by hashing the whole file first, for every request.
	r.Header.Del("Range")
	r.Header.Del("If-Range")
	whole := r.Method == http.MethodGet
	file, code := f.openServable(hex)
	if file == nil {
		if code == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "5")
		}
		http.Error(w, http.StatusText(code), code)
		return code
	}
	defer file.Close()
	h := w.Header()
	h.Set("Content-Type", "application/wasm")
	h.Set("ETag", `"sha256:`+hex+`"`)
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("X-Content-Type-Options", "nosniff")
	cw := &countingWriter{ResponseWriter: w, code: http.StatusOK}
	var content io.ReadSeeker = file
	var vr *verifyingReader
	if whole {
		if vr, code = f.newVerifyingReader(hex, file); vr == nil {
			http.Error(w, http.StatusText(code), code)
			return code
		}
		content = vr
	}
	http.ServeContent(cw, r, "", time.Time{}, content)
	f.metrics.servedBytes.Add(float64(cw.n))
	if vr != nil && vr.corrupt != nil {
		// The response was cut before its last bytes: the client sees a
		// short body, never the whole of a file that is not the digest.
		return http.StatusServiceUnavailable
	}
	if fn := f.opts.OnServed; fn != nil && vr != nil && vr.verified && cw.code == http.StatusOK && cw.n == vr.size {
		fn(hex, r.RemoteAddr)
	}
	return cw.code
}

// unknownRetryAfter is what a client asking for a digest not in use is told
// to wait, in seconds: about one registry round trip for the resolution the
// request sets off.
const unknownRetryAfter = "1"

// unknownModule answers a request for a digest not in use: 404, or, with
// OnUnknown set, 503 and Retry-After once OnUnknown heard of it. Another
// replica may have advertised a module this one has yet to resolve.
func (f *Fetcher) unknownModule(w http.ResponseWriter, r *http.Request, hex string) int {
	fn := f.opts.OnUnknown
	if fn == nil {
		http.NotFound(w, r)
		return http.StatusNotFound
	}
	fn(hex)
	w.Header().Set("Retry-After", unknownRetryAfter)
	http.Error(w, "module not resolved by this server yet", http.StatusServiceUnavailable)
	return http.StatusServiceUnavailable
}

// openServable opens an in-use module whose content matches its name, or
// returns the status to answer: 404 for a module the cache does not hold,
// 503 for one that it lost (quarantined, or its file unreadable).
func (f *Fetcher) openServable(hex string) (*os.File, int) {
	if !f.cache.holds(hex) {
		if f.problems.has(hex) {
			return nil, http.StatusServiceUnavailable
		}
		return nil, http.StatusNotFound
	}
	file, err := os.Open(f.cache.path(hex))
	if err != nil {
		f.log.Error("in-use module missing from cache", "sha256", hex, "error", err)
		return nil, http.StatusServiceUnavailable
	}
	if err := f.checkFile(hex, file, checkServe); err != nil {
		_ = file.Close()
		if !errors.Is(err, errCorrupt) {
			f.log.Error("in-use module unreadable", "sha256", hex, "error", err)
		}
		return nil, http.StatusServiceUnavailable
	}
	return file, http.StatusOK
}

// countingWriter counts body bytes and keeps ReadFrom so that ServeContent
// can still use sendfile.
type countingWriter struct {
	http.ResponseWriter
	n    int64
	code int
}

func (c *countingWriter) WriteHeader(code int) {
	c.code = code
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	var n int64
	var err error
	if rf, ok := c.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{c.ResponseWriter}, r)
	}
	c.n += n
	return n, err
}
