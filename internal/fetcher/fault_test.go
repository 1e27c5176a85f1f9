package fetcher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// syncBuffer is a log sink safe for concurrent handlers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestSetInUseDoesNotWriteTheIndex(t *testing.T) {
	dir := t.TempDir()
	f := newTestFetcher(t, dir, nil)
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	f.cache.now = clock.now
	mods := fileModules(t, f, clock, 2)
	index := filepath.Join(dir, indexName)
	before, err := os.Stat(index)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		clock.advance(time.Second)
		f.SetInUse([]string{mods[i%2].SHA256})
	}
	after, err := os.Stat(index)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
		t.Fatal("SetInUse rewrote index.json")
	}

	// The last-used times SetInUse changed still reach the disk.
	clock.advance(time.Hour)
	f.SetInUse([]string{mods[0].SHA256, mods[1].SHA256})
	if err := f.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	idx := readIndexFile(t, index)
	for _, m := range mods {
		if got := idx.Modules[m.SHA256].LastUsed; !got.Equal(clock.now()) {
			t.Errorf("persisted lastUsed of %s = %v, want %v", m.SHA256[:12], got, clock.now())
		}
	}
}

func readIndexFile(t *testing.T, path string) indexFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var idx indexFile
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return idx
}

func TestIndexWritesLeaveTwoGoodCopies(t *testing.T) {
	tr := newTestRegistry(t)
	module := validModule(t)
	tr.pushWasm(t, "filters/twice:v1", module)
	dir := t.TempDir()
	mustResolve(t, newTestFetcher(t, dir, nil), Request{URL: tr.ref("filters/twice:v1")}, module)

	for _, name := range []string{indexName, indexName + ".prev"} {
		idx := readIndexFile(t, filepath.Join(dir, name))
		if r, ok := idx.Refs["oci://"+tr.ref("filters/twice:v1")]; !ok || r.SHA256 != sha(module) {
			t.Errorf("%s lacks the reference: %+v", name, idx.Refs)
		}
	}
	left, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil || len(left) != 0 {
		t.Errorf("temp files left behind: %v %v", left, err)
	}
}

func TestCorruptIndexKeepsReferences(t *testing.T) {
	for name, garble := range map[string]func([]byte) []byte{
		"truncated": func(b []byte) []byte { return b[:len(b)/2] },
		"garbage":   func(b []byte) []byte { return bytes.Repeat([]byte{0xff}, len(b)) },
		"empty":     func([]byte) []byte { return nil },
	} {
		t.Run(name, func(t *testing.T) {
			tr := newTestRegistry(t)
			module := validModule(t)
			tr.pushWasm(t, "filters/kept:v1", module)
			url := tr.ref("filters/kept:v1")
			dir := t.TempDir()
			mustResolve(t, newTestFetcher(t, dir, nil), Request{URL: url}, module)
			tr.srv.Close()
			index := filepath.Join(dir, indexName)
			b, err := os.ReadFile(index)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(index, garble(b), 0o644); err != nil {
				t.Fatal(err)
			}

			var logs syncBuffer
			f := newTestFetcher(t, dir, func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
			mustResolve(t, f, Request{URL: url}, module)
			if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), index) {
				t.Errorf("no warning naming %s; log:\n%s", index, logs.String())
			}
		})
	}
}

func TestBothIndexCopiesLostAdoptsModules(t *testing.T) {
	dir := t.TempDir()
	f := newTestFetcher(t, dir, nil)
	clock := &fakeClock{t: time.Now()}
	mods := fileModules(t, f, clock, 1)
	for _, name := range []string{indexName, indexName + ".prev"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("{"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f = newTestFetcher(t, dir, nil)
	if got := f.Modules(); len(got) != 1 || got[0].SHA256 != mods[0].SHA256 {
		t.Errorf("Modules() = %+v, want the module file adopted", got)
	}
}

// corruptByte flips one byte of a cached module in place. Its mtime is
// moved forward as the kernel's coarse clock may not tick between the
// write that stored it and this one.
func corruptByte(t *testing.T, path string) {
	t.Helper()
	file, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	off := int64(20)
	if _, err := file.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := file.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := file.Close(); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(2 * time.Second)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
}

// lostRecorder collects OnModuleLost calls.
type lostRecorder struct {
	mu   sync.Mutex
	lost []string
}

func (l *lostRecorder) hook(sha string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lost = append(l.lost, sha)
}

func (l *lostRecorder) got() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lost...)
}

