package xdstest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// AwaitTimeout bounds Client.Await: generous, since it only catches a
// condition that never comes.
const AwaitTimeout = 20 * time.Second

// ErrClosed is returned by WaitFor once Close ended the stream.
var ErrClosed = errors.New("xdstest: client closed")

// Response is one discovery response as the client saw and answered it.
type Response struct {
	TypeURL string
	Version string // version_info (SotW) or system_version_info (delta)
	Nonce   string
	// Names are the resources the response carried, in its order.
	Names []string
	// Removed are the resources a delta response removed.
	Removed []string
	NACKed  bool
	Error   string // the error_detail message of a NACK
}

// entry is one held resource.
type entry struct {
	name string
	body *anypb.Any // nil with Options.NoBodies
	refs *refs      // listeners and clusters only
	gen  uint64     // the SotW response that last carried it
	// version is the resource's own version (delta only), which a
	// resumed delta stream reports back.
	version string
}

// typeState is what the client holds for one resource type.
type typeState struct {
	wildcard   bool
	accepted   bool
	version    string
	nonce      string
	responses  int
	nacks      int
	subscribed []string // non-wildcard types: the names asked for, sorted
	held       map[string]entry
	gen        uint64
}

func newTypeState(wildcard bool) *typeState {
	return &typeState{wildcard: wildcard, held: map[string]entry{}}
}

// State is what a client holds, per resource type. The State a WaitFor
// condition receives is only valid during that call; Client.State returns
// one to keep.
type State struct {
	types map[string]*typeState
}

// TypeState is what a client holds for one resource type.
type TypeState struct {
	// Accepted is set once a response of the type was ACKed.
	Accepted bool
	// Version is the last ACKed version.
	Version string
	// Nonce is the last response's nonce, ACKed or not.
	Nonce string
	// Responses counts the responses received; NACKs those rejected.
	Responses, NACKs int
	// Subscribed are the names asked for; nil for wildcard types.
	Subscribed []string
	held       map[string]entry
}

// Type returns what is held for typeURL (zero if nothing).
func (s State) Type(typeURL string) TypeState {
	ts := s.types[typeURL]
	if ts == nil {
		return TypeState{}
	}
	return TypeState{Accepted: ts.accepted, Version: ts.version, Nonce: ts.nonce,
		Responses: ts.responses, NACKs: ts.nacks, Subscribed: ts.subscribed, held: ts.held}
}

// Names returns the names of the held resources, sorted.
func (t TypeState) Names() []string { return slices.Sorted(maps.Keys(t.held)) }

// Has reports whether a resource of that name is held.
func (t TypeState) Has(name string) bool {
	_, ok := t.held[name]
	return ok
}

// Resource returns a held resource, or nil (always nil with NoBodies).
func (t TypeState) Resource(name string) *anypb.Any { return t.held[name].body }

// Resources returns the held resources by name.
func (t TypeState) Resources() map[string]*anypb.Any {
	out := make(map[string]*anypb.Any, len(t.held))
	for name, e := range t.held {
		out[name] = e.body
	}
	return out
}

// String summarises the state for failure messages.
func (s State) String() string {
	var b strings.Builder
	for _, typeURL := range slices.Sorted(maps.Keys(s.types)) {
		t := s.Type(typeURL)
		fmt.Fprintf(&b, "\n  %s: version %q, %d responses (%d NACKed), holds %v",
			strings.TrimPrefix(typeURL, resource.APITypePrefix), t.Version, t.Responses, t.NACKs, t.Names())
		if t.Subscribed != nil {
			fmt.Fprintf(&b, ", asked for %v", t.Subscribed)
		}
	}
	return b.String()
}

// Complete reports whether the client holds a full configuration, as Envoy
// needs it to serve: clusters and listeners ACKed, and every resource they
// name (route configurations, ECDS filters, EDS assignments) held under an
// ACKed version.
func Complete(s State) bool {
	for _, ts := range s.types {
		if !ts.wildcard && len(ts.subscribed) == 0 {
			continue
		}
		if !ts.accepted {
			return false
		}
		for _, name := range ts.subscribed {
			if _, ok := ts.held[name]; !ok {
				return false
			}
		}
	}
	return len(s.types) > 0
}

// clone deep-copies the state so that it can outlive the lock.
func (s State) clone() State {
	out := State{types: make(map[string]*typeState, len(s.types))}
	for typeURL, ts := range s.types {
		cp := *ts
		cp.held = maps.Clone(ts.held)
		cp.subscribed = slices.Clone(ts.subscribed)
		out.types[typeURL] = &cp
	}
	return out
}

// State returns a copy of what the client holds now.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return State{types: c.types}.clone()
}

// Check evaluates cond on what the client holds now, without copying it.
// cond must not call the client's methods.
func (c *Client) Check(cond func(State) bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return cond(State{types: c.types})
}

// WaitFor blocks until cond holds, re-evaluating it after every response.
// It returns ctx's error (with what the client holds) if ctx ends first,
// the stream's error if it broke, or ErrClosed. cond runs with the
// client locked and must not call the client's methods.
func (c *Client) WaitFor(ctx context.Context, cond func(State) bool) error {
	for {
		c.mu.Lock()
		switch {
		case cond(State{types: c.types}):
			c.mu.Unlock()
			return nil
		case c.err != nil:
			err := c.err
			c.mu.Unlock()
			return fmt.Errorf("stream failed: %w", err)
		case c.ended:
			c.mu.Unlock()
			return ErrClosed
		}
		if c.changed == nil {
			c.changed = make(chan struct{})
		}
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("%w; the client holds:%s", ctx.Err(), c.State())
		}
	}
}

// Await is WaitFor for a test, bounded by AwaitTimeout: it fails the test
// if cond does not come to hold, and returns the state that satisfied it.
func (c *Client) Await(t testing.TB, what string, cond func(State) bool) State {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), AwaitTimeout)
	defer cancel()
	var got State
	err := c.WaitFor(ctx, func(s State) bool {
		if !cond(s) {
			return false
		}
		got = s.clone()
		return true
	})
	if err != nil {
		t.Fatalf("%s: waiting for %s: %v", c.node.GetId(), what, err)
	}
	return got
}

// AwaitEnd waits up to within for the stream to end, by failure or Close,
// and returns what ended it (nil after Close); it fails the test, saying
// what was expected to end it, if the stream is still open then.
func (c *Client) AwaitEnd(t testing.TB, what string, within time.Duration) error {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(within):
		t.Fatalf("%s: the stream is still open %v after %s", c.node.GetId(), within, what)
	}
	return c.Err()
}

// Responses returns every response received so far, oldest first (none
// with Options.NoHistory).
func (c *Client) Responses() []Response {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.history)
}
