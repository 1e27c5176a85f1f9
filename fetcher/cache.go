package fetcher

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/wasmxds/wasmxds/internal/modref"
)

const (
	indexName    = "index.json"
	indexVersion = 1
	// touchPersistEvery bounds index writes caused only by cache hits;
	// last-used times need minute precision at best for a GC grace of hours.
	touchPersistEvery = time.Minute
)

// ModuleInfo describes one cached module, for status pages.
type ModuleInfo struct {
	SHA256   string    `json:"sha256"`
	Size     int64     `json:"size"`
	Refs     []string  `json:"refs,omitempty"` // references that last resolved to it
	LastUsed time.Time `json:"lastUsed"`
	InUse    bool      `json:"inUse"`
}

type refEntry struct {
	SHA256         string    `json:"sha256"`
	ManifestDigest string    `json:"manifestDigest,omitempty"`
	Digests        []string  `json:"digests,omitempty"` // index and chosen child manifests
	Resolved       time.Time `json:"resolved"`
}

type moduleEntry struct {
	Size     int64     `json:"size"`
	LastUsed time.Time `json:"lastUsed"`
}

type indexFile struct {
	Version int                    `json:"version"`
	Refs    map[string]refEntry    `json:"refs"`
	Modules map[string]moduleEntry `json:"modules"`
}

// cache is the content-addressed module store plus its index. The index is
// rewritten whole (temp file, fsync, rename) under mu, so a crash leaves
// either the old or the new index, never a torn one.
type cache struct {
	dir   string
	log   *slog.Logger
	now   func() time.Time
	mu    sync.Mutex
	idx   indexFile
	inUse map[string]bool
	saved time.Time
}

func openCache(dir string, log *slog.Logger, now func() time.Time) (*cache, error) {
	c := &cache{dir: dir, log: log, now: now, inUse: map[string]bool{}}
	for _, d := range []string{c.modulesDir(), c.tmpDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create cache directory: %w", err)
		}
	}
	c.cleanTmp()
	if err := c.load(); err != nil {
		return nil, err
	}
	c.reconcile()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c, c.saveLocked()
}

func (c *cache) modulesDir() string { return filepath.Join(c.dir, "sha256") }
func (c *cache) tmpDir() string     { return filepath.Join(c.dir, "tmp") }

// path is where the module with the given sha256 hex lives.
func (c *cache) path(hex string) string { return filepath.Join(c.modulesDir(), hex+".wasm") }

// cleanTmp removes temp files a crash left behind; nothing else writes there
// while the cache is being opened.
func (c *cache) cleanTmp() {
	entries, _ := os.ReadDir(c.tmpDir())
	for _, e := range entries {
		_ = os.Remove(filepath.Join(c.tmpDir(), e.Name()))
	}
}