func TestCorruptModuleIsNeverServed(t *testing.T) {
	tr := newTestRegistry(t)
	module := validModule(t)
	tr.pushWasm(t, "filters/rot:v1", module)
	url := tr.ref("filters/rot:v1")
	reg := prometheus.NewRegistry()
	var lost lostRecorder
	dir := t.TempDir()
	f := newTestFetcher(t, dir, func(o *Options) { o.Registerer = reg; o.OnModuleLost = lost.hook })
	m := mustResolve(t, f, Request{URL: url}, module)
	f.SetInUse([]string{m.SHA256})
	srv := httptest.NewServer(f.Handler())
	t.Cleanup(srv.Close)
	modURL := srv.URL + ModulePathPrefix + m.SHA256
	if resp, body := get(t, http.MethodGet, modURL); resp.StatusCode != http.StatusOK || !bytes.Equal(body, module) {
		t.Fatalf("GET before corruption = %d", resp.StatusCode)
	}

	corruptByte(t, m.Path)
	resp, body := get(t, http.MethodGet, modURL)
	if resp.StatusCode != http.StatusServiceUnavailable || len(body) >= len(module) {
		t.Fatalf("GET of a corrupt module = %d with %d bytes, want 503 without the bytes", resp.StatusCode, len(body))
	}
	if got := lost.got(); len(got) != 1 || got[0] != m.SHA256 {
		t.Errorf("OnModuleLost calls = %v, want [%s]", got, m.SHA256)
	}
	if got := metricValue(t, reg, "wasmxds_fetcher_cache_corrupt_total", "check", "serve"); got != 1 {
		t.Errorf("corrupt metric = %v, want 1", got)
	}
	probs := f.Problems()
	if len(probs) != 1 || probs[0].SHA256 != m.SHA256 || len(probs[0].Refs) != 1 || probs[0].Quarantine == "" {
		t.Fatalf("Problems() = %+v, want the quarantined module with its reference", probs)
	}
	if _, err := os.Stat(probs[0].Quarantine); err != nil || filepath.Dir(probs[0].Quarantine) != filepath.Join(dir, "quarantine") {
		t.Errorf("quarantined file %s: %v", probs[0].Quarantine, err)
	}

	tr.resetCounts()
	mustResolve(t, f, Request{URL: url}, module)
	if got := tr.count("GET blob"); got != 1 {
		t.Errorf("re-resolve after quarantine fetched %d blobs, want 1", got)
	}
	if resp, body := get(t, http.MethodGet, modURL); resp.StatusCode != http.StatusOK || !bytes.Equal(body, module) {
		t.Errorf("GET after re-pull = %d with %d bytes, want the module", resp.StatusCode, len(body))
	}
	if probs := f.Problems(); len(probs) != 0 {
		t.Errorf("Problems() after re-pull = %+v, want none", probs)
	}
}

func TestResolveRechecksChangedModuleFile(t *testing.T) {
	tr := newTestRegistry(t)
	module := validModule(t)
	tr.pushWasm(t, "filters/recheck:v1", module)
	url := tr.ref("filters/recheck:v1")
	var lost lostRecorder
	f := newTestFetcher(t, "", func(o *Options) { o.OnModuleLost = lost.hook })
	m := mustResolve(t, f, Request{URL: url}, module)

	corruptByte(t, m.Path)
	tr.resetCounts()
	mustResolve(t, f, Request{URL: url}, module)
	if got := tr.count("GET blob"); got != 1 {
		t.Errorf("resolve of a corrupt cached module fetched %d blobs, want 1", got)
	}
	if got := lost.got(); len(got) != 1 {
		t.Errorf("OnModuleLost calls = %v, want one", got)
	}
}

func TestStartupQuarantinesCorruptModules(t *testing.T) {
	tr := newTestRegistry(t)
	good, bad := validModule(t), validModule(t)
	tr.pushWasm(t, "filters/good:v1", good)
	tr.pushWasm(t, "filters/bad:v1", bad)
	dir := t.TempDir()
	f := newTestFetcher(t, dir, nil)
	mustResolve(t, f, Request{URL: tr.ref("filters/good:v1")}, good)
	mb := mustResolve(t, f, Request{URL: tr.ref("filters/bad:v1")}, bad)
	tr.srv.Close()
	// Same size, and the mtime put back: only hashing can tell.
	info, err := os.Stat(mb.Path)
	if err != nil {
		t.Fatal(err)
	}
	corruptByte(t, mb.Path)
	if err := os.Chtimes(mb.Path, info.ModTime(), info.ModTime()); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	var lost lostRecorder
	f = newTestFetcher(t, dir, func(o *Options) { o.Registerer = reg; o.OnModuleLost = lost.hook })
	if got := lost.got(); len(got) != 1 || got[0] != mb.SHA256 {
		t.Errorf("OnModuleLost calls = %v, want [%s]", got, mb.SHA256)
	}
	if got := metricValue(t, reg, "wasmxds_fetcher_cache_corrupt_total", "check", "startup"); got != 1 {
		t.Errorf("corrupt metric = %v, want 1", got)
	}
	mustResolve(t, f, Request{URL: tr.ref("filters/good:v1")}, good)
	if _, err := f.Resolve(context.Background(), Request{URL: tr.ref("filters/bad:v1")}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("resolve of the quarantined module with the registry down: err = %v, want ErrUnavailable", err)
	}
}

