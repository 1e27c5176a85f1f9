package fetcher

import (
	"fmt"
	"strings"
)

// ModuleURL is where a module server at base (scheme://host:port) serves
// the module with the given sha256.
func ModuleURL(base, sha256Hex string) string {
	return strings.TrimRight(base, "/") + ModulePathPrefix + sha256Hex
}

// Cached answers req from the cache alone, never contacting the network:
// the module the reference (or the pin) last resolved to, if it is cached.
// With a VerificationKey, only a module verified with that key is an
// answer. For an Always request that is the last known module, which a later
// Resolve may replace. file:// URLs are never answered from the cache.
func (f *Fetcher) Cached(req Request) (Module, bool) {
	src, err := parseSource(req.URL)
	if err != nil {
		return Module{}, false
	}
	if req.SHA256, err = parsePin(req.SHA256); err != nil {
		return Module{}, false
	}
	key, err := verificationKey(req, src)
	if err != nil {
		return Module{}, false
	}
	req.URL, req.Always = src.key, false
	m, ok := f.fromCache(src, req, key)
	if ok {
		f.metrics.cacheHits.Inc()
	}
	return m, ok
}

// CachedModule returns the cached module with the given sha256, if present.
func (f *Fetcher) CachedModule(sha256Hex string) (Module, bool) {
	r, m, ok := f.cache.findPinned(sha256Hex)
	if !ok || r.SHA256 != sha256Hex {
		return Module{}, false
	}
	return f.module(fmt.Sprintf("sha256:%s", sha256Hex), r, m.Size, nil), true
}
