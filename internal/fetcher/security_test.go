package fetcher

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A spec naming registry A's entry as imagePullSecret for a module on host
// B must not hand A's credentials to B: the pull fails before B is
// contacted, with an error naming both hosts.
func TestPullSecretOfAnotherRegistryIsNotSentThere(t *testing.T) {
	hostB := newHostileRegistry(t) // asks for Basic credentials
	url := hostB.push(t, "filters/f:v1", validModule(t))
	cfg := writeDockerConfig(t, map[string]any{"registry-a.example": basicEntry(leakUser, leakPwd)})
	f := newTestFetcher(t, "", func(o *Options) { o.DockerConfig = cfg })

	_, err := f.Resolve(context.Background(), Request{URL: url, PullSecret: "registry-a.example"})
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("err = %v, want ErrRefused", err)
	}
	for _, host := range []string{"registry-a.example", hostB.front.host} {
		if !strings.Contains(err.Error(), host) {
			t.Errorf("error %q does not name %s", err, host)
		}
	}
	if got := hostB.front.seen(); len(got) != 0 {
		t.Errorf("host B received %d requests (Authorization headers %q), want none", len(got), got)
	}
}

// A pull secret given as a config.json file lends only the URL's registry
// entry: a file holding A's credentials pulls from B anonymously, and
// Docker Hub's names all reach the one Docker Hub entry.
func TestPullSecretFileLendsOnlyTheURLsRegistry(t *testing.T) {
	b := newHostileRegistry(t)
	url := b.push(t, "filters/f:v1", validModule(t))
	secret := writeDockerConfig(t, map[string]any{"registry-a.example": basicEntry(leakUser, leakPwd)})

	_, err := newTestFetcher(t, "", nil).Resolve(context.Background(), Request{URL: url, PullSecret: secret})
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("err = %v, want ErrUnauthorized (B asked for credentials the secret has not for it)", err)
	}
	if n := b.front.withAuth(); n != 0 {
		t.Errorf("host B received %d requests with an Authorization header: %q", n, b.front.seen())
	}
}

// http(s) sources never carry registry credentials, even with a docker
// config entry and a pull secret for their very host.
func TestHTTPSourceGetsNoRegistryCredentials(t *testing.T) {
	module := validModule(t)
	srv := newRecorder(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(module) }))
	cfg := writeDockerConfig(t, map[string]any{srv.host: basicEntry(leakUser, leakPwd)})
	f := newTestFetcher(t, "", func(o *Options) { o.DockerConfig = cfg })

	mustResolve(t, f, Request{URL: srv.srv.URL + "/a.wasm", PullSecret: cfg}, module)
	mustResolve(t, f, Request{URL: srv.srv.URL + "/b.wasm", PullSecret: srv.host}, module)
	if got := srv.seen(); len(got) != 2 || got[0] != "" || got[1] != "" {
		t.Errorf("Authorization headers received = %q, want two requests without one", got)
	}
}

// A registry answering blob GETs with a redirect to storage at another
// origin (another port of the same IP, which net/http alone would still
// trust) gets the credentials; the storage does not.
func TestRegistryRedirectToStorageCarriesNoCredentials(t *testing.T) {
	reg := newHostileRegistry(t)
	reg.mode.Store("redirect")
	module := validModule(t)
	url := reg.push(t, "filters/redirected:v1", module)
	cfg := writeDockerConfig(t, map[string]any{reg.front.host: basicEntry(leakUser, leakPwd)})
	before := len(reg.storage.seen()) // the push

	mustResolve(t, newTestFetcher(t, "", func(o *Options) { o.DockerConfig = cfg }), Request{URL: url}, module)
	if reg.front.withAuth() == 0 {
		t.Fatal("the registry never received the credentials: the test proves nothing")
	}
	got := reg.storage.seen()[before:]
	if len(got) == 0 {
		t.Fatal("the storage server was never asked for the blob")
	}
	for _, a := range got {
		if a != "" {
			t.Errorf("storage at another origin received Authorization %q", a)
		}
	}
}

