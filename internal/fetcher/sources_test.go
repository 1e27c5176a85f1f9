package fetcher

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

func TestResolveHTTP(t *testing.T) {
	module := validModule(t)
	bodies := map[string][]byte{
		"/raw.wasm":      module,
		"/plugin.tar.gz": gzipOf(t, tarOf(t, "plugin.wasm", string(module))),
		"/plugin.tar":    tarOf(t, "plugin.wasm", string(module)),
		"/text":          []byte("hello"),
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := bodies[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	}))
	defer srv.Close()

	for _, p := range []string{"/raw.wasm", "/plugin.tar.gz", "/plugin.tar"} {
		m := mustResolve(t, newTestFetcher(t, "", nil), Request{URL: srv.URL + p}, module)
		if m.ManifestDigest != "" {
			t.Errorf("%s: ManifestDigest = %q for an http source", p, m.ManifestDigest)
		}
	}
	f := newTestFetcher(t, "", nil)
	if _, err := f.Resolve(context.Background(), Request{URL: srv.URL + "/missing.wasm"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("404: err = %v, want ErrNotFound", err)
	}
	if _, err := f.Resolve(context.Background(), Request{URL: srv.URL + "/text"}); !errors.Is(err, ErrNotWasm) {
		t.Errorf("text body: err = %v, want ErrNotWasm", err)
	}
}

func TestResolveFileRereadsAndKeepsLastGood(t *testing.T) {
	v1, v2 := validModule(t), validModule(t)
	path := filepath.Join(t.TempDir(), "filter.wasm")
	if err := os.WriteFile(path, v1, 0o644); err != nil {
		t.Fatal(err)
	}
	f := newTestFetcher(t, "", nil)
	url := "file://" + path
	mustResolve(t, f, Request{URL: url}, v1)
	if err := os.WriteFile(path, v2, 0o644); err != nil {
		t.Fatal(err)
	}
	mustResolve(t, f, Request{URL: url}, v2)

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	m, err := f.Resolve(context.Background(), Request{URL: url})
	if !errors.Is(err, ErrStale) || !errors.Is(err, ErrNotFound) || m.SHA256 != sha(v2) {
		t.Fatalf("deleted file: (%s, %v), want the last good module and ErrStale+ErrNotFound", m.SHA256, err)
	}
}

func TestResolveInvalidReferences(t *testing.T) {
	f := newTestFetcher(t, "", nil)
	for _, req := range []Request{
		{URL: "ftp://example.com/x.wasm"},
		{URL: "file://relative/path.wasm"},
		{URL: "oci://UPPER/Case:tag"},
		{URL: "127.0.0.1:5000/repo:v1", SHA256: "abc"},
		{URL: "127.0.0.1:5000/repo:v1", SHA256: "sha256:" + sha([]byte("x"))[:63] + "g"},
		{URL: "file:relative/path.wasm"},
		{URL: "MyOrg/f:v1"},
	} {
		if _, err := f.Resolve(context.Background(), req); !errors.Is(err, ErrInvalidReference) {
			t.Errorf("Resolve(%+v) err = %v, want ErrInvalidReference", req, err)
		}
	}
}
