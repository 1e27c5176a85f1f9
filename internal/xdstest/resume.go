package xdstest

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// Resume makes a client reconnect when its stream breaks, the way Envoy
// does when its control plane goes away: it dials again (the next of
// Addrs, round robin) and opens a new stream whose first requests say what
// it holds — state of the world: each type's version and subscribed
// names; delta: each resource's version (initial_resource_versions) — so
// that a server with the same configuration need send nothing new.
type Resume struct {
	// Addrs are the servers to try, in turn, starting after the one that
	// went away; empty means the address dialled.
	Addrs []string
	// Backoff bounds the wait before the first attempt; each further one
	// doubles the bound, up to MaxBackoff. The wait is a random time up to
	// the bound (full jitter), as with Envoy's ADS stream (500 ms doubling
	// to 30 s), so that a fleet whose server went away does not come back
	// all at once. Zero means 100 ms; a zero MaxBackoff means 30 s.
	Backoff, MaxBackoff time.Duration
	// OnResumed, when set, is called on the receiving goroutine once the
	// new stream is open and its requests are sent, with what broke the
	// old one.
	OnResumed func(c *Client, broke error)
}

// resumeOrder is the order Envoy re-subscribes in: clusters and
// listeners first, then what they reference.
var resumeOrder = []string{resource.ClusterType, resource.ListenerType, resource.RouteType,
	resource.ExtensionConfigType, resource.EndpointType}

// resume reconnects after the stream broke with err; false means the
// client is not to resume (no Resume option, or Close was called).
func (c *Client) resume(broke error) bool {
	r := c.opts.Resume
	if r == nil || c.closed.Load() {
		return false
	}
	// The first wait runs from the moment the stream broke, as Envoy's
	// retry timer does, however long letting the connection go takes.
	bound := cmp.Or(r.Backoff, 100*time.Millisecond)
	retry := time.Now().Add(rand.N(bound))
	// The broken connection is let go at once, as Envoy does: left open
	// through the wait, it would reconnect on its own to a server that
	// comes back, beside the connection made below.
	c.connMu.Lock()
	broken := c.conn
	c.connMu.Unlock()
	_ = broken.Close()
	addrs := r.Addrs
	if len(addrs) == 0 {
		addrs = []string{c.addr}
	}
	next := (slices.Index(addrs, c.addr) + 1) % len(addrs)
	for {
		select {
		case <-c.stop:
			return false
		case <-time.After(time.Until(retry)):
		}
		addr := addrs[next]
		next = (next + 1) % len(addrs)
		if err := c.reopen(addr); err != nil {
			bound = min(2*bound, cmp.Or(r.MaxBackoff, 30*time.Second))
			retry = time.Now().Add(rand.N(bound))
			continue
		}
		if r.OnResumed != nil {
			r.OnResumed(c, broke)
		}
		return true
	}
}

// reopen replaces the connection with one to addr and re-subscribes.
func (c *Client) reopen(addr string) error {
	conn, err := c.dial(addr)
	if err != nil {
		return err
	}
	c.connMu.Lock()
	old := c.conn
	c.conn, c.addr = conn, addr
	c.connMu.Unlock()
	_ = old.Close()
	if err := c.openStream(); err != nil {
		// A connection that failed keeps reconnecting on its own until
		// closed: left open until the next attempt, it would connect
		// once the server is back, beside the connection that attempt
		// makes. Envoy holds one connection to its control plane.
		_ = conn.Close()
		return err
	}
	for i, req := range c.resumeRequests() {
		if i == 0 {
			req.node = c.node
		}
		if err := c.send(req); err != nil {
			return fmt.Errorf("resume %s: %w", req.typeURL, err)
		}
	}
	return nil
}

// resumeRequests say what the client holds, type by type.
func (c *Client) resumeRequests() []request {
	var out []request
	for _, typeURL := range resumeOrder {
		ts := c.types[typeURL]
		if ts == nil {
			continue
		}
		req := request{typeURL: typeURL, names: ts.subscribed}
		if c.opts.Delta {
			req.initial = make(map[string]string, len(ts.held))
			for name, e := range ts.held {
				req.initial[name] = e.version
			}
		} else if ts.accepted {
			req.version = ts.version
		}
		out = append(out, req)
	}
	return out
}
