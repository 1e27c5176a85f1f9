package fetcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"

	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/wasmxds/wasmxds/internal/modref"
)

// Sentinel errors returned (wrapped) by Resolve and Push. Test with errors.Is.
var (
	// ErrNotFound: the reference, manifest, blob, file or plugin.wasm does not exist.
	ErrNotFound = errors.New("not found")
	// ErrDigestMismatch: the sha256 pin matches neither the manifest digest
	// nor the module's sha256, or content does not match its descriptor.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrTooLarge: the module (or the layer holding it) exceeds MaxModuleSize.
	ErrTooLarge = errors.New("module too large")
	// ErrNotWasm: the content lacks the Wasm magic number and version 1.
	ErrNotWasm = errors.New("not a WebAssembly module")
	// ErrPreflight: the module's sections are malformed, or it lacks the
	// proxy-wasm ABI version export or an allocator export. (A module that
	// only fails to compile is accepted with a warning; see Preflight.)
	ErrPreflight = errors.New("module failed preflight")
	// ErrAmbiguous: an image index or manifest holds more than one distinct module.
	ErrAmbiguous = errors.New("ambiguous module")
	// ErrUnauthorized: the registry or server refused the credentials (401/403).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrUnavailable: the source could not be reached or kept failing (network
	// errors, 5xx, 429) after retries, or the pull timed out.
	ErrUnavailable = errors.New("source unavailable")
	// ErrClosed: the Fetcher was closed; no more pulls start.
	ErrClosed = errors.New("fetcher closed")
	// ErrInvalidReference: the URL or sha256 pin is malformed, uses an
	// unsupported scheme or holds credentials. It is modref.ErrInvalid, so
	// every parse error of the shared module-reference grammar matches it.
	ErrInvalidReference = modref.ErrInvalid
	// ErrUnsupported: the artifact's media types hold no recognisable module.
	ErrUnsupported = errors.New("unsupported artifact")
	// ErrStale is returned together with a usable Module when re-resolving
	// (Always, file://) failed but an earlier good module for the same
	// reference is cached: keep serving the Module and report the error.
	ErrStale = errors.New("serving last good module")
	// ErrCacheWrite: the module could not be written to the cache directory
	// (read-only, full, or not a directory); modules already cached are
	// still served. See Fetcher.Degraded.
	ErrCacheWrite = errors.New("cannot write to the module cache")
	// ErrRefused: the fetch policy forbids the pull: a link-local or cloud
	// metadata address (see Options.AllowLinkLocal), a file outside
	// Options.AllowFileRoots, a PullSecret entry for another registry than
	// the URL's, or more redirects than allowed. Nothing was sent to the
	// refused destination.
	ErrRefused = errors.New("refused by the fetch policy")
	// ErrSignature: the module was refused by signature verification (see
	// Request.VerificationKey): one of ErrUnsigned, ErrBadSignature and
	// ErrKeyMismatch, or a key that cannot be used.
	ErrSignature = errors.New("signature verification failed")
	// ErrUnsigned: the manifest has no cosign signature at all.
	ErrUnsigned = fmt.Errorf("%w: unsigned", ErrSignature)
	// ErrBadSignature: a payload signed with the key does not name the
	// manifest (a signature copied onto other content), or a signature is
	// unreadable.
	ErrBadSignature = fmt.Errorf("%w: bad signature", ErrSignature)
	// ErrKeyMismatch: the manifest is signed, but not with the key.
	ErrKeyMismatch = fmt.Errorf("%w: key mismatch", ErrSignature)
)

// Reason labels (bounded) for metrics and logs.
const (
	reasonOK             = "ok"
	reasonNotFound       = "not_found"
	reasonDigestMismatch = "digest_mismatch"
	reasonTooLarge       = "too_large"
	reasonNotWasm        = "not_wasm"
	reasonPreflight      = "preflight"
	reasonAmbiguous      = "ambiguous"
	reasonUnauthorized   = "unauthorized"
	reasonUnavailable    = "unavailable"
	reasonInvalid        = "invalid_reference"
	reasonUnsupported    = "unsupported"
	reasonCacheWrite     = "cache_write"
	reasonRefused        = "refused"
	reasonCanceled       = "canceled"
	reasonUnsigned       = "unsigned"
	reasonBadSignature   = "bad_signature"
	reasonKeyMismatch    = "key_mismatch"
	reasonSignature      = "signature"
	reasonOther          = "other"
)

var reasonsBySentinel = []struct {
	err    error
	reason string
}{
	{ErrUnsigned, reasonUnsigned},
	{ErrBadSignature, reasonBadSignature},
	{ErrKeyMismatch, reasonKeyMismatch},
	{ErrSignature, reasonSignature},
	{ErrNotFound, reasonNotFound},
	{ErrDigestMismatch, reasonDigestMismatch},
	{ErrTooLarge, reasonTooLarge},
	{ErrNotWasm, reasonNotWasm},
	{ErrPreflight, reasonPreflight},
	{ErrAmbiguous, reasonAmbiguous},
	{ErrUnauthorized, reasonUnauthorized},
	{ErrUnavailable, reasonUnavailable},
	{ErrInvalidReference, reasonInvalid},
	{ErrUnsupported, reasonUnsupported},
	{ErrCacheWrite, reasonCacheWrite},
	{ErrRefused, reasonRefused},
	{context.Canceled, reasonCanceled},
}

// reasonOf maps an error to a bounded metric label.
func reasonOf(err error) string {
	if err == nil {
		return reasonOK
	}
	for _, r := range reasonsBySentinel {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return reasonOther
}

// classify wraps transport and registry errors with this package's
// sentinels so callers need not know oras-go's error types.
func classify(err error) error {
	if err == nil || hasSentinel(err) {
		return err
	}
	var resp *errcode.ErrorResponse
	switch {
	case errors.Is(err, auth.ErrBasicCredentialNotFound):
		return wrap(ErrUnauthorized, err)
	case errors.Is(err, errdef.ErrNotFound):
		return wrap(ErrNotFound, err)
	case errors.Is(err, content.ErrMismatchedDigest), errors.Is(err, content.ErrTrailingData):
		return wrap(ErrDigestMismatch, err)
	case errors.Is(err, errdef.ErrSizeExceedsLimit):
		return wrap(ErrTooLarge, err)
	case errors.Is(err, errdef.ErrInvalidReference), errors.Is(err, errdef.ErrInvalidDigest):
		return wrap(ErrInvalidReference, err)
	case errors.As(err, &resp):
		return wrap(statusSentinel(resp.StatusCode), err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, io.ErrUnexpectedEOF), isNetworkError(err):
		return wrap(ErrUnavailable, err)
	}
	return err
}

func statusSentinel(code int) error {
	switch {
	case code == http.StatusNotFound:
		return ErrNotFound
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return ErrUnauthorized
	case code == http.StatusTooManyRequests || code >= 500:
		return ErrUnavailable
	}
	return ErrUnsupported
}

func hasSentinel(err error) bool {
	for _, r := range reasonsBySentinel[:len(reasonsBySentinel)-1] {
		if errors.Is(err, r.err) {
			return true
		}
	}
	return false
}

// wrap keeps both the sentinel and the original cause visible to errors.Is.
func wrap(sentinel, cause error) error {
	return &wrapped{sentinel: sentinel, cause: cause}
}

type wrapped struct{ sentinel, cause error }

func (w *wrapped) Error() string   { return w.sentinel.Error() + ": " + w.cause.Error() }
func (w *wrapped) Unwrap() []error { return []error{w.sentinel, w.cause} }

func isNetworkError(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ne) || errors.As(err, &oe) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}
