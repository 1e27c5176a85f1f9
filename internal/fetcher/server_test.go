package fetcher

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// serverWithModule returns a module server holding one file:// module.
func serverWithModule(t *testing.T, inUse bool) (*Fetcher, *httptest.Server, []byte, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	f := newTestFetcher(t, "", func(o *Options) { o.Registerer = reg })
	module := validModule(t)
	path := t.TempDir() + "/m.wasm"
	if err := writeFile(path, module); err != nil {
		t.Fatal(err)
	}
	m := mustResolve(t, f, Request{URL: "file://" + path}, module)
	if inUse {
		f.SetInUse([]string{m.SHA256})
	}
	srv := httptest.NewServer(f.Handler())
	t.Cleanup(srv.Close)
	return f, srv, module, reg
}

func get(t *testing.T, method, url string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestModuleServerServesInUseModules(t *testing.T) {
	_, srv, module, reg := serverWithModule(t, true)
	url := srv.URL + ModulePathPrefix + sha(module)

	resp, body := get(t, http.MethodGet, url)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, module) {
		t.Fatalf("GET = %d with %d bytes, want 200 with the module", resp.StatusCode, len(body))
	}
	etag := `"sha256:` + sha(module) + `"`
	for k, want := range map[string]string{
		"Content-Type":   "application/wasm",
		"ETag":           etag,
		"Cache-Control":  "public, max-age=31536000, immutable",
		"Content-Length": strconv.Itoa(len(module)),
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}

	resp, body = get(t, http.MethodHead, url)
	if resp.StatusCode != http.StatusOK || len(body) != 0 || resp.Header.Get("Content-Length") != strconv.Itoa(len(module)) {
		t.Errorf("HEAD = %d, %d body bytes, Content-Length %q", resp.StatusCode, len(body), resp.Header.Get("Content-Length"))
	}
	resp, body = get(t, http.MethodGet, url, "If-None-Match", etag)
	if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Errorf("If-None-Match = %d with %d bytes, want 304 and no body", resp.StatusCode, len(body))
	}
	if got := metricValue(t, reg, "wasmxds_fetcher_served_bytes_total"); got != float64(len(module)) {
		t.Errorf("served bytes metric = %v, want %d", got, len(module))
	}
	// A range is answered with the whole module, which is what is hashed
	// as it is sent: no part of a file is vouched for on its own.
	resp, body = get(t, http.MethodGet, url, "Range", "bytes=0-3")
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, module) {
		t.Errorf("Range GET = %d with %d bytes, want 200 with the whole module", resp.StatusCode, len(body))
	}
}

func TestModuleServerRefuses(t *testing.T) {
	f, srv, module, _ := serverWithModule(t, false)
	unknown := sha([]byte("unknown"))
	f.SetInUse([]string{unknown}) // in use but never cached
	cases := []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, ModulePathPrefix + sha(module), http.StatusNotFound}, // cached, not in use
		{http.MethodGet, ModulePathPrefix + unknown, http.StatusNotFound},
		{http.MethodGet, ModulePathPrefix + "ABC", http.StatusBadRequest},
		{http.MethodGet, ModulePathPrefix + sha(module)[:63] + "G", http.StatusBadRequest},
		{http.MethodGet, ModulePathPrefix + sha(module) + ".wasm", http.StatusBadRequest},
		{http.MethodGet, ModulePathPrefix + "..%2f..%2findex.json", http.StatusBadRequest},
		{http.MethodGet, "/modules/../index.json", http.StatusNotFound},
		{http.MethodGet, "/index.json", http.StatusNotFound},
		{http.MethodPost, ModulePathPrefix + sha(module), http.StatusMethodNotAllowed},
	}
	for _, tc := range cases {
		resp, body := get(t, tc.method, srv.URL+tc.path)
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
		}
		if bytes.Equal(body, module) {
			t.Errorf("%s %s returned the module", tc.method, tc.path)
		}
	}
}

func TestModuleServerConcurrentDownloads(t *testing.T) {
	_, srv, module, _ := serverWithModule(t, true)
	url := srv.URL + ModulePathPrefix + sha(module)
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			resp, err := http.Get(url)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil || !bytes.Equal(b, module) {
				t.Errorf("concurrent GET: %v, %d bytes", err, len(b))
			}
		})
	}
	wg.Wait()
}

// OnServed hears of every whole module sent, and of nothing else: a HEAD, a
// 304 or a refused digest tell an Envoy nothing it could cache. (A Range
// header is ignored: every GET is a whole download, hashed as it streams.)
func TestModuleServerReportsWholeDownloads(t *testing.T) {
	served := make(chan string, 10)
	module := validModule(t)
	f := newTestFetcher(t, "", func(o *Options) {
		o.OnServed = func(sha, remote string) { served <- sha + " " + remote[:len("127.0.0.1:")] }
	})
	path := t.TempDir() + "/m.wasm"
	if err := writeFile(path, module); err != nil {
		t.Fatal(err)
	}
	m := mustResolve(t, f, Request{URL: "file://" + path}, module)
	f.SetInUse([]string{m.SHA256})
	srv := httptest.NewServer(f.Handler())
	t.Cleanup(srv.Close)
	url := srv.URL + ModulePathPrefix + m.SHA256

	get(t, http.MethodHead, url)
	get(t, http.MethodGet, url, "If-None-Match", `"sha256:`+m.SHA256+`"`)
	get(t, http.MethodGet, srv.URL+ModulePathPrefix+sha([]byte("unknown")))
	get(t, http.MethodGet, url)
	// The client may have the body before the handler returns.
	select {
	case got := <-served:
		if want := m.SHA256 + " 127.0.0.1:"; got != want {
			t.Errorf("OnServed(%q), want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnServed not called for a whole GET")
	}
	srv.Close() // waits for every handler
	if len(served) != 0 {
		t.Errorf("OnServed called %d more times: %q", len(served), <-served)
	}
}
