package bench

import (
	"bytes"
	"fmt"
	"slices"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// send issues one request. ack, when set, is the state being ACKed;
// names, when set, replace the subscription (SotW) or are added to it
// (delta).
func (c *client) send(typeURL string, node *corev3.Node, names []string, ack *typeState) error {
	if c.delta {
		req := &discoverygrpc.DeltaDiscoveryRequest{Node: node, TypeUrl: typeURL, ResourceNamesSubscribe: names}
		if ack != nil {
			req.ResponseNonce = ack.nonce
		}
		return c.dstr.Send(req)
	}
	req := &discoverygrpc.DiscoveryRequest{Node: node, TypeUrl: typeURL, ResourceNames: names}
	if ack != nil {
		req.VersionInfo, req.ResponseNonce = ack.version, ack.nonce
		if names == nil {
			req.ResourceNames = ack.subscribed
		}
	}
	return c.sotw.Send(req)
}

// receive handles one response: apply, ACK, then follow new references.
func (c *client) receive() error {
	var (
		typeURL string
		marked  bool
		err     error
	)
	var r *Round
	if c.delta {
		typeURL, r, marked, err = c.receiveDelta()
	} else {
		typeURL, r, marked, err = c.receiveSotW()
	}
	if err != nil {
		return err
	}
	st := c.types[typeURL]
	if err := c.send(typeURL, nil, nil, st); err != nil {
		return fmt.Errorf("ack %s: %w", typeURL, err)
	}
	if marked {
		r.record(c.idx)
	}
	if typeURL == resource.ListenerType {
		if err := c.follow(st); err != nil {
			return err
		}
	}
	c.markReady()
	return nil
}

// accept records a response's version and nonce for its type, refusing
// types the client never asked for, and returns the round in progress.
func (c *client) accept(typeURL, version, nonce string) (*Round, *typeState, error) {
	// Loaded after the response arrived: a round begun while this client
	// waited in Recv must see it.
	r := c.f.round.Load()
	if c.types[typeURL] == nil && typeURL != resource.ClusterType && typeURL != resource.ListenerType {
		return nil, nil, fmt.Errorf("%w: %s", errUnexpectedType, typeURL)
	}
	st := c.state(typeURL)
	st.version, st.nonce, st.received = version, nonce, true
	return r, st, nil
}

func (c *client) receiveSotW() (string, *Round, bool, error) {
	resp, err := c.sotw.Recv()
	if err != nil {
		return "", nil, false, err
	}
	r, st, err := c.accept(resp.GetTypeUrl(), resp.GetVersionInfo(), resp.GetNonce())
	if err != nil {
		return "", nil, false, err
	}
	marked := false
	isListener := resp.GetTypeUrl() == resource.ListenerType
	if isListener {
		st.listeners = make(map[string][]byte, len(resp.GetResources()))
	}
	for _, a := range resp.GetResources() {
		marked = marked || (r != nil && bytes.Contains(a.GetValue(), r.marker))
		if isListener {
			st.listeners[fmt.Sprint(len(st.listeners))] = a.GetValue()
		}
	}
	return resp.GetTypeUrl(), r, marked, nil
}

func (c *client) receiveDelta() (string, *Round, bool, error) {
	resp, err := c.dstr.Recv()
	if err != nil {
		return "", nil, false, err
	}
	r, st, err := c.accept(resp.GetTypeUrl(), resp.GetSystemVersionInfo(), resp.GetNonce())
	if err != nil {
		return "", nil, false, err
	}
	marked := false
	isListener := resp.GetTypeUrl() == resource.ListenerType
	if isListener && st.listeners == nil {
		st.listeners = map[string][]byte{}
	}
	for _, res := range resp.GetResources() {
		v := res.GetResource().GetValue()
		marked = marked || (r != nil && bytes.Contains(v, r.marker))
		if isListener {
			st.listeners[res.GetName()] = v
		}
	}
	if isListener {
		for _, name := range resp.GetRemovedResources() {
			delete(st.listeners, name)
		}
	}
	return resp.GetTypeUrl(), r, marked, nil
}

// follow subscribes to the route configurations and ECDS filters the held
// listeners name, when that set changed.
func (c *client) follow(listeners *typeState) error {
	var routes, filters []string
	for _, b := range listeners.listeners {
		ref, err := c.f.refs.get(b)
		if err != nil {
			return err
		}
		routes = append(routes, ref.routes...)
		filters = append(filters, ref.filters...)
	}
	for typeURL, names := range map[string][]string{resource.RouteType: routes, resource.ExtensionConfigType: filters} {
		slices.Sort(names)
		names = slices.Compact(names)
		st := c.state(typeURL)
		if slices.Equal(st.subscribed, names) {
			continue
		}
		// A delta client adds names; dropping stale ones does not matter
		// here because the benchmark never removes references.
		add := names
		if c.delta {
			add = newNames(st.subscribed, names)
		}
		st.subscribed = names
		if len(add) == 0 {
			continue
		}
		if err := c.send(typeURL, nil, add, st); err != nil {
			return fmt.Errorf("subscribe %s: %w", typeURL, err)
		}
	}
	return nil
}

func newNames(old, now []string) []string {
	var out []string
	for _, n := range now {
		if !slices.Contains(old, n) {
			out = append(out, n)
		}
	}
	return out
}

// references are what one listener points at.
type references struct {
	routes  []string
	filters []string
}

// refCache parses each distinct listener once for the whole fleet: every
// client of a group receives identical bytes, and parsing them per client
// would make the load generator, not the server, the bottleneck.
type refCache struct {
	m sync.Map // string(listener bytes) → references
}

func (rc *refCache) get(b []byte) (references, error) {
	if v, ok := rc.m.Load(string(b)); ok {
		return v.(references), nil
	}
	l := &listenerv3.Listener{}
	if err := proto.Unmarshal(b, l); err != nil {
		return references{}, fmt.Errorf("listener: %w", err)
	}
	var ref references
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			hcm := &hcmv3.HttpConnectionManager{}
			if f.GetTypedConfig().UnmarshalTo(hcm) != nil {
				continue
			}
			if name := hcm.GetRds().GetRouteConfigName(); name != "" {
				ref.routes = append(ref.routes, name)
			}
			for _, hf := range hcm.GetHttpFilters() {
				if hf.GetConfigDiscovery() != nil {
					ref.filters = append(ref.filters, hf.GetName())
				}
			}
		}
	}
	rc.m.Store(string(b), ref)
	return ref, nil
}
