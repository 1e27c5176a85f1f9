package xdstest

import (
	"fmt"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"
)

// scratch is reused from response to response by the receiving goroutine,
// so that a steady stream of responses allocates little beyond what gRPC
// decodes.
type scratch struct {
	resp   Response
	names  []string
	refs   []*refs
	bodies []*anypb.Any
	want   []string
}

// request is one discovery request to send.
type request struct {
	typeURL        string
	node           *corev3.Node
	version, nonce string
	names          []string          // SotW: the whole subscription; delta: names to add
	drop           []string          // delta: names to remove
	initial        map[string]string // delta: versions held, on a resumed stream
	nack           error
}

// send issues one request; only the receiving goroutine sends once the
// stream is open.
func (c *Client) send(r request) error {
	var detail *status.Status
	if r.nack != nil {
		detail = &status.Status{Code: int32(codes.InvalidArgument), Message: r.nack.Error()}
	}
	if c.opts.Delta {
		return c.delta.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: r.node, TypeUrl: r.typeURL,
			ResponseNonce: r.nonce, ResourceNamesSubscribe: r.names, ResourceNamesUnsubscribe: r.drop, ErrorDetail: detail,
			InitialResourceVersions: r.initial})
	}
	return c.sotw.Send(&discoverygrpc.DiscoveryRequest{Node: r.node, TypeUrl: r.typeURL,
		VersionInfo: r.version, ResponseNonce: r.nonce, ResourceNames: r.names, ErrorDetail: detail})
}

// held returns the state of a type the client asked for. The receiving
// goroutine is the only writer of c.types, so it reads without the lock.
func (c *Client) held(typeURL string) (*typeState, error) {
	ts := c.types[typeURL]
	if ts == nil {
		return nil, fmt.Errorf("%w: %s", errUnexpectedType, typeURL)
	}
	return ts, nil
}

func (c *Client) receiveSotW() error {
	resp, err := c.sotw.Recv()
	if err != nil {
		return err
	}
	ts, err := c.held(resp.GetTypeUrl())
	if err != nil {
		return err
	}
	res := resp.GetResources()
	names := c.scratch.names[:0]
	for _, a := range res {
		name, err := resourceName(a, ts.held)
		if err != nil {
			return err
		}
		names = append(names, name)
	}
	c.scratch.names = names
	refs, err := c.parseRefs(resp.GetTypeUrl(), res)
	if err != nil {
		return err
	}
	c.scratch.resp = Response{TypeURL: resp.GetTypeUrl(), Version: resp.GetVersionInfo(), Nonce: resp.GetNonce(), Names: names}
	return c.answer(ts, res, func() {
		// Mark what this response carries; whatever it no longer carries
		// is gone.
		ts.gen++
		for i, a := range res {
			ts.held[names[i]] = entry{name: names[i], body: c.body(a), refs: refs[i], gen: ts.gen}
		}
		for name, e := range ts.held {
			if e.gen != ts.gen {
				delete(ts.held, name)
			}
		}
	})
}

func (c *Client) receiveDelta() error {
	resp, err := c.delta.Recv()
	if err != nil {
		return err
	}
	ts, err := c.held(resp.GetTypeUrl())
	if err != nil {
		return err
	}
	names, bodies := c.scratch.names[:0], c.scratch.bodies[:0]
	for _, r := range resp.GetResources() {
		names, bodies = append(names, r.GetName()), append(bodies, r.GetResource())
	}
	resources := resp.GetResources()
	c.scratch.names, c.scratch.bodies = names, bodies
	refs, err := c.parseRefs(resp.GetTypeUrl(), bodies)
	if err != nil {
		return err
	}
	c.scratch.resp = Response{TypeURL: resp.GetTypeUrl(), Version: resp.GetSystemVersionInfo(), Nonce: resp.GetNonce(),
		Names: names, Removed: resp.GetRemovedResources()}
	return c.answer(ts, bodies, func() {
		for i, a := range bodies {
			ts.held[names[i]] = entry{name: names[i], body: c.body(a), refs: refs[i], version: resources[i].GetVersion()}
		}
		for _, name := range resp.GetRemovedResources() {
			delete(ts.held, name)
		}
	})
}