// TestUnwritableCacheDir stands in for a read-only or full disk with a
// trick that stops root too (tests run as root, so permissions would not):
// the cache's tmp directory, where every write starts, is a regular file.
func TestUnwritableCacheDir(t *testing.T) {
	tr := newTestRegistry(t)
	cached, fresh := validModule(t), validModule(t)
	tr.pushWasm(t, "filters/cached:v1", cached)
	tr.pushWasm(t, "filters/fresh:v1", fresh)
	dir := t.TempDir()
	mustResolve(t, newTestFetcher(t, dir, nil), Request{URL: tr.ref("filters/cached:v1")}, cached)
	tmp := filepath.Join(dir, "tmp")
	if err := os.RemoveAll(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmp, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	f := newTestFetcher(t, dir, func(o *Options) { o.Registerer = reg })
	if err := f.Degraded(); err == nil || !strings.Contains(err.Error(), tmp) {
		t.Errorf("Degraded() = %v, want an error naming %s", err, tmp)
	}
	if got := metricValue(t, reg, "wasmxds_fetcher_cache_degraded"); got != 1 {
		t.Errorf("degraded gauge = %v, want 1", got)
	}
	m := mustResolve(t, f, Request{URL: tr.ref("filters/cached:v1")}, cached)
	f.SetInUse([]string{m.SHA256})
	srv := httptest.NewServer(f.Handler())
	t.Cleanup(srv.Close)
	if resp, body := get(t, http.MethodGet, srv.URL+ModulePathPrefix+m.SHA256); resp.StatusCode != http.StatusOK || !bytes.Equal(body, cached) {
		t.Errorf("GET from a read-only cache = %d", resp.StatusCode)
	}
	_, err := f.Resolve(context.Background(), Request{URL: tr.ref("filters/fresh:v1")})
	if !errors.Is(err, ErrCacheWrite) || !strings.Contains(err.Error(), "filters/fresh:v1") || !strings.Contains(err.Error(), tmp) {
		t.Errorf("resolve into a read-only cache: err = %v, want ErrCacheWrite naming the reference and %s", err, tmp)
	}

	if err := os.Remove(tmp); err != nil {
		t.Fatal(err)
	}
	mustResolve(t, f, Request{URL: tr.ref("filters/fresh:v1")}, fresh)
	if err := f.Degraded(); err != nil {
		t.Errorf("Degraded() after recovery = %v", err)
	}
	if got := metricValue(t, reg, "wasmxds_fetcher_cache_degraded"); got != 0 {
		t.Errorf("degraded gauge after recovery = %v, want 0", got)
	}
}

func TestUnwritableCacheRecoversOnFlush(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmp")
	if err := os.WriteFile(tmp, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f := newTestFetcher(t, dir, nil)
	if f.Degraded() == nil {
		t.Fatal("Degraded() = nil with an unwritable cache")
	}
	if err := f.Flush(); err == nil {
		t.Error("Flush into an unwritable cache succeeded")
	}
	if err := os.Remove(tmp); err != nil {
		t.Fatal(err)
	}
	if err := f.Flush(); err != nil {
		t.Errorf("Flush after recovery: %v", err)
	}
	if err := f.Degraded(); err != nil {
		t.Errorf("Degraded() after recovery = %v", err)
	}
}

func TestEndlessHTTPBodyStopsAtCapWithoutBuffering(t *testing.T) {
	const limit = 8 << 20
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 32<<10)
		copy(buf, wasmHeader)
		for {
			if _, err := w.Write(buf); err != nil {
				return
			}
			clear(buf[:len(wasmHeader)])
		}
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	f := newTestFetcher(t, dir, func(o *Options) { o.MaxModuleSize = limit })

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := f.Resolve(context.Background(), Request{URL: srv.URL + "/endless.wasm"})
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), strconv.Itoa(limit)) {
		t.Fatalf("endless body: err = %v, want ErrTooLarge naming %d", err, limit)
	}
	grown := after.TotalAlloc - before.TotalAlloc
	t.Logf("an endless body capped at %d bytes allocated %d bytes", limit, grown)
	if grown > limit/4 {
		t.Errorf("an endless pull allocated %d bytes, want well under the %d byte cap", grown, limit)
	}
	left, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil || len(left) != 0 {
		t.Errorf("temp files left behind: %v %v", left, err)
	}
}

