package fetcher

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// A replica asked for a module another replica advertised, and it has yet
// to resolve it: the client is told to retry, the replica hears of the
// digest, and once the module is in use it is served.
func TestModuleServerUnknownDigestAsksForRetry(t *testing.T) {
	var mu sync.Mutex
	var heard []string
	f := newTestFetcher(t, "", func(o *Options) {
		o.OnUnknown = func(hex string) {
			mu.Lock()
			defer mu.Unlock()
			heard = append(heard, hex)
		}
	})
	module := validModule(t)
	path := t.TempDir() + "/m.wasm"
	if err := writeFile(path, module); err != nil {
		t.Fatal(err)
	}
	m := mustResolve(t, f, Request{URL: "file://" + path}, module)
	srv := httptest.NewServer(f.Handler())
	t.Cleanup(srv.Close)
	url := srv.URL + ModulePathPrefix + m.SHA256

	resp, body := get(t, http.MethodGet, url)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("GET of a digest not in use = %d, Retry-After %q; want 503 with Retry-After",
			resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if bytes.Equal(body, module) {
		t.Fatal("a module not in use was served")
	}
	if resp, _ := get(t, http.MethodGet, srv.URL+ModulePathPrefix+"ABC"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("malformed digest = %d, want 400", resp.StatusCode)
	}
	mu.Lock()
	got := append([]string(nil), heard...)
	mu.Unlock()
	if len(got) != 1 || got[0] != m.SHA256 {
		t.Fatalf("OnUnknown heard %q, want only %s (a malformed digest is not a module)", got, m.SHA256)
	}

	f.SetInUse([]string{m.SHA256})
	resp, body = get(t, http.MethodGet, url)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, module) {
		t.Fatalf("GET once in use = %d with %d bytes, want 200 with the module", resp.StatusCode, len(body))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(heard) != 1 {
		t.Errorf("OnUnknown called for a module in use: %q", heard)
	}
}
