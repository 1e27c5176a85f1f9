package fetcher

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
)

func TestResolveRetriesServerErrors(t *testing.T) {
	tr := newTestRegistry(t)
	module := validModule(t)
	tr.pushWasm(t, "filters/flaky:v1", module)
	tr.resetCounts()
	tr.fail.Store(2)

	mustResolve(t, newTestFetcher(t, "", nil), Request{URL: tr.ref("filters/flaky:v1")}, module)
	if got := tr.count("GET manifest"); got != 3 {
		t.Errorf("manifest GETs = %d, want 3 (two 503s, then success)", got)
	}
}

func TestResolveGivesUpOnPersistentServerErrors(t *testing.T) {
	tr := newTestRegistry(t)
	tr.pushWasm(t, "filters/down:v1", validModule(t))
	tr.fail.Store(1000)
	tr.resetCounts()

	_, err := newTestFetcher(t, "", nil).Resolve(context.Background(), Request{URL: tr.ref("filters/down:v1")})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if got := tr.count("GET manifest"); got != 4 {
		t.Errorf("manifest GETs = %d, want 4 (first try + 3 retries)", got)
	}
}

func TestResolveDoesNotRetryClientErrors(t *testing.T) {
	tr := newTestRegistry(t)
	f := newTestFetcher(t, "", nil)

	_, err := f.Resolve(context.Background(), Request{URL: tr.ref("filters/missing:v1")})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown tag: err = %v, want ErrNotFound", err)
	}
	if got := tr.count("GET manifest"); got != 1 {
		t.Errorf("manifest GETs for a 404 = %d, want 1", got)
	}

	tr.failCode = http.StatusBadRequest
	tr.fail.Store(1)
	tr.resetCounts()
	if _, err := f.Resolve(context.Background(), Request{URL: tr.ref("filters/missing:v2")}); err == nil {
		t.Fatal("400 answered with success")
	}
	if got := tr.count("GET manifest"); got != 1 {
		t.Errorf("manifest GETs for a 400 = %d, want 1", got)
	}
}

func TestResolveServesCacheWhenRegistryIsGone(t *testing.T) {
	tr := newTestRegistry(t)
	module := validModule(t)
	tr.pushWasm(t, "filters/cached:v1", module)
	url := "oci://" + tr.ref("filters/cached:v1")
	dir := t.TempDir()
	first := mustResolve(t, newTestFetcher(t, dir, nil), Request{URL: url}, module)
	tr.srv.Close()

	// A restart: a new Fetcher on the same cache directory.
	f := newTestFetcher(t, dir, nil)
	m := mustResolve(t, f, Request{URL: url}, module)
	if m.ManifestDigest != first.ManifestDigest {
		t.Errorf("ManifestDigest after restart = %q, want %q", m.ManifestDigest, first.ManifestDigest)
	}
	mustResolve(t, f, Request{URL: url, SHA256: sha(module)}, module)

	// Always must try the registry, fail, and still hand back the last good module.
	stale, err := f.Resolve(context.Background(), Request{URL: url, Always: true})
	if !errors.Is(err, ErrStale) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Always with registry down: err = %v, want ErrStale and ErrUnavailable", err)
	}
	if stale.SHA256 != sha(module) || stale.Path == "" {
		t.Errorf("Always with registry down returned %+v, want the cached module", stale)
	}
}

func TestResolveAlwaysPicksUpRepushedTag(t *testing.T) {
	tr := newTestRegistry(t)
	v1, v2 := validModule(t), validModule(t)
	tr.pushWasm(t, "filters/moving:latest", v1)
	url := tr.ref("filters/moving:latest")
	f := newTestFetcher(t, "", nil)
	mustResolve(t, f, Request{URL: url}, v1)

	tr.pushWasm(t, "filters/moving:latest", v2)
	tr.resetCounts()
	mustResolve(t, f, Request{URL: url}, v1)
	if n := tr.count("GET manifest") + tr.count("HEAD manifest"); n != 0 {
		t.Errorf("IfNotPresent contacted the registry (%d manifest requests)", n)
	}
	mustResolve(t, f, Request{URL: url, Always: true}, v2)

	tr.resetCounts()
	mustResolve(t, f, Request{URL: url, Always: true}, v2)
	if got := tr.count("GET blob"); got != 0 {
		t.Errorf("unchanged tag re-downloaded %d blobs", got)
	}
	if got := tr.count("HEAD manifest") + tr.count("GET manifest"); got != 1 {
		t.Errorf("unchanged tag: %d manifest requests, want 1", got)
	}
}