func TestNilLoggerDiscards(t *testing.T) {
	f, err := New(Options{CacheDir: t.TempDir(), DockerConfig: writeDockerConfig(t, map[string]any{})})
	if err != nil {
		t.Fatal(err)
	}
	if f.log.Handler().Enabled(context.Background(), slog.LevelError) {
		t.Error("a nil Logger logs")
	}
}

// corruptByteKeepingStat alters one byte of a file in place and restores
// its mtime: the change a stat cannot see (bit rot, an edit that kept the
// time).
func corruptByteKeepingStat(t *testing.T, path string) {
	t.Helper()
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	corruptByte(t, path)
	if err := os.Chtimes(path, before.ModTime(), before.ModTime()); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(path)
	if err != nil || !sameFile(before, after) {
		t.Fatalf("the altered file looks changed to a stat (%v): the test needs it not to", err)
	}
}

// A module file altered in place with its size and mtime kept, after it was
// served and verified once, is never sent whole: a GET (with a Range
// header or not) is cut before its last bytes, and the module is
// quarantined and pulled again.
func TestModuleAlteredInPlaceIsNeverServedWhole(t *testing.T) {
	for _, ranged := range []bool{false, true} {
		t.Run(map[bool]string{false: "whole", true: "range"}[ranged], func(t *testing.T) {
			tr := newTestRegistry(t)
			module := validModule(t)
			tr.pushWasm(t, "filters/rot:v1", module)
			url := tr.ref("filters/rot:v1")
			var lost lostRecorder
			f := newTestFetcher(t, t.TempDir(), func(o *Options) { o.OnModuleLost = lost.hook })
			m := mustResolve(t, f, Request{URL: url}, module)
			f.SetInUse([]string{m.SHA256})
			srv := httptest.NewServer(f.Handler())
			t.Cleanup(srv.Close)
			modURL := srv.URL + ModulePathPrefix + m.SHA256
			if resp, body := get(t, http.MethodGet, modURL); resp.StatusCode != http.StatusOK || !bytes.Equal(body, module) {
				t.Fatalf("GET before the change = %d", resp.StatusCode)
			}

			corruptByteKeepingStat(t, m.Path)
			req, _ := http.NewRequest(http.MethodGet, modURL, nil)
			if ranged {
				req.Header.Set("Range", "bytes=0-63")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, readErr := io.ReadAll(resp.Body)
			resp.Body.Close()
			// A range is answered as a whole download, cut the same way.
			if readErr == nil {
				t.Errorf("GET of an altered module completed (%d, %d of %d bytes), want the body cut short", resp.StatusCode, len(body), len(module))
			}
			if len(body) >= len(module) {
				t.Errorf("GET of an altered module sent %d bytes, the whole file", len(body))
			}
			if got := lost.got(); len(got) != 1 || got[0] != m.SHA256 {
				t.Errorf("OnModuleLost calls = %v, want [%s]", got, m.SHA256)
			}
			if resp, _ := get(t, http.MethodGet, modURL); resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("GET after quarantine = %d, want 503", resp.StatusCode)
			}
			mustResolve(t, f, Request{URL: url}, module)
			if resp, body := get(t, http.MethodGet, modURL); resp.StatusCode != http.StatusOK || !bytes.Equal(body, module) {
				t.Errorf("GET after the pull again = %d with %d bytes, want the module", resp.StatusCode, len(body))
			}
		})
	}
}

// A cached module emptied in place is not sent as a whole (empty) body
// under its digest: an empty body needs no read to be sent, so it is
// checked before anything is sent.
func TestEmptiedModuleIsNotServed(t *testing.T) {
	tr := newTestRegistry(t)
	module := validModule(t)
	tr.pushWasm(t, "filters/empty:v1", module)
	var lost lostRecorder
	f := newTestFetcher(t, t.TempDir(), func(o *Options) { o.OnModuleLost = lost.hook })
	m := mustResolve(t, f, Request{URL: tr.ref("filters/empty:v1")}, module)
	f.SetInUse([]string{m.SHA256})
	srv := httptest.NewServer(f.Handler())
	t.Cleanup(srv.Close)
	if err := os.Truncate(m.Path, 0); err != nil {
		t.Fatal(err)
	}
	// The verification shortcut is keyed on identity, size and mtime: a
	// truncated file differs in size, so pretend it was verified as it is.
	if info, err := os.Stat(m.Path); err == nil {
		f.cache.markVerified(m.SHA256, info)
	}
	resp, body := get(t, http.MethodGet, srv.URL+ModulePathPrefix+m.SHA256)
	if resp.StatusCode == http.StatusOK {
		t.Errorf("GET of an emptied module = 200 with %d bytes, want it refused", len(body))
	}
	if got := lost.got(); len(got) != 1 {
		t.Errorf("OnModuleLost calls = %v, want one", got)
	}
}
