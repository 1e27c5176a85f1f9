package fetcher

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"
)

// Where a corrupt module was found: the bounded values of the check label.
const (
	checkStartup = "startup"
	checkServe   = "serve"
	checkResolve = "resolve"
)

// maxProblems bounds the problems kept for status pages.
const maxProblems = 64

// errCorrupt: a cached file's content does not hash to its name.
var errCorrupt = errors.New("cached module corrupt")

// Problem is a cached module whose file was found not to match its sha256
// and was quarantined. It is cleared once the module is stored again.
type Problem struct {
	SHA256 string `json:"sha256"`
	// Refs are the references that had resolved to the module; they pull
	// again on their next Resolve.
	Refs  []string `json:"refs,omitempty"`
	Error string   `json:"error"`
	// Quarantine is where the bad file was moved; "" if it could only be
	// deleted, or neither (it is never served either way).
	Quarantine string    `json:"quarantine,omitempty"`
	Time       time.Time `json:"time"`
}

type problems struct {
	mu sync.Mutex
	m  map[string]Problem
}

func (p *problems) add(pr Problem) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]Problem{}
	}
	p.m[pr.SHA256] = pr
	for len(p.m) > maxProblems {
		oldest := pr
		for _, x := range p.m {
			if x.Time.Before(oldest.Time) {
				oldest = x
			}
		}
		delete(p.m, oldest.SHA256)
	}
}

func (p *problems) clear(hex string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, hex)
}

func (p *problems) has(hex string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.m[hex]
	return ok
}

func (p *problems) list() []Problem {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Problem, 0, len(p.m))
	for _, x := range p.m {
		out = append(out, x)
	}
	slices.SortFunc(out, func(a, b Problem) int { return a.Time.Compare(b.Time) })
	return out
}

// verifyAll hashes every cached module, quarantining those that do not
// match their name.
func (f *Fetcher) verifyAll() {
	for _, m := range f.cache.modules() {
		f.intact(m.SHA256, checkStartup)
	}
}

// intact reports whether the cached file of a module may be used: see
// checkFile.
func (f *Fetcher) intact(want, check string) bool {
	if info, err := os.Stat(f.cache.path(want)); err == nil && f.cache.verifiedAs(want, info) {
		return true // the common case: one stat
	}
	file, err := os.Open(f.cache.path(want))
	if err != nil {
		return false
	}
	defer file.Close()
	return f.checkFile(want, file, check) == nil
}

// checkFile makes sure the open cached file of a module holds the bytes
// its name promises. It hashes only when the file's identity, size or mtime
// differ from when it was last found good, so a cache hit costs one fstat.
// A file that does not match is quarantined and reported.
func (f *Fetcher) checkFile(want string, file *os.File, check string) error {
	info, err := file.Stat()
	if err != nil {
		return fmt.Errorf("stat cached module: %w", err)
	}
	if f.cache.verifiedAs(want, info) {
		return nil
	}
	return f.hashOpen(want, file, info, check)
}

func (f *Fetcher) hashOpen(want string, file *os.File, info os.FileInfo, check string) error {
	h := sha256.New()
	_, err := io.Copy(h, file)
	if _, serr := file.Seek(0, io.SeekStart); err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("read cached module %s: %w", file.Name(), err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		err := fmt.Errorf("%w: %s hashes to sha256:%s", errCorrupt, file.Name(), got)
		f.lost(want, info, check, err)
		return err
	}
	f.cache.markVerified(want, info)
	return nil
}

// lost quarantines a module found corrupt, then logs, counts, reports it
// and tells the owner, without holding any lock.
func (f *Fetcher) lost(hex string, info os.FileInfo, check string, cause error) {
	refs, dest, ok := f.cache.quarantine(hex, info)
	if !ok {
		return // already dealt with, or replaced by a fresh copy meanwhile
	}
	f.metrics.corrupt.WithLabelValues(check).Inc()
	f.log.Error("cached module corrupt: quarantined, not served; its references pull again",
		"sha256", hex, "refs", refs, "quarantine", dest, "check", check, "error", cause)
	f.problems.add(Problem{SHA256: hex, Refs: refs, Error: cause.Error(), Quarantine: dest, Time: time.Now()})
	if f.opts.OnModuleLost != nil {
		f.opts.OnModuleLost(hex)
	}
}

func sameFile(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// verifiedAs reports whether info is the file last found good for hex.
func (c *cache) verifiedAs(hex string, info os.FileInfo) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.verified[hex]
	return ok && sameFile(v, info)
}

func (c *cache) markVerified(hex string, info os.FileInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.idx.Modules[hex]; ok {
		c.verified[hex] = info
	}
}

// quarantine moves the checked file of hex aside and forgets the module and
// the references to it, unless the module is no longer indexed or its file
// was replaced since the check. It returns those references and where the
// file went.
func (c *cache) quarantine(hex string, checked os.FileInfo) ([]string, string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.idx.Modules[hex]; !ok {
		return nil, "", false
	}
	if cur, err := os.Stat(c.path(hex)); err == nil && !sameFile(cur, checked) {
		return nil, "", false
	}
	var refs []string
	for ref, r := range c.idx.Refs {
		if r.SHA256 == hex {
			refs = append(refs, ref)
		}
	}
	sort.Strings(refs)
	dest := c.moveAsideLocked(hex)
	c.forgetLocked(hex)
	if err := c.saveLocked(); err != nil {
		c.log.Warn("cache index not saved", "error", err)
	}
	return refs, dest, true
}

// moveAsideLocked moves a bad module file to the quarantine directory for
// inspection, or deletes it when it cannot be moved. Either way the module
// is forgotten, so it is not served.
func (c *cache) moveAsideLocked(hex string) string {
	dest := filepath.Join(c.quarantineDir(), fmt.Sprintf("%s-%d.wasm", hex, c.now().UnixNano()))
	err := os.MkdirAll(c.quarantineDir(), 0o755)
	if err == nil {
		err = os.Rename(c.path(hex), dest)
	}
	if err == nil {
		return dest
	}
	if rerr := os.Remove(c.path(hex)); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		c.log.Error("corrupt module file can be neither quarantined nor removed", "sha256", hex,
			"error", errors.Join(err, rerr))
	}
	return ""
}
