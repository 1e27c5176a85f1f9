// Package fetcher resolves Wasm module references (OCI registries, http(s),
// local files) to verified module bytes in a content-addressed disk cache,
// and serves the modules in use over HTTP for proxies to download by sha256.
//
// A module is written to the cache only after every check passed: size cap,
// Wasm header, sha256 pin, and a compile-only preflight for the proxy-wasm
// ABI. The cache survives restarts: a reference resolved once is served from
// disk without contacting its source unless the caller asks to re-resolve.
package fetcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"

	"github.com/wasmxds/wasmxds/internal/regularfile"
	"github.com/wasmxds/wasmxds/internal/sigkey"
)

// Defaults for zero Options fields.
const (
	DefaultMaxModuleSize = 256 << 20
	DefaultPullTimeout   = 2 * time.Minute
	DefaultGCGrace       = 24 * time.Hour
)

// Options configure a Fetcher. Only CacheDir is required.
type Options struct {
	// CacheDir holds <CacheDir>/sha256/<hex>.wasm and index.json.
	CacheDir string
	// MaxModuleSize caps a module's size; 0 = DefaultMaxModuleSize. Archives
	// (tar, tar+gzip) may be up to 4× larger, as they may hold other files.
	MaxModuleSize int64
	// InsecureRegistries lists host or host:port registries spoken to over
	// plain HTTP. localhost, 127.0.0.1 and ::1 always are.
	InsecureRegistries []string
	// DockerConfig is a docker config.json for registry credentials;
	// "" = $DOCKER_CONFIG/config.json, else ~/.docker/config.json.
	DockerConfig string
	// PullTimeout bounds one pull, retries included; 0 = DefaultPullTimeout.
	PullTimeout time.Duration
	// GCGrace: GC deletes modules not in use and unused this long;
	// 0 = DefaultGCGrace.
	GCGrace time.Duration
	// MaxCacheBytes caps the cache; GC evicts the least recently used
	// modules not in use until under it. 0 = unlimited.
	MaxCacheBytes int64
	// Retry configures retries of failed requests; zero value = defaults.
	Retry RetryPolicy
	// Transport is the base HTTP transport for registries and http(s)
	// sources; nil = a default transport with connect/header timeouts whose
	// dialer refuses metadata addresses (see AllowLinkLocal). A custom
	// Transport is trusted to do its own dialing: only literal metadata
	// addresses in URLs are refused then.
	Transport http.RoundTripper
	// AllowLinkLocal lets pulls (and the redirects they follow) contact
	// link-local and cloud metadata addresses: 169.254.0.0/16, fe80::/10,
	// fd00:ec2::254 and 100.100.100.200. By default they are refused with
	// ErrRefused before any connection is made, whether a URL names the
	// address or a host name resolves to it, so a spec cannot make the
	// control plane fetch an instance's cloud credentials.
	AllowLinkLocal bool
	// AllowFileRoots, when non-empty, confines file:// modules to these
	// directories: a path that is not inside one of them once symlinks are
	// resolved is refused with ErrRefused. Empty = any readable file.
	AllowFileRoots []string
	// resolver replaces the system resolver when set (tests).
	resolver *net.Resolver
	// Logger; nil = discard. A component=fetcher attribute is added.
	Logger *slog.Logger
	// Registerer for metrics; nil = no metrics registered.
	Registerer prometheus.Registerer
	// OnModuleLost, if set, is called with the sha256 hex of a cached module
	// whose file no longer matches its name (checked at New, and whenever
	// the file changed before it is served or resolved from the cache). The
	// module has been quarantined and forgotten with the references to it,
	// so the next Resolve of any of them pulls again; see Problems. It is
	// called without locks held, possibly during New or from a module
	// server request, and should return quickly (schedule a re-resolve).
	OnModuleLost func(sha256 string)
	// OnServed, if set, is called after Handler sent a whole module with a
	// 200: sha256 is its hex digest, remote the client's address (host:port).
	// It runs on the request's goroutine and must not block.
	OnServed func(sha256, remote string)
	// OnUnknown, if set, makes Handler answer a request for a digest that
	// is not in use with 503 and Retry-After instead of 404, after calling
	// OnUnknown with its hex. Replicas behind one address use it: an Envoy
	// told about a module by one replica may download from another that has
	// not resolved it yet, and should retry while that replica catches up.
	// It runs on the request's goroutine and must not block; any client can
	// call it with any digest, so it must be cheap and rate-limited.
	OnUnknown func(sha256 string)
}

