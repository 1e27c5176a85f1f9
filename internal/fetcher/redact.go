package fetcher

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"sync"

	"oras.land/oras-go/v2/registry/remote/auth"
)

// minSecretLen is the shortest credential redacted from messages: shorter
// strings would garble every message and protect nothing.
const minSecretLen = 4

// secrets remembers the credentials a Fetcher used (passwords, tokens and
// the Authorization values it sent), so that a registry echoing one back in
// an error body cannot bring it into an error string or a log line. The
// zero value is ready to use.
type secrets struct {
	mu    sync.Mutex
	known map[string]struct{}
}

func (s *secrets) add(vals ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range vals {
		if len(v) < minSecretLen {
			continue
		}
		if s.known == nil {
			s.known = map[string]struct{}{}
		}
		s.known[v] = struct{}{}
	}
}

// remember wraps a credential function to record what it hands out.
func (s *secrets) remember(fn auth.CredentialFunc) auth.CredentialFunc {
	return func(ctx context.Context, hostport string) (auth.Credential, error) {
		c, err := fn(ctx, hostport)
		if c.Password != "" {
			s.add(c.Password, base64.StdEncoding.EncodeToString([]byte(c.Username+":"+c.Password)))
		}
		s.add(c.RefreshToken, c.AccessToken)
		return c, err
	}
}

// recording wraps a transport to record the Authorization values sent
// through it (bearer tokens come from token servers, not from a config).
func (s *secrets) recording(base http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if h := r.Header.Get("Authorization"); h != "" {
			_, cred, _ := strings.Cut(h, " ")
			s.add(cred)
		}
		return base.RoundTrip(r)
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// redact returns err with every remembered credential in its message
// replaced by "[redacted]"; errors.Is and errors.As still see the causes.
func (s *secrets) redact(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	s.mu.Lock()
	clean := msg
	for v := range s.known {
		clean = strings.ReplaceAll(clean, v, "[redacted]")
	}
	s.mu.Unlock()
	if clean == msg {
		return err
	}
	return &redactedError{msg: clean, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
