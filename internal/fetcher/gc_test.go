package fetcher

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable time source for the cache.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fileModules writes modules to files, resolves them and returns them.
func fileModules(t *testing.T, f *Fetcher, clock *fakeClock, n int) []Module {
	t.Helper()
	var out []Module
	for range n {
		b := validModule(t)
		p := filepath.Join(t.TempDir(), "m.wasm")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		out = append(out, mustResolve(t, f, Request{URL: "file://" + p}, b))
		clock.advance(time.Minute)
	}
	return out
}

func present(f *Fetcher) map[string]bool {
	got := map[string]bool{}
	for _, m := range f.Modules() {
		if _, err := os.Stat(f.cache.path(m.SHA256)); err == nil {
			got[m.SHA256] = true
		}
	}
	return got
}

func TestGCRemovesModulesUnusedForGrace(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	f := newTestFetcher(t, "", func(o *Options) { o.GCGrace = time.Hour })
	f.cache.now = clock.now
	mods := fileModules(t, f, clock, 3)
	f.SetInUse([]string{mods[0].SHA256, mods[1].SHA256})
	f.SetInUse([]string{mods[0].SHA256}) // mods[1] stops being used now

	clock.advance(30 * time.Minute)
	if err := f.GC(); err != nil {
		t.Fatal(err)
	}
	if got := present(f); len(got) != 3 {
		t.Fatalf("GC within the grace period removed modules: %d left", len(got))
	}
	clock.advance(31 * time.Minute)
	if err := f.GC(); err != nil {
		t.Fatal(err)
	}
	got := present(f)
	if !got[mods[0].SHA256] || got[mods[1].SHA256] || got[mods[2].SHA256] || len(got) != 1 {
		t.Fatalf("after grace: present %v, want only the in-use module %s", got, mods[0].SHA256)
	}
	if _, err := os.Stat(mods[1].Path); !os.IsNotExist(err) {
		t.Errorf("collected module file still on disk: %v", err)
	}
}

func TestGCEnforcesMaxCacheBytesOldestFirst(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	f := newTestFetcher(t, "", func(o *Options) { o.GCGrace = 24 * time.Hour })
	f.cache.now = clock.now
	mods := fileModules(t, f, clock, 4)
	f.opts.MaxCacheBytes = 2*mods[0].Size + 1 // room for two modules
	f.SetInUse([]string{mods[0].SHA256})      // the oldest, but in use

	if err := f.GC(); err != nil {
		t.Fatal(err)
	}
	got := present(f)
	if !got[mods[0].SHA256] || !got[mods[3].SHA256] || len(got) != 2 {
		t.Fatalf("present %v, want the in-use module and the newest one", got)
	}
}

func TestCacheIndexSurvivesRestartAndLostIndex(t *testing.T) {
	dir := t.TempDir()
	f := newTestFetcher(t, dir, nil)
	mods := fileModules(t, f, &fakeClock{}, 1)
	if err := os.WriteFile(filepath.Join(dir, indexName), []byte("{torn"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Stray temp file from a crash mid-write.
	if err := os.WriteFile(filepath.Join(dir, "tmp", "part-1"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	f2 := newTestFetcher(t, dir, nil)
	if got := present(f2); !got[mods[0].SHA256] {
		t.Errorf("module file not adopted after index loss: %v", got)
	}
	if left, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(left) != 0 {
		t.Errorf("temp files left after reopen: %d", len(left))
	}
}