func (c *Client) body(a *anypb.Any) *anypb.Any {
	if c.opts.NoBodies {
		return nil
	}
	return a
}

// answer ACKs or NACKs the response in c.scratch.resp, then applies it
// (when ACKed), records it, wakes the waiters and follows new references,
// in that order: whatever a waiter sees held has been ACKed.
func (c *Client) answer(ts *typeState, bodies []*anypb.Any, apply func()) error {
	r := &c.scratch.resp
	var nack error
	if c.opts.NACK != nil {
		nack = c.opts.NACK(r)
	}
	if nack == nil && c.opts.NACKResources != nil {
		nack = c.opts.NACKResources(r, bodies)
	}
	ack := request{typeURL: r.TypeURL, version: ts.version, nonce: r.Nonce, nack: nack}
	if nack == nil {
		ack.version = r.Version
	}
	if !c.opts.Delta {
		ack.names = ts.subscribed
	}
	if err := c.send(ack); err != nil {
		return fmt.Errorf("answer %s: %w", r.TypeURL, err)
	}
	changes := c.record(ts, r, nack, apply)
	for _, ch := range changes {
		if err := c.send(ch); err != nil {
			return fmt.Errorf("subscribe %s: %w", ch.typeURL, err)
		}
	}
	if c.opts.OnResponse != nil {
		c.opts.OnResponse(c, r, bodies)
	}
	return nil
}

// record applies an answered response under the lock and returns the
// subscription requests its references call for.
func (c *Client) record(ts *typeState, r *Response, nack error, apply func()) []request {
	c.mu.Lock()
	defer c.mu.Unlock()
	ts.responses++
	ts.nonce = r.Nonce
	if nack != nil {
		ts.nacks++
		r.NACKed, r.Error = true, nack.Error()
	} else {
		apply()
		ts.version, ts.accepted = r.Version, true
	}
	if !c.opts.NoHistory {
		h := *r
		h.Names = slices.Clone(r.Names)
		c.history = append(c.history, h)
	}
	c.signal()
	if nack != nil {
		return nil
	}
	switch r.TypeURL {
	case resource.ListenerType:
		return c.follow(ts, resource.RouteType, func(rf *refs) []string { return rf.routes },
			c.follow(ts, resource.ExtensionConfigType, func(rf *refs) []string { return rf.filters }, nil))
	case resource.ClusterType:
		return c.follow(ts, resource.EndpointType, func(rf *refs) []string { return rf.endpoints }, nil)
	}
	return nil
}

// follow subscribes typeURL to the names the held resources of from
// reference, when that set changed, as Envoy does after applying
// listeners (RDS, ECDS) or clusters (EDS). Called with mu held.
func (c *Client) follow(from *typeState, typeURL string, pick func(*refs) []string, out []request) []request {
	want := c.scratch.want[:0]
	for _, e := range from.held {
		if e.refs != nil {
			want = append(want, pick(e.refs)...)
		}
	}
	slices.Sort(want)
	want = slices.Compact(want)
	c.scratch.want = want
	ts := c.types[typeURL]
	var old []string
	if ts != nil {
		old = ts.subscribed
	}
	if slices.Equal(old, want) {
		return out
	}
	if ts == nil {
		ts = newTypeState(false)
		c.types[typeURL] = ts
	}
	ts.subscribed = slices.Clone(want)
	if c.opts.Delta {
		return append(out, request{typeURL: typeURL, names: missing(ts.subscribed, old), drop: missing(old, ts.subscribed)})
	}
	return append(out, request{typeURL: typeURL, version: ts.version, nonce: ts.nonce, names: ts.subscribed})
}

// missing returns the names of a that b lacks.
func missing(a, b []string) []string {
	var out []string
	for _, n := range a {
		if !slices.Contains(b, n) {
			out = append(out, n)
		}
	}
	return out
}
