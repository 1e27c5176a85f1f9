package bench

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/registry"
)

// CountingRegistry is an in-memory OCI registry that counts the requests
// it serves, by kind, to show how often a fleet makes the control plane
// pull.
type CountingRegistry struct {
	srv *httptest.Server

	mu     sync.Mutex
	counts map[string]int
}

// Request kinds counted by CountingRegistry.
const (
	ReqManifest = "manifest" // GET or HEAD of a manifest
	ReqBlob     = "blob"     // GET of a blob (config or module layer)
	ReqOther    = "other"    // version check, uploads, anything else
)

// NewCountingRegistry starts the registry on a loopback port.
func NewCountingRegistry() *CountingRegistry {
	r := &CountingRegistry{counts: map[string]int{}}
	inner := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.count(req)
		inner.ServeHTTP(w, req)
	}))
	return r
}

func (r *CountingRegistry) count(req *http.Request) {
	kind := ReqOther
	switch {
	case strings.Contains(req.URL.Path, "/manifests/") && (req.Method == http.MethodGet || req.Method == http.MethodHead):
		kind = ReqManifest
	case strings.Contains(req.URL.Path, "/blobs/sha256:") && req.Method == http.MethodGet:
		kind = ReqBlob
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[kind]++
}

// Host is the registry's host:port.
func (r *CountingRegistry) Host() string { return strings.TrimPrefix(r.srv.URL, "http://") }

// Counts returns the requests served since the last Reset, by kind.
func (r *CountingRegistry) Counts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.counts))
	for k, v := range r.counts {
		out[k] = v
	}
	return out
}

// Reset zeroes the counts.
func (r *CountingRegistry) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts = map[string]int{}
}

// Close stops the registry.
func (r *CountingRegistry) Close() { r.srv.Close() }
