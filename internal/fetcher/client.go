package fetcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/retry"

	"github.com/wasmxds/wasmxds/internal/modref"
)

// RetryPolicy controls retries of requests that failed with a network error,
// a 5xx, 429 or 408 status. Other 4xx statuses are never retried. Waits grow
// exponentially from MinBackoff with ±20% jitter, capped at MaxBackoff; a
// Retry-After header on 429 is honoured.
type RetryPolicy struct {
	MaxRetries int           // 0 = 4; negative = no retries
	MinBackoff time.Duration // 0 = 200ms
	MaxBackoff time.Duration // 0 = 5s
}

func (p RetryPolicy) policy() retry.Policy {
	if p.MaxRetries == 0 {
		p.MaxRetries = 4
	}
	if p.MaxRetries < 0 {
		p.MaxRetries = 0
	}
	if p.MinBackoff <= 0 {
		p.MinBackoff = 200 * time.Millisecond
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = 5 * time.Second
	}
	return &retry.GenericPolicy{
		Retryable: retryable,
		Backoff:   retry.ExponentialBackoff(p.MinBackoff, 2, 0.2),
		MinWait:   p.MinBackoff,
		MaxWait:   p.MaxBackoff,
		MaxRetry:  p.MaxRetries,
	}
}

// retryable never returns an error: a non-retryable failure is passed back
// to the caller unchanged.
func retryable(resp *http.Response, err error) (bool, error) {
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return false, nil
		}
		if errors.Is(err, ErrRefused) {
			return false, nil
		}
		return isNetworkError(err) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF), nil
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusRequestTimeout:
		return true, nil
	case resp.StatusCode >= 500:
		return true, nil
	}
	return false, nil
}

// newHTTPClient wraps base (nil = a default transport with connect and
// response-header timeouts, whose dialer enforces pol) with retries, the
// refusal of literal metadata addresses and the redirect limit.
func newHTTPClient(base http.RoundTripper, p RetryPolicy, pol netPolicy) *http.Client {
	if base == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.DialContext = pol.dialer().DialContext
		t.ResponseHeaderTimeout = 30 * time.Second
		base = t
	}
	rp := p.policy()
	var rt http.RoundTripper = &retry.Transport{Base: base, Policy: func() retry.Policy { return rp }}
	if !pol.allowLinkLocal {
		rt = guardTransport{base: rt}
	}
	return &http.Client{Transport: rt, CheckRedirect: checkRedirect}
}

// plainHTTP reports whether a registry is spoken to over plain HTTP.
func plainHTTP(hostport string, insecure []string) bool {
	if modref.LoopbackRegistry(hostport) {
		return true
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	for _, r := range insecure {
		if r == hostport || r == host {
			return true
		}
	}
	return false
}

// credentialStore opens a docker config.json; "" means $DOCKER_CONFIG or
// ~/.docker. Credential helpers and credsStore are honoured.
func credentialStore(path string) (credentials.Store, error) {
	if path == "" {
		s, err := credentials.NewStoreFromDocker(credentials.StoreOptions{})
		if err != nil {
			return nil, fmt.Errorf("load docker credentials: %w", err)
		}
		return s, nil
	}
	s, err := credentials.NewStore(path, credentials.StoreOptions{})
	if err != nil {
		return nil, fmt.Errorf("load docker credentials %s: %w", path, err)
	}
	return s, nil
}

// credentialFunc resolves a Request.PullSecret to the credentials of one
// registry, reg, as docker does: whatever the source of credentials, only
// reg's entry is used, and the function answers no other host. A value
// containing a path separator or ending in ".json" is a docker config.json
// file; any other value names an entry (server address) of the default
// docker config, which must be reg's own: an entry for another registry is
// refused (ErrRefused) before anything is sent.
func credentialFunc(def credentials.Store, secret, reg string) (auth.CredentialFunc, error) {
	store, err := secretStore(def, secret, reg)
	if err != nil {
		return nil, err
	}
	lookup := credentials.Credential(store)
	return func(ctx context.Context, hostport string) (auth.Credential, error) {
		if !modref.SameRegistry(hostport, reg) {
			return auth.EmptyCredential, nil
		}
		c, err := lookup(ctx, hostport)
		if err == nil && c == auth.EmptyCredential && isEntryName(secret) {
			err = fmt.Errorf("%w: no credentials for pull secret entry %q in the docker config", ErrUnauthorized, secret)
		}
		return c, err
	}, nil
}

// isEntryName reports whether a pull secret names a docker config entry
// rather than a config.json file.
func isEntryName(secret string) bool {
	_, ok := modref.PullSecretRegistry(secret)
	return ok
}

// secretStore returns the store a pull secret reads credentials from.
func secretStore(def credentials.Store, secret, reg string) (credentials.Store, error) {
	switch {
	case secret == "":
		return def, nil
	case isEntryName(secret):
		if host, _ := modref.PullSecretRegistry(secret); !modref.SameRegistry(host, reg) {
			return nil, fmt.Errorf("%w: pull secret entry %q holds credentials for registry %s, not for %s, the registry of the module URL",
				ErrRefused, secret, host, reg)
		}
		return def, nil
	}
	if _, err := os.Stat(secret); err != nil {
		return nil, fmt.Errorf("%w: pull secret file: %w", ErrUnauthorized, err)
	}
	s, err := credentialStore(secret)
	if err != nil {
		return nil, fmt.Errorf("%w: pull secret: %w", ErrUnauthorized, err)
	}
	return s, nil
}

// authClient returns the (cached) client for a pull secret and registry,
// so tokens are reused across pulls but never shared between secrets.
func (f *Fetcher) authClient(secret, reg string) (*auth.Client, error) {
	f.authMu.Lock()
	defer f.authMu.Unlock()
	key := secret + "\x00" + modref.RegistryHost(reg)
	if c, ok := f.authClients[key]; ok {
		return c, nil
	}
	cred, err := credentialFunc(f.store, secret, reg)
	if err != nil {
		return nil, err
	}
	c := &auth.Client{Client: f.client, Credential: f.secrets.remember(cred), Cache: auth.NewCache()}
	c.SetUserAgent("wasmxds")
	f.authClients[key] = c
	return c, nil
}

func (f *Fetcher) repository(ref registry.Reference, secret string) (*remote.Repository, error) {
	client, err := f.authClient(secret, ref.Registry)
	if err != nil {
		return nil, err
	}
	return &remote.Repository{Reference: ref, Client: client, PlainHTTP: plainHTTP(ref.Registry, f.opts.InsecureRegistries)}, nil
}
