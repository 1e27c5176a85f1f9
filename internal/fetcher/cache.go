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

	"github.com/wasmxds/wasmxds/internal/atomicfile"
	"github.com/wasmxds/wasmxds/internal/modref"
)

const (
	indexName    = "index.json"
	prevSuffix   = ".prev"
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
	SHA256         string   `json:"sha256"`
	ManifestDigest string   `json:"manifestDigest,omitempty"`
	Digests        []string `json:"digests,omitempty"` // index and chosen child manifests
	// Verified lists the fingerprints of the keys ManifestDigest's
	// signature was verified with.
	Verified []string  `json:"verified,omitempty"`
	Resolved time.Time `json:"resolved"`
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

// cache is the content-addressed module store plus its index. The index
// lives in memory; it is written whole to index.json and a second copy,
// index.json.prev (temp file, fsync, rename each, then a directory fsync),
// when a reference mapping changes, and at most once per touchPersistEvery
// for last-used times alone. A write that fails leaves the index dirty for
// the next attempt and the cache degraded until a write succeeds.
type cache struct {
	dir   string
	log   *slog.Logger
	now   func() time.Time
	mu    sync.Mutex
	idx   indexFile
	inUse map[string]bool
	// saved is when the index was last written, or a write last failed.
	saved time.Time
	// dirty: idx holds changes index.json lacks.
	dirty bool
	// writeErr is the last failed write to the cache directory, nil once a
	// later write succeeded.
	writeErr error
	// verified holds, per module, the file's identity, size and mtime when
	// its content last hashed to its name.
	verified map[string]os.FileInfo
}

// openCache opens the cache in dir. It never fails: an unreadable index
// falls back to its copy, then to the module files; a directory that
// cannot be written leaves the cache degraded but serving what it holds.
func openCache(dir string, log *slog.Logger, now func() time.Time) *cache {
	c := &cache{dir: dir, log: log, now: now, inUse: map[string]bool{}, verified: map[string]os.FileInfo{}}
	for _, d := range []string{c.modulesDir(), c.tmpDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			c.writeErr = fmt.Errorf("%w: create cache directory: %w", ErrCacheWrite, err)
		}
	}
	c.cleanTmp()
	c.load()
	c.reconcile()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.saveLocked(); err != nil {
		c.log.Warn("module cache not writable: serving the modules it holds, new pulls fail", "dir", dir, "error", err)
	}
	return c
}

func (c *cache) modulesDir() string    { return filepath.Join(c.dir, "sha256") }
func (c *cache) tmpDir() string        { return filepath.Join(c.dir, "tmp") }
func (c *cache) quarantineDir() string { return filepath.Join(c.dir, "quarantine") }
func (c *cache) indexPath() string     { return filepath.Join(c.dir, indexName) }

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

// load reads index.json, or its copy when it is unreadable. Modules are
// self-describing, so with neither only the reference mapping is lost,
// which costs one pull per reference.
func (c *cache) load() {
	c.idx = indexFile{Version: indexVersion, Refs: map[string]refEntry{}, Modules: map[string]moduleEntry{}}
	main, prev := c.indexPath(), c.indexPath()+prevSuffix
	idx, err := readIndex(main)
	if err == nil {
		c.use(idx)
		return
	}
	pidx, perr := readIndex(prev)
	switch {
	case errors.Is(err, fs.ErrNotExist) && errors.Is(perr, fs.ErrNotExist):
		// A new cache.
	case perr == nil:
		c.log.Warn("cache index unreadable, using its copy", "file", main, "copy", prev, "error", err)
		c.use(pidx)
	default:
		c.log.Warn("cache index and its copy unreadable, rebuilding from module files; references pull again",
			"file", main, "error", err, "copyError", perr)
	}
}

func readIndex(path string) (indexFile, error) {
	var idx indexFile
	b, err := os.ReadFile(path)
	if err != nil {
		return idx, err
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return idx, fmt.Errorf("%s: %w", path, err)
	}
	if idx.Version != indexVersion {
		return idx, fmt.Errorf("%s: version %d, want %d", path, idx.Version, indexVersion)
	}
	return idx, nil
}