// A redirect loop stops after maxRedirects with an error saying so.
func TestRedirectLoopIsCut(t *testing.T) {
	var srv *recorder
	srv = newRecorder(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, srv.srv.URL+"/again"+r.URL.Path, http.StatusFound)
	}))
	_, err := newTestFetcher(t, "", nil).Resolve(context.Background(), Request{URL: srv.srv.URL + "/loop.wasm"})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "more than 5 redirects") {
		t.Fatalf("err = %v, want ErrRefused saying more than 5 redirects", err)
	}
	if n := len(srv.seen()); n != maxRedirects+1 {
		t.Errorf("the server received %d requests, want %d (the first and %d redirects)", n, maxRedirects+1, maxRedirects)
	}
}

// Metadata addresses named literally, as a registry, an http source or a
// redirect target, are refused before any connection is made.
func TestMetadataAddressesAreRefused(t *testing.T) {
	redirector := newRecorder(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/iam/security-credentials/", http.StatusFound)
	}))
	f := newTestFetcher(t, "", nil)
	for _, url := range []string{
		"http://169.254.169.254/latest/meta-data/x.wasm",
		"oci://169.254.169.254/filters/f:v1",
		"http://100.100.100.200/latest/meta-data/x.wasm",
		"http://[fd00:ec2::254]/latest/meta-data/x.wasm",
		"http://[fe80::1]/x.wasm",
		"http://[::ffff:169.254.169.254]/x.wasm",
		redirector.srv.URL + "/x.wasm",
	} {
		start := time.Now()
		_, err := f.Resolve(context.Background(), Request{URL: url})
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "link-local or cloud metadata address") {
			t.Errorf("%s: err = %v, want ErrRefused naming a metadata address", url, err)
		}
		// Refusals are not retried: no backoff, no timeout.
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: refusal took %v", url, d)
		}
	}
}

// A host name that resolves to a metadata address is refused by the dialer
// once resolved, before connect: the name is asked of the (in-process)
// resolver, and the error is the dialer's refusal, never a connect error.
func TestNameResolvingToMetadataAddressIsRefused(t *testing.T) {
	for _, addr := range []string{"169.254.169.254", "fd00:ec2::254"} {
		resolver, dns := newFakeDNS(t, addr)
		redirector := newRecorder(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://redirected.metadata.test/x.wasm", http.StatusFound)
		}))
		f := newTestFetcher(t, "", func(o *Options) { o.resolver = resolver })
		for _, c := range []struct{ url, name string }{
			{"http://metadata.test/latest/meta-data/x.wasm", "metadata.test"},
			{"oci://registry.metadata.test/filters/f:v1", "registry.metadata.test"},
			{redirector.srv.URL + "/x.wasm", "redirected.metadata.test"},
		} {
			_, err := f.Resolve(context.Background(), Request{URL: c.url})
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), addr+" is a link-local or cloud metadata address") {
				t.Errorf("%s -> %s: err = %v, want the dialer's refusal of %s", c.url, addr, err, addr)
			}
			if !dns.wasAsked(c.name) {
				t.Errorf("%s: the resolver was never asked for %s", c.url, c.name)
			}
		}
	}
}

// Options.AllowLinkLocal lifts the refusal: the request then goes to the
// network (here: to a recorder standing in, through a custom transport,
// as no test may reach a real metadata address).
func TestAllowLinkLocal(t *testing.T) {
	module := validModule(t)
	srv := newRecorder(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(module) }))
	to := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		r.URL.Host = srv.host
		return http.DefaultTransport.RoundTrip(r)
	})
	url := "http://169.254.169.254/x.wasm"
	if _, err := newTestFetcher(t, "", func(o *Options) { o.Transport = to }).
		Resolve(context.Background(), Request{URL: url}); !errors.Is(err, ErrRefused) {
		t.Fatalf("custom transport, default options: err = %v, want ErrRefused", err)
	}
	mustResolve(t, newTestFetcher(t, "", func(o *Options) { o.Transport, o.AllowLinkLocal = to, true }), Request{URL: url}, module)
}