func (c *cache) load() error {
	c.idx = indexFile{Version: indexVersion, Refs: map[string]refEntry{}, Modules: map[string]moduleEntry{}}
	b, err := os.ReadFile(filepath.Join(c.dir, indexName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read cache index: %w", err)
	}
	var idx indexFile
	if err := json.Unmarshal(b, &idx); err != nil || idx.Version != indexVersion {
		// The modules themselves are intact and self-describing; only the
		// reference mapping is lost, which costs one re-resolve per reference.
		c.log.Warn("cache index unreadable, rebuilding from module files", "error", err)
		return nil
	}
	if idx.Refs != nil {
		c.idx.Refs = idx.Refs
	}
	if idx.Modules != nil {
		c.idx.Modules = idx.Modules
	}
	return nil
}

// reconcile makes the index agree with the files on disk: entries without a
// file are dropped, files without an entry are adopted so GC can age them out.
func (c *cache) reconcile() {
	for hex := range c.idx.Modules {
		if _, err := os.Stat(c.path(hex)); err != nil {
			delete(c.idx.Modules, hex)
		}
	}
	entries, _ := os.ReadDir(c.modulesDir())
	for _, e := range entries {
		hex, ok := strings.CutSuffix(e.Name(), ".wasm")
		info, err := e.Info()
		if !ok || !modref.ValidHex(hex) || err != nil || !info.Mode().IsRegular() {
			continue
		}
		if _, known := c.idx.Modules[hex]; !known {
			c.idx.Modules[hex] = moduleEntry{Size: info.Size(), LastUsed: info.ModTime()}
		}
	}
	for ref, r := range c.idx.Refs {
		if _, ok := c.idx.Modules[r.SHA256]; !ok {
			delete(c.idx.Refs, ref)
		}
	}
}

func (c *cache) saveLocked() error {
	b, err := json.MarshalIndent(c.idx, "", "  ")
	if err != nil {
		return fmt.Errorf("encode cache index: %w", err)
	}
	if err := writeFileAtomic(c.tmpDir(), filepath.Join(c.dir, indexName), b); err != nil {
		return fmt.Errorf("write cache index: %w", err)
	}
	c.saved = c.now()
	return nil
}

// lookup returns the cached resolution of ref whose module file is present.
func (c *cache) lookup(ref string) (refEntry, moduleEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.idx.Refs[ref]
	if !ok {
		return refEntry{}, moduleEntry{}, false
	}
	m, ok := c.idx.Modules[r.SHA256]
	if !ok || !fileExists(c.path(r.SHA256)) {
		return refEntry{}, moduleEntry{}, false
	}
	return r, m, true
}

// findPinned finds a cached module whose sha256 or manifest digest is pin.
func (c *cache) findPinned(pin string) (refEntry, moduleEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m, ok := c.idx.Modules[pin]; ok && fileExists(c.path(pin)) {
		return refEntry{SHA256: pin}, m, true
	}
	for _, r := range c.idx.Refs {
		if r.ManifestDigest == "sha256:"+pin {
			if m, ok := c.idx.Modules[r.SHA256]; ok && fileExists(c.path(r.SHA256)) {
				return r, m, true
			}
		}
	}
	return refEntry{}, moduleEntry{}, false
}

// store writes module bytes (already verified) under their sha256 and
// records ref → module in the index.
func (c *cache) store(ref string, r refEntry, b []byte) error {
	tmp, err := writeTemp(c.tmpDir(), b)
	if err != nil {
		return fmt.Errorf("write module to cache: %w", err)
	}
	defer os.Remove(tmp) // no-op after a successful rename
	c.mu.Lock()
	defer c.mu.Unlock()
	// Renaming under mu keeps GC from deleting the file between the rename
	// and the index update.
	if err := os.Rename(tmp, c.path(r.SHA256)); err != nil {
		return fmt.Errorf("write module to cache: %w", err)
	}
	if err := syncDir(c.modulesDir()); err != nil {
		return fmt.Errorf("write module to cache: %w", err)
	}
	now := c.now()
	r.Resolved = now
	c.idx.Refs[ref] = r
	c.idx.Modules[r.SHA256] = moduleEntry{Size: int64(len(b)), LastUsed: now}
	return c.saveLocked()
}

// record maps ref to a module already in the cache.
func (c *cache) record(ref string, r refEntry) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.idx.Modules[r.SHA256]
	if !ok {
		return fmt.Errorf("module sha256:%s left the cache: %w", r.SHA256, ErrNotFound)
	}
	now := c.now()
	r.Resolved = now
	c.idx.Refs[ref] = r
	m.LastUsed = now
	c.idx.Modules[r.SHA256] = m
	return c.saveLocked()
}

// touch marks a module used now; the index is persisted at most once per
// touchPersistEvery for touches alone.
func (c *cache) touch(hex string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.idx.Modules[hex]
	if !ok {
		return
	}
	m.LastUsed = c.now()
	c.idx.Modules[hex] = m
	if c.now().Sub(c.saved) >= touchPersistEvery {
		if err := c.saveLocked(); err != nil {
			c.log.Warn("cache index not saved", "error", err)
		}
	}
}

// setInUse replaces the in-use set. Modules entering or leaving it are
// marked used now, so the GC grace period starts when a module stops being
// served.
func (c *cache) setInUse(hexes []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := make(map[string]bool, len(hexes))
	for _, h := range hexes {
		next[h] = true
	}
	now := c.now()
	for h := range mergeKeys(c.inUse, next) {
		if m, ok := c.idx.Modules[h]; ok {
			m.LastUsed = now
			c.idx.Modules[h] = m
		}
	}
	c.inUse = next
	if err := c.saveLocked(); err != nil {
		c.log.Warn("cache index not saved", "error", err)
	}
}

func (c *cache) isInUse(hex string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inUse[hex]
}

func (c *cache) modules() []ModuleInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	refs := map[string][]string{}
	for ref, r := range c.idx.Refs {
		refs[r.SHA256] = append(refs[r.SHA256], ref)
	}
	out := make([]ModuleInfo, 0, len(c.idx.Modules))
	for hex, m := range c.idx.Modules {
		sort.Strings(refs[hex])
		out = append(out, ModuleInfo{SHA256: hex, Size: m.Size, Refs: refs[hex],
			LastUsed: m.LastUsed, InUse: c.inUse[hex]})
	}
	slices.SortFunc(out, func(a, b ModuleInfo) int { return strings.Compare(a.SHA256, b.SHA256) })
	return out
}

func mergeKeys(a, b map[string]bool) map[string]bool {
	out := make(map[string]bool, len(a)+len(b))
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

func fileExists(p string) bool {
	info, err := os.Stat(p)
	return err == nil && info.Mode().IsRegular()
}

func (c *cache) totalBytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for _, m := range c.idx.Modules {
		n += m.Size
	}
	return n
}
