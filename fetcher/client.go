package fetcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/retry"
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
// response-header timeouts) with retries.
func newHTTPClient(base http.RoundTripper, p RetryPolicy) *http.Client {
	if base == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		t.ResponseHeaderTimeout = 30 * time.Second
		base = t
	}
	pol := p.policy()
	return &http.Client{Transport: &retry.Transport{Base: base, Policy: func() retry.Policy { return pol }}}
}

// plainHTTP reports whether a registry is spoken to over plain HTTP.
func plainHTTP(hostport string, insecure []string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	switch strings.Trim(host, "[]") {
	case "localhost", "127.0.0.1", "::1":
		return true
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

// credentialFunc resolves a Request.PullSecret. A value containing a path
// separator or ending in ".json" is a docker config.json file; any other
// value names an entry (server address) of the default docker config whose
// credentials are used whatever registry is pulled from.
func credentialFunc(def credentials.Store, secret string) (auth.CredentialFunc, error) {
	if secret == "" {
		return credentials.Credential(def), nil
	}
	if strings.ContainsRune(secret, os.PathSeparator) || strings.HasSuffix(secret, ".json") {
		if _, err := os.Stat(secret); err != nil {
			return nil, fmt.Errorf("%w: pull secret file: %w", ErrUnauthorized, err)
		}
		s, err := credentialStore(secret)
		if err != nil {
			return nil, fmt.Errorf("%w: pull secret: %w", ErrUnauthorized, err)
		}
		return credentials.Credential(s), nil
	}
	return func(ctx context.Context, _ string) (auth.Credential, error) {
		c, err := def.Get(ctx, secret)
		if err == nil && c == auth.EmptyCredential {
			err = fmt.Errorf("%w: no credentials for pull secret entry %q in the docker config", ErrUnauthorized, secret)
		}
		return c, err
	}, nil
}

// authClient returns the (cached) registry client for a pull secret, so
// tokens are reused across pulls but never shared between secrets.
func (f *Fetcher) authClient(secret string) (*auth.Client, error) {
	f.authMu.Lock()
	defer f.authMu.Unlock()
	if c, ok := f.authClients[secret]; ok {
		return c, nil
	}
	cred, err := credentialFunc(f.store, secret)
	if err != nil {
		return nil, err
	}
	c := &auth.Client{Client: f.client, Credential: cred, Cache: auth.NewCache()}
	c.SetUserAgent("wasmxds")
	f.authClients[secret] = c
	return c, nil
}

func (f *Fetcher) repository(ref registry.Reference, secret string) (*remote.Repository, error) {
	client, err := f.authClient(secret)
	if err != nil {
		return nil, err
	}
	return &remote.Repository{Reference: ref, Client: client, PlainHTTP: plainHTTP(ref.Registry, f.opts.InsecureRegistries)}, nil
}