// With AllowFileRoots, file:// modules are read only from inside those
// directories, judged after resolving symlinks.
func TestFileRoots(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	module := validModule(t)
	for _, p := range []string{filepath.Join(root, "in.wasm"), filepath.Join(outside, "out.wasm")} {
		if err := os.WriteFile(p, module, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mustSymlink(t, filepath.Join(outside, "out.wasm"), filepath.Join(root, "escape.wasm"))
	mustSymlink(t, filepath.Join(root, "in.wasm"), filepath.Join(outside, "into-root.wasm"))
	f := newTestFetcher(t, "", func(o *Options) { o.AllowFileRoots = []string{root} })

	mustResolve(t, f, Request{URL: "file://" + filepath.Join(root, "in.wasm")}, module)
	mustResolve(t, f, Request{URL: "file://" + filepath.Join(outside, "into-root.wasm")}, module)
	for _, p := range []string{filepath.Join(outside, "out.wasm"), filepath.Join(root, "escape.wasm"),
		filepath.Join(outside, "missing.wasm"), "/etc/passwd"} {
		_, err := f.Resolve(context.Background(), Request{URL: "file://" + p})
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), root) {
			t.Errorf("%s: err = %v, want ErrRefused naming the path and the allowed root", p, err)
		}
	}
	_, err := f.Resolve(context.Background(), Request{URL: "file://" + filepath.Join(root, "missing.wasm")})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("missing file inside the root: err = %v, want ErrNotFound", err)
	}
	// Without roots, any readable file goes.
	mustResolve(t, newTestFetcher(t, "", nil), Request{URL: "file://" + filepath.Join(outside, "out.wasm")}, module)
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// No credential reaches a log line, an error, the cache index or a metric,
// through success and failure (401, 5xx, redirect) paths, even from a
// registry that echoes the credentials it got in its error bodies.
func TestCredentialsNeverLeak(t *testing.T) {
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	dir := t.TempDir()
	n := 0
	newF := func(t *testing.T, cfg string) *Fetcher {
		n++
		return newTestFetcher(t, dir, func(o *Options) {
			o.DockerConfig = cfg
			o.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			o.Retry = RetryPolicy{MaxRetries: 1, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond}
			o.Registerer = prometheus.WrapRegistererWith(prometheus.Labels{"fetcher": strconv.Itoa(n)}, reg)
		})
	}
	hr := newHostileRegistry(t)
	good := writeDockerConfig(t, map[string]any{hr.front.host: basicEntry(leakUser, leakPwd)})
	const wrongPwd = "Wr0ngPassw0rd-ABC"
	wrong := writeDockerConfig(t, map[string]any{hr.front.host: basicEntry(leakUser, wrongPwd)})
	var errs []string
	resolve := func(f *Fetcher, req Request) {
		if _, err := f.Resolve(context.Background(), req); err != nil {
			errs = append(errs, err.Error())
		}
	}

	url := hr.push(t, "filters/leak:v1", validModule(t))
	resolve(newF(t, good), Request{URL: url})                                            // success
	resolve(newF(t, good), Request{URL: url, PullSecret: good, Always: true})            // success, by file secret
	resolve(newF(t, wrong), Request{URL: hr.push(t, "filters/leak:v2", validModule(t))}) // 401 echoing the wrong password
	hr.mode.Store("500")
	resolve(newF(t, good), Request{URL: hr.push(t, "filters/leak:v3", validModule(t))}) // 5xx echoing the password
	v4 := hr.push(t, "filters/leak:v4", validModule(t))
	hr.mode.Store("redirect")
	hr.denyStorage.Store(true)
	resolve(newF(t, good), Request{URL: v4}) // redirect, storage refuses

	if len(errs) != 3 {
		t.Fatalf("errors = %q, want the 401, 5xx and redirect failures", errs)
	}
	if !strings.Contains(strings.Join(errs, "\n"), "[redacted]") {
		t.Errorf("no echoed credential was redacted: the hostile registry did not echo, the test proves little: %q", errs)
	}
	index, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	metrics := gatherText(t, reg)
	for what, text := range map[string]string{"errors": strings.Join(errs, "\n"), "logs": logs.String(),
		"index.json": string(index), "metrics": metrics} {
		for _, pwd := range []string{leakPwd, wrongPwd} {
			for _, secret := range []string{pwd, base64.StdEncoding.EncodeToString([]byte(leakUser + ":" + pwd))} {
				if strings.Contains(text, secret) {
					t.Errorf("%s contain the credential %q:\n%s", what, secret, text)
				}
			}
		}
	}
}

func gatherText(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		b.WriteString(mf.String() + "\n")
	}
	return b.String()
}