func (c *cache) use(idx indexFile) {
	if idx.Refs != nil {
		c.idx.Refs = idx.Refs
	}
	if idx.Modules != nil {
		c.idx.Modules = idx.Modules
	}
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

// saveLocked writes the index now.
func (c *cache) saveLocked() error {
	b, err := json.MarshalIndent(c.idx, "", "  ")
	if err != nil {
		return fmt.Errorf("encode cache index: %w", err)
	}
	c.saved = c.now()
	err = os.MkdirAll(c.tmpDir(), 0o755) // gone if the directory was unwritable at start
	if err == nil {
		err = writeIndexFiles(c.tmpDir(), c.indexPath(), b)
	}
	if err != nil {
		c.dirty = true
		c.writeErr = fmt.Errorf("%w: write cache index: %w", ErrCacheWrite, err)
		return c.writeErr
	}
	c.dirty, c.writeErr = false, nil
	return nil
}

// saveSoonLocked writes a dirty index if the last write (or attempt) is
// touchPersistEvery old: for changes that only move last-used times.
func (c *cache) saveSoonLocked() {
	if c.dirty && c.now().Sub(c.saved) >= touchPersistEvery {
		if err := c.saveLocked(); err != nil {
			c.log.Warn("cache index not saved", "error", err)
		}
	}
}

// flush writes the index if it has unsaved changes or the last write
// failed, which makes it the probe that ends a degraded state.
func (c *cache) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.dirty && c.writeErr == nil {
		return nil
	}
	return c.saveLocked()
}

// writeFailed records a failed write to the cache directory.
func (c *cache) writeFailed(err error) error {
	err = fmt.Errorf("%w: %w", ErrCacheWrite, err)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writeErr = err
	return err
}

// degraded returns the last failed write, nil once a write succeeded.
func (c *cache) degraded() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writeErr
}

// lookup returns the cached resolution of ref; callers check the file with
// Fetcher.intact.
func (c *cache) lookup(ref string) (refEntry, moduleEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.idx.Refs[ref]
	if !ok {
		return refEntry{}, moduleEntry{}, false
	}
	m, ok := c.idx.Modules[r.SHA256]
	if !ok {
		return refEntry{}, moduleEntry{}, false
	}
	return r, m, true
}

// findPinned finds a cached module whose sha256 or manifest digest is pin.
func (c *cache) findPinned(pin string) (refEntry, moduleEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m, ok := c.idx.Modules[pin]; ok {
		return refEntry{SHA256: pin}, m, true
	}
	for _, r := range c.idx.Refs {
		if r.ManifestDigest == "sha256:"+pin {
			if m, ok := c.idx.Modules[r.SHA256]; ok {
				return r, m, true
			}
		}
	}
	return refEntry{}, moduleEntry{}, false
}

// commit moves a spooled, verified module into place under its sha256
// and records ref → module in the index.
func (c *cache) commit(ref string, r refEntry, sp *spool) error {
	if err := sp.finish(); err != nil {
		return c.writeFailed(fmt.Errorf("write module: %w", err))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	// Renaming under mu keeps GC from deleting the file between the rename
	// and the index update.
	if err := c.renameLocked(sp.name, c.path(r.SHA256)); err != nil {
		c.writeErr = fmt.Errorf("%w: write module: %w", ErrCacheWrite, err)
		return c.writeErr
	}
	sp.committed = true
	if info, err := os.Stat(c.path(r.SHA256)); err == nil {
		c.verified[r.SHA256] = info // its content was hashed on the way in
	}
	now := c.now()
	r.Resolved = now
	c.idx.Refs[ref] = r
	c.idx.Modules[r.SHA256] = moduleEntry{Size: sp.size, LastUsed: now}
	if err := c.saveLocked(); err != nil {
		c.log.Warn("cache index not saved", "error", err)
	}
	return nil
}

func (c *cache) renameLocked(from, to string) error {
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	return atomicfile.Rename(from, to)
}

// record maps ref to a module already in the cache. A changed mapping is
// written at once; a confirmed one only with the last-used rate limit.
func (c *cache) record(ref string, r refEntry) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.idx.Modules[r.SHA256]
	if !ok {
		return fmt.Errorf("module sha256:%s left the cache: %w", r.SHA256, ErrNotFound)
	}
	old, had := c.idx.Refs[ref]
	now := c.now()
	r.Resolved = now
	c.idx.Refs[ref] = r
	m.LastUsed = now
	c.idx.Modules[r.SHA256] = m
	c.dirty = true
	if had && old.SHA256 == r.SHA256 && old.ManifestDigest == r.ManifestDigest && slices.Equal(old.Digests, r.Digests) &&
		slices.Equal(old.Verified, r.Verified) {
		c.saveSoonLocked()
		return nil
	}
	if err := c.saveLocked(); err != nil {
		c.log.Warn("cache index not saved", "error", err)
	}
	return nil
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
	c.dirty = true
	c.saveSoonLocked()
}

// setInUse replaces the in-use set. Modules in the old or the new set are
// marked used now, so the GC grace period starts when a module stops being
// served. It never writes: it runs on every config push, and the times it
// changes reach the disk with the next rate-limited or explicit flush.
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
			c.dirty = true
		}
	}
	c.inUse = next
}

// holds reports whether the module is indexed (not forgotten or quarantined).
func (c *cache) holds(hex string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.idx.Modules[hex]
	return ok
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

func (c *cache) totalBytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n int64
	for _, m := range c.idx.Modules {
		n += m.Size
	}
	return n
}
