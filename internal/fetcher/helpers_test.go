package fetcher

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	orasreg "oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/wasmxds/wasmxds/internal/fetcher/fetchertest"
)

// buildTestModule assembles a minimal Wasm binary exporting the given
// function names; see fetchertest.Module.
func buildTestModule(nonce string, exports ...string) []byte {
	return fetchertest.Module(nonce, exports...)
}

var moduleCounter atomic.Int64

// validModule returns a unique module that passes the preflight.
func validModule(t testing.TB) []byte {
	t.Helper()
	nonce := fmt.Sprintf("%s-%d", t.Name(), moduleCounter.Add(1))
	return fetchertest.ProxyWasm(nonce)
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func tarOf(t *testing.T, files ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; i+1 < len(files); i += 2 {
		if err := tw.WriteHeader(&tar.Header{Name: files[i], Mode: 0o644, Size: int64(len(files[i+1])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(files[i+1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipOf(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testRegistry is go-containerregistry's in-memory registry behind a
// wrapper that counts requests, injects failures and enforces basic auth.
type testRegistry struct {
	srv  *httptest.Server
	host string

	mu     sync.Mutex
	counts map[string]int // "GET manifest", "HEAD blob", ...

	fail      atomic.Int32 // next N requests answer failCode
	failCode  int
	user, pwd string
	// holdManifest, when set, delays manifest GETs until it is closed.
	holdManifest chan struct{}
}

func newTestRegistry(t testing.TB) *testRegistry {
	t.Helper()
	tr := &testRegistry{counts: map[string]int{}, failCode: http.StatusServiceUnavailable}
	inner := registry.New(registry.Logger(logDiscard()))
	tr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.serve(inner, w, r)
	}))
	t.Cleanup(tr.srv.Close)
	tr.host = strings.TrimPrefix(tr.srv.URL, "http://")
	return tr
}

func (tr *testRegistry) serve(inner http.Handler, w http.ResponseWriter, r *http.Request) {
	if tr.user != "" {
		u, p, ok := r.BasicAuth()
		if !ok || u != tr.user || p != tr.pwd {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
	}
	kind := "other"
	switch {
	case strings.Contains(r.URL.Path, "/manifests/"):
		kind = "manifest"
	case strings.Contains(r.URL.Path, "/blobs/"):
		kind = "blob"
	}
	tr.mu.Lock()
	tr.counts[r.Method+" "+kind]++
	hold := tr.holdManifest
	tr.mu.Unlock()
	if tr.fail.Add(-1) >= 0 {
		http.Error(w, "injected failure", tr.failCode)
		return
	}
	if hold != nil && kind == "manifest" && r.Method == http.MethodGet {
		<-hold
	}
	inner.ServeHTTP(w, r)
}

func (tr *testRegistry) count(key string) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.counts[key]
}

func (tr *testRegistry) resetCounts() {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.counts = map[string]int{}
}

// ref returns "host/repo:tag" on this registry.
func (tr *testRegistry) ref(repoTag string) string { return tr.host + "/" + repoTag }

func (tr *testRegistry) repo(t testing.TB, repoTag string) *remote.Repository {
	t.Helper()
	ref, err := orasreg.ParseReference(tr.ref(repoTag))
	if err != nil {
		t.Fatal(err)
	}
	repo := &remote.Repository{Reference: ref, PlainHTTP: true}
	if tr.user != "" {
		repo.Client = &staticAuthClient{user: tr.user, pwd: tr.pwd}
	}
	return repo
}

type staticAuthClient struct{ user, pwd string }

func (c *staticAuthClient) Do(r *http.Request) (*http.Response, error) {
	r.SetBasicAuth(c.user, c.pwd)
	return http.DefaultClient.Do(r)
}

type blob struct {
	mediaType string
	data      []byte
}

// pushBlobs uploads blobs and returns their descriptors.
func pushBlobs(t testing.TB, repo *remote.Repository, blobs ...blob) []ocispec.Descriptor {
	t.Helper()
	var out []ocispec.Descriptor
	for _, b := range blobs {
		d := content.NewDescriptorFromBytes(b.mediaType, b.data)
		if err := repo.Push(context.Background(), d, bytes.NewReader(b.data)); err != nil {
			t.Fatalf("push blob: %v", err)
		}
		out = append(out, d)
	}
	return out
}

// pushManifest uploads a manifest (config + layers) tagged with the repo's
// reference and returns its descriptor.
func (tr *testRegistry) pushManifest(t *testing.T, repoTag, mediaType string, config blob, layers ...blob) ocispec.Descriptor {
	t.Helper()
	repo := tr.repo(t, repoTag)
	descs := pushBlobs(t, repo, append([]blob{config}, layers...)...)
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: mediaType,
		Config: descs[0], Layers: descs[1:]}
	return tr.pushJSON(t, repo, mediaType, m)
}

func (tr *testRegistry) pushIndex(t *testing.T, repoTag string, manifests ...ocispec.Descriptor) ocispec.Descriptor {
	t.Helper()
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: manifests}
	return tr.pushJSON(t, tr.repo(t, repoTag), ocispec.MediaTypeImageIndex, idx)
}

func (tr *testRegistry) pushJSON(t testing.TB, repo *remote.Repository, mediaType string, v any) ocispec.Descriptor {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	d := content.NewDescriptorFromBytes(mediaType, b)
	if err := repo.PushReference(context.Background(), d, bytes.NewReader(b), repo.Reference.Reference); err != nil {
		t.Fatalf("push manifest: %v", err)
	}
	return d
}

// pushWasm publishes module as a Wasm OCI artifact with Push.
func (tr *testRegistry) pushWasm(t testing.TB, repoTag string, module []byte) string {
	t.Helper()
	d, err := Push(context.Background(), module, tr.ref(repoTag), PushOptions{DockerConfig: tr.dockerConfig(t)})
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	return d
}

// dockerConfig writes a docker config.json holding this registry's
// credentials (none when it has no auth) and returns its path.
func (tr *testRegistry) dockerConfig(t testing.TB) string {
	t.Helper()
	auths := map[string]any{}
	if tr.user != "" {
		auths[tr.host] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(tr.user + ":" + tr.pwd))}
	}
	return writeDockerConfig(t, auths)
}

func writeDockerConfig(t testing.TB, auths map[string]any) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"auths": auths})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// newTestFetcher returns a Fetcher on dir (a new temp dir when "") with
// fast retries and an empty docker config.
func newTestFetcher(t testing.TB, dir string, mod func(*Options)) *Fetcher {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	opts := Options{
		CacheDir:     dir,
		DockerConfig: writeDockerConfig(t, map[string]any{}),
		Retry:        RetryPolicy{MaxRetries: 3, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond},
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mod != nil {
		mod(&opts)
	}
	f, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return f
}

// cachedBytes reads the module file a Module points at.
func cachedBytes(t *testing.T, m Module) []byte {
	t.Helper()
	b, err := os.ReadFile(m.Path)
	if err != nil {
		t.Fatalf("module file: %v", err)
	}
	return b
}

// mustResolve resolves req and checks the result holds want.
func mustResolve(t *testing.T, f *Fetcher, req Request, want []byte) Module {
	t.Helper()
	m, err := f.Resolve(context.Background(), req)
	if err != nil {
		t.Fatalf("Resolve(%s): %v", req.URL, err)
	}
	if m.SHA256 != sha(want) || m.Size != int64(len(want)) {
		t.Fatalf("Resolve(%s) = sha256:%s size %d, want sha256:%s size %d", req.URL, m.SHA256, m.Size, sha(want), len(want))
	}
	if !bytes.Equal(cachedBytes(t, m), want) {
		t.Fatalf("cached file %s differs from the pushed module", m.Path)
	}
	return m
}
func logDiscard() *log.Logger { return log.New(io.Discard, "", 0) }

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o644) }
