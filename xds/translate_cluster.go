package xds

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/wasmxds/wasmxds/catalog"
)

// clusterConnectTimeout is Envoy's own default, written out so the pushed
// config says what Envoy will do.
const clusterConnectTimeout = 5 * time.Second

// cluster returns the Envoy cluster for a catalog cluster name, building and
// validating it once per Translate. ok is false when the spec is missing
// (the catalog reports dangling references) or its cluster is invalid (a
// Problem is recorded here, once).
func (t *translator) cluster(name string) (c *clusterv3.Cluster, ok bool) {
	if c, seen := t.clusters[name]; seen {
		return c, c != nil
	}
	spec, found := t.specClusters[name]
	if found {
		var err error
		if c, err = specCluster(spec.Name, spec.Endpoints); err != nil {
			t.problem(spec.Source, kindCluster, spec.Name, err)
		}
	}
	t.clusters[name] = c
	return c, c != nil
}

func specCluster(name string, eps []catalog.Endpoint) (*clusterv3.Cluster, error) {
	c, err := NewCluster(name, eps)
	if err != nil {
		return nil, err
	}
	if err := c.ValidateAll(); err != nil {
		return nil, fmt.Errorf("invalid cluster: %w", err)
	}
	return c, nil
}

// NewCluster builds a cluster with an inline load assignment: endpoints come
// from specs, not from a discovery system, so EDS would add a resource type
// and nothing else. All-IP endpoints give a STATIC cluster, any DNS name a
// STRICT_DNS one that Envoy re-resolves.
func NewCluster(name string, eps []catalog.Endpoint) (*clusterv3.Cluster, error) {
	typ := clusterv3.Cluster_STATIC
	lbs := make([]*endpointv3.LbEndpoint, 0, len(eps))
	for _, ep := range eps {
		if ep.Port == 0 {
			return nil, fmt.Errorf("endpoint %s has no port", ep.Host)
		}
		// A STATIC cluster takes IP addresses only; one DNS name makes
		// Envoy resolve (and re-resolve) every endpoint.
		if _, err := netip.ParseAddr(ep.Host); err != nil {
			typ = clusterv3.Cluster_STRICT_DNS
		}
		lbs = append(lbs, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: SocketAddress(ep.Host, ep.Port),
			}},
		})
	}
	c := &clusterv3.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(clusterConnectTimeout),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: typ},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints:   []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}},
		},
	}
	if typ == clusterv3.Cluster_STRICT_DNS {
		// AUTO prefers IPv6; "localhost" would then resolve to ::1 while
		// most local services listen on 127.0.0.1 only.
		c.DnsLookupFamily = clusterv3.Cluster_V4_PREFERRED
	}
	return c, nil
}

// SocketAddress is a TCP host:port address.
func SocketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// moduleCluster builds the cluster Envoy downloads modules through, from the
// module server's advertised base URL.
func moduleCluster(base string) (*clusterv3.Cluster, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("module server URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("module server URL %q: scheme must be http or https", base)
	}
	host := u.Hostname()
	if host == "" {
		return nil, fmt.Errorf("module server URL %q: no host", base)
	}
	port, err := urlPort(u)
	if err != nil {
		return nil, fmt.Errorf("module server URL %q: %w", base, err)
	}
	c, err := NewCluster(ModuleClusterName, []catalog.Endpoint{{Host: host, Port: port}})
	if err != nil {
		return nil, fmt.Errorf("module server URL %q: %w", base, err)
	}
	if u.Scheme == "https" {
		if c.TransportSocket, err = moduleTLS(host); err != nil {
			return nil, err
		}
	}
	if err := c.ValidateAll(); err != nil {
		return nil, fmt.Errorf("invalid module cluster: %w", err)
	}
	return c, nil
}

func urlPort(u *url.URL) (uint32, error) {
	p := u.Port()
	if p == "" {
		if u.Scheme == "https" {
			return 443, nil
		}
		return 80, nil
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return 0, errors.New("invalid port " + p)
	}
	return uint32(n), nil
}

// moduleTLS encrypts module downloads. The server certificate is not
// verified: Envoy has no portable way to name the system trust store, and a
// module's integrity does not depend on the channel because Envoy checks
// every download against the sha256 in the filter config.
func moduleTLS(host string) (*corev3.TransportSocket, error) {
	return TLSTransportSocket(&tlsv3.UpstreamTlsContext{
		CommonTlsContext: &tlsv3.CommonTlsContext{},
		Sni:              SNI(host),
	})
}

// TLSTransportSocket wraps an upstream TLS context into a cluster's
// transport socket.
func TLSTransportSocket(tls *tlsv3.UpstreamTlsContext) (*corev3.TransportSocket, error) {
	a, err := PackValid(tls)
	if err != nil {
		return nil, err
	}
	return &corev3.TransportSocket{
		Name:       tlsTransportSocketName,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a},
	}, nil
}

// tlsTransportSocketName is the name Envoy registers its TLS transport
// socket under.
const tlsTransportSocketName = "envoy.transport_sockets.tls"

// SNI is the server name to send for host: the host itself for a DNS name,
// empty for an IP address, since SNI carries DNS names only (RFC 6066).
func SNI(host string) string {
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	return host
}