// Request names a module to resolve.
type Request struct {
	// URL: oci://host/repo:tag or @sha256:<hex> (oci:// is the default when
	// there is no scheme; a missing tag means latest; Docker's shorthand
	// applies), http(s)://..., or file:///absolute/path: the grammar of
	// internal/modref. Logs, errors and Module.URL use its canonical form.
	URL string
	// SHA256 optionally pins the content: the OCI manifest digest (of the
	// reference or the chosen index entry) or the module's own sha256, as
	// 64 hex digits, with or without a "sha256:" prefix.
	SHA256 string
	// Always re-resolves the reference now even if it is cached, pulling
	// again only if the manifest digest changed. On failure Resolve returns
	// the cached module together with an error wrapping ErrStale. Digest
	// references, and pins matching a cached module, name immutable content
	// and are still answered from the cache.
	Always bool
	// PullSecret optionally selects registry credentials: a value containing
	// a path separator or ending in ".json" is a docker config.json file, of
	// which only the entry for the URL's registry is used; any other value
	// names an entry (server address) in the Options' docker config, which
	// must be the URL's registry: an entry for another registry fails with
	// ErrRefused before anything is sent. http(s) sources never get
	// registry credentials.
	PullSecret string
	// VerificationKey, when set, is a PEM public key (as cosign
	// generate-key-pair writes cosign.pub): the OCI manifest the reference
	// resolves to must carry a cosign signature made with it, stored under
	// the sha256-<hex>.sig tag of the same repository. It is checked
	// against the registry alone (no transparency log) before the module is
	// pulled; a module without one is refused with an error wrapping
	// ErrSignature and is not cached. A cached module is answered only if
	// it was verified with this key; one pulled without verification, or
	// with another key, is verified again. Only oci:// modules can be
	// verified.
	VerificationKey string
}

// Module is a verified module in the cache.
type Module struct {
	SHA256         string // the module's own sha256, 64 lowercase hex
	Size           int64
	ManifestDigest string // "sha256:..." the OCI reference resolved to; "" otherwise
	URL            string // the canonical spelling of the Request.URL it was resolved for
	Path           string // the cached file
	// SignedBy is the fingerprint of the Request's VerificationKey that the
	// manifest's signature was verified with ("sha256:<hex>" of the key's
	// DER form); "" when the Request had no key.
	SignedBy string
	// Warnings are what the preflight could not check when this process
	// pulled the module (e.g. a Wasm feature its compiler lacks); nil when
	// it checked everything or the module came from the cache at startup.
	Warnings []string
}

// Fetcher resolves, caches and serves modules. It is safe for concurrent use.
type Fetcher struct {
	opts    Options
	maxSize int64
	log     *slog.Logger
	cache   *cache
	metrics *metrics
	client  *http.Client
	store   credentials.Store
	group   singleflight.Group
	notes   preflightWarnings
	// fileRoots are the cleaned absolute Options.AllowFileRoots.
	fileRoots []string
	// secrets are the credentials this Fetcher sent, kept out of errors
	// and logs.
	secrets secrets
	// problems are corrupt modules found, for Problems.
	problems problems

	authMu      sync.Mutex
	authClients map[string]*auth.Client

	// Pulls are shared by every caller of the same reference, so they run
	// on the fetcher's own lifetime, not a caller's; Close ends them.
	life   context.Context
	stop   context.CancelFunc
	pulls  sync.WaitGroup
	lifeMu sync.Mutex
	closed bool
}