func TestResolveConcurrentCallersSharePull(t *testing.T) {
	tr := newTestRegistry(t)
	module := validModule(t)
	tr.pushWasm(t, "filters/popular:v1", module)
	tr.resetCounts()
	const callers = 50
	var started sync.WaitGroup
	started.Add(callers)
	hold := make(chan struct{})
	tr.holdManifest = hold
	go func() { started.Wait(); close(hold) }()

	f := newTestFetcher(t, "", nil)
	errs := make(chan error, callers)
	for range callers {
		go func() {
			started.Done()
			m, err := f.Resolve(context.Background(), Request{URL: tr.ref("filters/popular:v1")})
			if err == nil && m.SHA256 != sha(module) {
				err = errors.New("wrong module " + m.SHA256)
			}
			errs <- err
		}()
	}
	for range callers {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if m, b := tr.count("GET manifest"), tr.count("GET blob"); m != 1 || b != 1 {
		t.Errorf("%d callers caused %d manifest GETs and %d blob GETs, want 1 and 1", callers, m, b)
	}
}

func TestResolveCallerCancellationDoesNotAbortSharedPull(t *testing.T) {
	tr := newTestRegistry(t)
	module := validModule(t)
	tr.pushWasm(t, "filters/shared:v1", module)
	hold := make(chan struct{})
	tr.holdManifest = hold
	f := newTestFetcher(t, "", nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := f.Resolve(ctx, Request{URL: tr.ref("filters/shared:v1")})
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: err = %v, want context.Canceled", err)
	}
	close(hold)
	mustResolve(t, f, Request{URL: tr.ref("filters/shared:v1")}, module)
}

func TestResolveWithCredentials(t *testing.T) {
	tr := newTestRegistry(t)
	tr.user, tr.pwd = "alice", "s3cret"
	module := validModule(t)
	tr.pushWasm(t, "private/filter:v1", module)
	url := tr.ref("private/filter:v1")
	withCreds := tr.dockerConfig(t)

	_, err := newTestFetcher(t, "", nil).Resolve(context.Background(), Request{URL: url})
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("no credentials: err = %v, want ErrUnauthorized", err)
	}
	if err != nil && strings.Contains(err.Error(), tr.pwd) {
		t.Errorf("error leaks the password: %v", err)
	}
	mustResolve(t, newTestFetcher(t, "", func(o *Options) { o.DockerConfig = withCreds }), Request{URL: url}, module)
	mustResolve(t, newTestFetcher(t, "", nil), Request{URL: url, PullSecret: withCreds}, module)

	// An entry name: the docker config's entry for the registry itself,
	// spelled as a host or as a URL as older configs do.
	entry := writeDockerConfig(t, map[string]any{"https://" + tr.host + "/v1/": map[string]string{"username": "alice", "password": "s3cret"}})
	for _, name := range []string{tr.host, "https://" + tr.host + "/v1/"} {
		mustResolve(t, newTestFetcher(t, "", func(o *Options) { o.DockerConfig = entry }),
			Request{URL: url, PullSecret: name}, module)
	}
	_, err = newTestFetcher(t, "", nil).Resolve(context.Background(), Request{URL: url, PullSecret: tr.host})
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "no credentials for pull secret entry") {
		t.Errorf("pull secret entry missing from the docker config: err = %v, want ErrUnauthorized naming the entry", err)
	}
	_, err = newTestFetcher(t, "", func(o *Options) { o.DockerConfig = tr.dockerConfig(t) }).
		Resolve(context.Background(), Request{URL: url, PullSecret: "localhost:1"})
	if !errors.Is(err, ErrRefused) {
		t.Errorf("pull secret entry of another registry: err = %v, want ErrRefused", err)
	}
}
