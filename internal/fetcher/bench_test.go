package fetcher

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkResolveCached measures an IfNotPresent resolution answered from
// the cache, the path every resync of an unchanged spec takes.
func BenchmarkResolveCached(b *testing.B) {
	tr := newTestRegistry(b)
	module := fetchertestModule(b)
	if _, err := Push(context.Background(), module, tr.ref("bench/f:v1"), PushOptions{}); err != nil {
		b.Fatal(err)
	}
	f, err := New(Options{CacheDir: b.TempDir(), DockerConfig: filepath.Join(b.TempDir(), "none.json")})
	if err != nil {
		b.Fatal(err)
	}
	req := Request{URL: tr.ref("bench/f:v1")}
	if _, err := f.Resolve(context.Background(), req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.Resolve(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkModuleServerParallel measures concurrent downloads of one 1 MiB
// module from the module server.
func BenchmarkModuleServerParallel(b *testing.B) {
	module := append(fetchertestModule(b), make([]byte, 1<<20)...) // padding: the server never parses modules
	p := filepath.Join(b.TempDir(), "m.wasm")
	if err := os.WriteFile(p, module, 0o644); err != nil {
		b.Fatal(err)
	}
	f, err := New(Options{CacheDir: b.TempDir(), DockerConfig: filepath.Join(b.TempDir(), "none.json")})
	if err != nil {
		b.Fatal(err)
	}
	hex := sha(module)
	sp, err := f.cache.newSpool()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := sp.Write(module); err != nil {
		b.Fatal(err)
	}
	if err := f.cache.commit("bench", refEntry{SHA256: hex}, sp); err != nil {
		b.Fatal(err)
	}
	f.SetInUse([]string{hex})
	srv := httptest.NewServer(f.Handler())
	defer srv.Close()
	url := srv.URL + ModulePathPrefix + hex
	b.SetBytes(int64(len(module)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := http.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

func fetchertestModule(b *testing.B) []byte {
	return buildTestModule(b.Name(), "proxy_abi_version_0_2_1", "proxy_on_memory_allocate")
}

// BenchmarkNewVerifiesCache measures New on a cache of 16 modules of 4 MiB:
// every cached module is hashed before anything is served.
func BenchmarkNewVerifiesCache(b *testing.B) {
	dir := b.TempDir()
	f, err := New(Options{CacheDir: dir, DockerConfig: filepath.Join(b.TempDir(), "none.json")})
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	for i := range 16 {
		module := append(buildTestModule(fmt.Sprint(b.Name(), i), "proxy_abi_version_0_2_1"), make([]byte, 4<<20)...)
		sp, err := f.cache.newSpool()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := sp.Write(module); err != nil {
			b.Fatal(err)
		}
		if err := f.cache.commit(fmt.Sprint("bench", i), refEntry{SHA256: sha(module)}, sp); err != nil {
			b.Fatal(err)
		}
		total += int64(len(module))
	}
	b.SetBytes(total)
	for b.Loop() {
		g, err := New(Options{CacheDir: dir, DockerConfig: filepath.Join(b.TempDir(), "none.json")})
		if err != nil {
			b.Fatal(err)
		}
		if len(g.Problems()) != 0 || len(g.Modules()) != 16 {
			b.Fatalf("problems %v, %d modules", g.Problems(), len(g.Modules()))
		}
	}
}