// New opens (creating if needed) the cache in opts.CacheDir and hashes
// every cached module, quarantining those that do not match their name. A
// cache directory that cannot be written does not make New fail: the
// Fetcher serves what the cache holds and reports it with Degraded.
func New(opts Options) (*Fetcher, error) {
	if opts.CacheDir == "" {
		return nil, errors.New("fetcher: CacheDir is required")
	}
	f := &Fetcher{opts: opts, maxSize: opts.MaxModuleSize, log: opts.Logger, authClients: map[string]*auth.Client{}}
	f.life, f.stop = context.WithCancel(context.Background())
	if f.maxSize <= 0 {
		f.maxSize = DefaultMaxModuleSize
	}
	if f.opts.PullTimeout <= 0 {
		f.opts.PullTimeout = DefaultPullTimeout
	}
	if f.opts.GCGrace <= 0 {
		f.opts.GCGrace = DefaultGCGrace
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	f.log = f.log.With("component", "fetcher")
	var err error
	if f.store, err = credentialStore(opts.DockerConfig); err != nil {
		return nil, fmt.Errorf("fetcher: %w", err)
	}
	if f.fileRoots, err = regularfile.CleanRoots(opts.AllowFileRoots); err != nil {
		return nil, fmt.Errorf("fetcher: %w", err)
	}
	f.client = newHTTPClient(opts.Transport, opts.Retry, netPolicy{allowLinkLocal: opts.AllowLinkLocal, resolver: opts.resolver})
	f.client.Transport = f.secrets.recording(f.client.Transport)
	f.cache = openCache(opts.CacheDir, f.log, time.Now)
	if f.metrics, err = newMetrics(opts.Registerer, f.cache); err != nil {
		return nil, fmt.Errorf("fetcher: %w", err)
	}
	f.verifyAll()
	return f, nil
}

// Resolve returns the verified module req names, from the cache when
// possible. Without Always, a reference resolved before (or a pin matching a
// cached module) is answered from disk with no network contact. file:// URLs
// are always re-read. Concurrent calls for the same reference share one
// pull. Errors name the reference and wrap this package's sentinel errors;
// with ErrStale, the returned Module is the last good one and usable.
func (f *Fetcher) Resolve(ctx context.Context, req Request) (Module, error) {
	src, err := parseSource(req.URL) // its errors name the URL, credentials redacted
	var key *sigkey.Key
	if err == nil {
		req.URL = src.key
		if req.SHA256, err = parsePin(req.SHA256); err == nil {
			key, err = verificationKey(req, src)
		}
		if err != nil {
			err = fmt.Errorf("%s: %w", src.key, err)
		}
	}
	if err != nil {
		f.metrics.pullDone(err, 0)
		return Module{}, err
	}
	if m, ok := f.fromCache(src, req, key); ok {
		f.metrics.cacheHits.Inc()
		return m, nil
	}
	f.lifeMu.Lock()
	if f.closed {
		f.lifeMu.Unlock()
		return Module{}, fmt.Errorf("%s: %w", req.URL, ErrClosed)
	}
	f.pulls.Add(1)
	f.lifeMu.Unlock()
	ch := make(chan singleflight.Result, 1)
	go func() {
		defer f.pulls.Done()
		v, err, shared := f.group.Do(src.key+"\x00"+req.SHA256+"\x00"+req.PullSecret+"\x00"+fingerprint(key), func() (any, error) {
			return f.pull(f.life, src, req, key)
		})
		ch <- singleflight.Result{Val: v, Err: err, Shared: shared}
	}()
	select {
	case <-ctx.Done():
		return Module{}, fmt.Errorf("%s: %w", req.URL, ctx.Err())
	case r := <-ch:
		m := r.Val.(Module)
		m.URL = req.URL
		return m, r.Err
	}
}

// Close ends the pulls under way and waits for them; later Resolves fail
// with ErrClosed. The cache and the module server stay readable.
func (f *Fetcher) Close() {
	f.lifeMu.Lock()
	f.closed = true
	f.lifeMu.Unlock()
	f.stop()
	f.pulls.Wait()
}

// fromCache answers from disk when the request allows it.
func (f *Fetcher) fromCache(src source, req Request, key *sigkey.Key) (Module, bool) {
	if src.kind == kindFile {
		return Module{}, false
	}
	if !req.Always || src.immutable() {
		if r, m, ok := f.cache.lookup(src.key); ok && pinMatches(req.SHA256, r) && verifiedWith(r, key) && f.intact(r.SHA256, checkResolve) {
			f.cache.touch(r.SHA256)
			return f.module(req.URL, r, m.Size, key), true
		}
	}
	if req.SHA256 == "" {
		return Module{}, false
	}
	// Content is what a pin asks for; whichever reference brought it in.
	r, m, ok := f.cache.findPinned(req.SHA256)
	if !ok || !verifiedWith(r, key) || !f.intact(r.SHA256, checkResolve) {
		return Module{}, false
	}
	if r.ManifestDigest != "" && src.kind != kindOCI {
		r.ManifestDigest = ""
	}
	if err := f.cache.record(src.key, r); err != nil {
		return Module{}, false
	}
	return f.module(req.URL, r, m.Size, key), true
}

func pinMatches(pin string, r refEntry) bool {
	return pin == "" || pin == r.SHA256 || "sha256:"+pin == r.ManifestDigest || slices.Contains(r.Digests, "sha256:"+pin)
}

func (f *Fetcher) module(url string, r refEntry, size int64, key *sigkey.Key) Module {
	return Module{SHA256: r.SHA256, Size: size, ManifestDigest: r.ManifestDigest, URL: url, Path: f.cache.path(r.SHA256),
		SignedBy: fingerprint(key), Warnings: f.notes.of(r.SHA256)}
}

// pull runs once per reference however many callers wait for it.
func (f *Fetcher) pull(ctx context.Context, src source, req Request, key *sigkey.Key) (Module, error) {
	ctx, cancel := context.WithTimeout(ctx, f.opts.PullTimeout)
	defer cancel()
	start := time.Now()
	prev, prevMod, hasPrev := f.cache.lookup(src.key)
	hasPrev = hasPrev && pinMatches(req.SHA256, prev) && f.intact(prev.SHA256, checkResolve)
	m, err := f.fetch(ctx, src, req, key, prev, hasPrev)
	f.metrics.pullDone(err, time.Since(start))
	if err == nil {
		return m, nil
	}
	// A registry may echo credentials back in an error body.
	err = f.secrets.redact(fmt.Errorf("%s: %w", src.key, err))
	// Only a module verified with the key may stand in for a refused one.
	if hasPrev && verifiedWith(prev, key) {
		f.log.Warn("pull failed, keeping the last good module", "ref", src.key, "sha256", prev.SHA256,
			"reason", reasonOf(err), "error", err)
		return f.module(req.URL, prev, prevMod.Size, key), fmt.Errorf("%w sha256:%s: %w", ErrStale, prev.SHA256, err)
	}
	f.log.Warn("pull failed", "ref", src.key, "reason", reasonOf(err), "error", err)
	return Module{}, err
}

// fetch pulls from the source into a temp file, verifies it and moves it
// into the cache. For an OCI reference with a cached resolution it first
// resolves the manifest digest (HEAD) and keeps the cached module when the
// digest did not change, which needs no cache write.
func (f *Fetcher) fetch(ctx context.Context, src source, req Request, key *sigkey.Key, prev refEntry, hasPrev bool) (Module, error) {
	var o ociTarget
	if src.kind == kindOCI {
		var unchanged bool
		var err error
		if o, unchanged, err = f.headOCI(ctx, src, req, prev, hasPrev); err != nil {
			return Module{}, err
		}
		o.key = key
		if unchanged {
			return f.keepVerified(ctx, o, src, req, prev)
		}
	}
	sp, err := f.cache.newSpool()
	if err != nil {
		return Module{}, err
	}
	defer sp.discard()
	var r refEntry
	switch src.kind {
	case kindOCI:
		r, err = f.pullOCI(ctx, o, sp)
	case kindHTTP:
		err = f.fetchHTTP(ctx, src.url, sp)
	case kindFile:
		err = f.readFileModule(ctx, src.path, sp)
	}
	if err != nil {
		return Module{}, err
	}
	return f.verifyAndStore(ctx, src, req, key, r, sp)
}

// keepVerified answers with the cached module prev, which the source still
// names, once its manifest is verified with o's key if it was not yet.
func (f *Fetcher) keepVerified(ctx context.Context, o ociTarget, src source, req Request, prev refEntry) (Module, error) {
	if !verifiedWith(prev, o.key) {
		if err := checkSignature(ctx, o.repo, prev.ManifestDigest, *o.key); err != nil {
			return Module{}, err
		}
		prev.Verified = append(slices.Clone(prev.Verified), o.key.Fingerprint)
	}
	if err := f.cache.record(src.key, prev); err != nil {
		return Module{}, err
	}
	m, _ := f.lookupModule(src.key, req.URL, o.key)
	return m, nil
}

// verifyAndStore checks the pin and the preflight on the spooled module,
// read back now that it is known to fit the size cap, then commits it.
func (f *Fetcher) verifyAndStore(ctx context.Context, src source, req Request, key *sigkey.Key, r refEntry, sp *spool) (Module, error) {
	r.SHA256 = sp.sum()
	if req.SHA256 != "" && !pinMatches(req.SHA256, r) {
		got := "module sha256:" + r.SHA256
		if r.ManifestDigest != "" {
			got = "manifest " + r.ManifestDigest + ", " + got
		}
		return Module{}, fmt.Errorf("%w: expected sha256:%s, got %s", ErrDigestMismatch, req.SHA256, got)
	}
	b, err := sp.contents()
	if err != nil {
		return Module{}, err
	}
	report, err := Preflight(ctx, b)
	if err != nil {
		return Module{}, err
	}
	if err := f.cache.commit(src.key, r, sp); err != nil {
		return Module{}, err
	}
	if f.notes.note(r.SHA256, report.Warnings) {
		f.log.Warn("module preflight incomplete", "ref", src.key, "sha256", r.SHA256, "warnings", report.Warnings)
	}
	f.problems.clear(r.SHA256)
	f.log.Info("module pulled", "ref", src.key, "sha256", r.SHA256, "size", sp.size, "manifest", r.ManifestDigest,
		"signedBy", fingerprint(key))
	return f.module(req.URL, r, sp.size, key), nil
}

func (f *Fetcher) lookupModule(ref, url string, key *sigkey.Key) (Module, bool) {
	r, m, ok := f.cache.lookup(ref)
	if !ok {
		return Module{}, false
	}
	return f.module(url, r, m.Size, key), true
}

// SetInUse declares the modules the module server may serve; GC never
// removes them. It replaces the previous set.
func (f *Fetcher) SetInUse(sha256Hexes []string) { f.cache.setInUse(sha256Hexes) }

// Modules lists the cached modules, sorted by sha256.
func (f *Fetcher) Modules() []ModuleInfo { return f.cache.modules() }

// Problems lists the cached modules found corrupt and quarantined that
// have not been stored again since, oldest first.
func (f *Fetcher) Problems() []Problem { return f.problems.list() }

// Degraded returns why the cache directory cannot be written (it wraps
// ErrCacheWrite), or nil. While degraded, cached modules are resolved and
// served, and pulls of new ones fail. It clears as soon as a write
// succeeds: a pull, Flush, or the periodic flush of RunGC.
func (f *Fetcher) Degraded() error { return f.cache.degraded() }

// Flush writes the cache index if it has changes not yet on disk (last-used
// times are written at most once a minute otherwise) or if the last write
// failed. Call it before exiting; RunGC calls it every minute.
func (f *Fetcher) Flush() error {
	if err := f.cache.flush(); err != nil {
		return fmt.Errorf("fetcher: %w", err)
	}
	return nil
}

// GC deletes modules not in use that were unused for GCGrace, then the least
// recently used ones not in use while the cache exceeds MaxCacheBytes.
func (f *Fetcher) GC() error {
	removed, err := f.cache.gc(f.opts.GCGrace, f.opts.MaxCacheBytes)
	for _, h := range removed {
		f.log.Info("module garbage-collected", "sha256", h)
	}
	f.metrics.gcRemoved.Add(float64(len(removed)))
	if err != nil {
		return fmt.Errorf("fetcher gc: %w", err)
	}
	return nil
}

// RunGC calls GC every interval and Flush every minute until ctx ends,
// logging failures. The flush persists last-used times and retries the
// writes of a degraded cache, so it recovers without waiting for a pull.
func (f *Fetcher) RunGC(ctx context.Context, interval time.Duration) {
	gc := time.NewTicker(interval)
	defer gc.Stop()
	flush := time.NewTicker(touchPersistEvery)
	defer flush.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-gc.C:
			if err := f.GC(); err != nil {
				f.log.Warn("garbage collection failed", "error", err)
			}
		case <-flush.C:
			if err := f.Flush(); err != nil {
				f.log.Warn("cache index not saved", "error", err)
			}
		}
	}
}
