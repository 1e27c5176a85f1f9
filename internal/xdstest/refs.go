package xdstest

import (
	"errors"
	"fmt"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// refs are the resources one listener or cluster names.
type refs struct {
	routes    []string // RDS route_config_name of each HTTP connection manager
	filters   []string // HTTP filters delivered by ECDS (config_discovery)
	endpoints []string // EDS service name of an EDS cluster
}

// RefCache parses each distinct listener and cluster once. Every client of
// a label group receives identical bytes, and parsing them per client
// would make a load generator, not the server, the bottleneck. It is safe
// for concurrent use and grows with the distinct resources seen.
type RefCache struct {
	mu sync.RWMutex
	m  map[string]map[string]*refs // type URL → resource bytes → references
}

// NewRefCache returns an empty cache.
func NewRefCache() *RefCache { return &RefCache{m: map[string]map[string]*refs{}} }

// get returns the references of one listener or cluster.
func (rc *RefCache) get(typeURL string, b []byte) (*refs, error) {
	rc.mu.RLock()
	r, ok := rc.m[typeURL][string(b)] // a lookup by a converted slice copies nothing
	rc.mu.RUnlock()
	if ok {
		return r, nil
	}
	r, err := parseRefs(typeURL, b)
	if err != nil {
		return nil, err
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.m[typeURL] == nil {
		rc.m[typeURL] = map[string]*refs{}
	}
	rc.m[typeURL][string(b)] = r
	return r, nil
}

func parseRefs(typeURL string, b []byte) (*refs, error) {
	r := &refs{}
	switch typeURL {
	case resource.ListenerType:
		l := &listenerv3.Listener{}
		if err := proto.Unmarshal(b, l); err != nil {
			return nil, fmt.Errorf("listener: %w", err)
		}
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				hcm := &hcmv3.HttpConnectionManager{}
				if f.GetTypedConfig().UnmarshalTo(hcm) != nil {
					continue // not an HTTP connection manager
				}
				if name := hcm.GetRds().GetRouteConfigName(); name != "" {
					r.routes = append(r.routes, name)
				}
				for _, hf := range hcm.GetHttpFilters() {
					if hf.GetConfigDiscovery() != nil {
						r.filters = append(r.filters, hf.GetName())
					}
				}
			}
		}
	case resource.ClusterType:
		cl := &clusterv3.Cluster{}
		if err := proto.Unmarshal(b, cl); err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		if cl.GetType() == clusterv3.Cluster_EDS {
			r.endpoints = []string{cmpOr(cl.GetEdsClusterConfig().GetServiceName(), cl.GetName())}
		}
	}
	return r, nil
}

// parseRefs returns, for listeners and clusters, the references of each
// resource; for other types, nils.
func (c *Client) parseRefs(typeURL string, res []*anypb.Any) ([]*refs, error) {
	out := c.scratch.refs[:0]
	for _, a := range res {
		var r *refs
		if typeURL == resource.ListenerType || typeURL == resource.ClusterType {
			var err error
			if r, err = c.opts.Refs.get(typeURL, a.GetValue()); err != nil {
				return nil, err
			}
		}
		out = append(out, r)
	}
	c.scratch.refs = out
	return out, nil
}

var errNoName = errors.New("resource without a name")

// resourceName reads a SotW resource's name without decoding it: field 1
// is the name of every type served here (Cluster, Listener,
// RouteConfiguration, TypedExtensionConfig; cluster_name of a
// ClusterLoadAssignment). A name already held is reused, not copied.
func resourceName(a *anypb.Any, held map[string]entry) (string, error) {
	b := a.GetValue()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", fmt.Errorf("%s: %w", a.GetTypeUrl(), protowire.ParseError(n))
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return "", fmt.Errorf("%s: %w", a.GetTypeUrl(), protowire.ParseError(n))
			}
			if e, ok := held[string(v)]; ok {
				return e.name, nil
			}
			return string(v), nil
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return "", fmt.Errorf("%s: %w", a.GetTypeUrl(), protowire.ParseError(n))
		}
		b = b[n:]
	}
	return "", fmt.Errorf("%s: %w", a.GetTypeUrl(), errNoName)
}
