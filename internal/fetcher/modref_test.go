package fetcher

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/wasmxds/wasmxds/internal/catalog"
	"github.com/wasmxds/wasmxds/internal/modref/modreftest"
)

// dockerHub sends every request for Docker Hub (registry-1.docker.io) to a
// test registry instead, and records the paths asked for.
type dockerHub struct {
	host  string
	mu    sync.Mutex
	paths []string
}

func (d *dockerHub) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != "registry-1.docker.io" {
		return nil, errors.New("unexpected registry " + r.URL.Host)
	}
	r = r.Clone(r.Context())
	r.URL.Scheme, r.URL.Host, r.Host = "http", d.host, d.host
	d.mu.Lock()
	d.paths = append(d.paths, r.Method+" "+r.URL.Path)
	d.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (d *dockerHub) asked(req string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Contains(d.paths, req)
}

// What the catalog puts in the IR is what the fetcher pulls: Docker's
// shorthand in a spec's url reaches Docker Hub's library/ and org
// repositories, the IR URL is the Module's URL, and an uppercase pin works
// in both.
func TestCatalogURLIsWhatIsPulled(t *testing.T) {
	tr := newTestRegistry(t)
	lib, org := validModule(t), validModule(t)
	tr.pushWasm(t, "library/add-header:v1", lib)
	tr.pushWasm(t, "myorg/f:v1", org)
	hub := &dockerHub{host: tr.host}
	f := newTestFetcher(t, "", func(o *Options) { o.Transport = hub })

	dir := t.TempDir()
	spec := "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: lib}\n" +
		"spec: {url: add-header:v1, sha256: " + strings.ToUpper(sha(lib)) + "}\n---\n" +
		"apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: org}\nspec: {url: myorg/f:v1}\n"
	if err := writeFile(dir+"/plugins.yaml", []byte(spec)); err != nil {
		t.Fatal(err)
	}
	st, err := catalog.Load(dir)
	if err != nil || len(st.Errors) != 0 || len(st.Plugins) != 2 {
		t.Fatalf("Load: %v, errors %v, %d plugins", err, st.Errors, len(st.Plugins))
	}
	want := map[string]struct {
		module []byte
		path   string
	}{
		"lib": {lib, "GET /v2/library/add-header/manifests/v1"},
		"org": {org, "GET /v2/myorg/f/manifests/v1"},
	}
	for _, p := range st.Plugins {
		w := want[p.Name]
		m := mustResolve(t, f, Request{URL: p.URL, SHA256: p.SHA256}, w.module)
		if m.URL != p.URL {
			t.Errorf("%s: Module.URL %q; IR URL %q", p.Name, m.URL, p.URL)
		}
		if !hub.asked(w.path) {
			t.Errorf("%s: url %q never asked Docker Hub for %s (asked %v)", p.Name, p.URL, w.path, hub.paths)
		}
	}
	// The spelling a user types on the command line is pulled the same way.
	m := mustResolve(t, f, Request{URL: "add-header:v1", SHA256: "SHA256:" + strings.ToUpper(sha(lib))}, lib)
	if m.URL != "oci://docker.io/library/add-header:v1" {
		t.Errorf("Module.URL %q; want the canonical spelling", m.URL)
	}
}

// The fetcher keys, logs and reports a reference by the same canonical
// spelling as the catalog (the shared table).
func TestParseSourceCanonicalKeys(t *testing.T) {
	for _, c := range modreftest.Examples {
		src, err := parseSource(c.In)
		if err != nil || src.key != c.Want {
			t.Errorf("parseSource(%q) = %q, %v; want %q", c.In, src.key, err, c.Want)
		}
	}
}

func TestResolveRefusesCredentialsWithoutEchoingThem(t *testing.T) {
	f := newTestFetcher(t, "", nil)
	for _, u := range []string{"oci://bob:hunter2@127.0.0.1:5000/f:v1", "https://bob:hunter2@example.com/a.wasm"} {
		_, err := f.Resolve(context.Background(), Request{URL: u})
		if !errors.Is(err, ErrInvalidReference) || strings.Contains(err.Error(), "hunter2") ||
			!strings.Contains(err.Error(), "credentials in module URLs are not supported") {
			t.Errorf("Resolve(%q) err = %v; want a credentials refusal without the password", u, err)
		}
	}
}
