package xds

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"strconv"
	"time"

	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/wasmxds/wasmxds/internal/catalog"
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
func moduleCluster(base string, mtls ModuleTLS) (*clusterv3.Cluster, error) {
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
		if c.TransportSocket, err = moduleTLS(host, mtls); err != nil {
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

// Names of the secrets an Envoy's bootstrap defines for its connections to
// wasmxds (`wasmxds bootstrap --tls-*`): static secrets, or file-based SDS
// secrets in the files named below under --tls-sds-dir. The module cluster
// refers to the same secrets, so modules are downloaded with the same trust
// and client certificate as the ADS connection.
const (
	SecretCA          = "wasmxds_xds_ca"
	SecretClientCert  = "wasmxds_xds_client_cert"
	SDSCAFile         = "wasmxds-xds-ca.yaml"
	SDSClientCertFile = "wasmxds-xds-client-cert.yaml"
)

// ModuleTLS says how Envoys verify (and authenticate to) an https module
// server: with the bootstrap's CA secret and, with ClientCert, its client
// certificate secret; from the SDS files in SDSDir (as Envoy sees it) when
// set, else from the bootstrap's static secrets.
type ModuleTLS struct {
	ClientCert bool
	SDSDir     string
}

// secret refers to one of the bootstrap's secrets.
func (m ModuleTLS) secret(name, file string) *tlsv3.SdsSecretConfig {
	if m.SDSDir == "" {
		return &tlsv3.SdsSecretConfig{Name: name}
	}
	return FileSDS(name, path.Join(m.SDSDir, file))
}

// FileSDS refers to a secret that Envoy loads from a file, watching it and
// the files it names for moves.
func FileSDS(name, file string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: &corev3.ConfigSource{
		ResourceApiVersion: corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_PathConfigSource{
			PathConfigSource: &corev3.PathConfigSource{Path: file},
		},
	}}
}

// moduleTLS verifies the module server's certificate against the
// bootstrap's CA and its name against the advertised host, and presents
// the bootstrap's client certificate when the server requires one. Envoy
// checks every module against its sha256 too, but an unverified channel
// would let anyone on the path learn which modules a node runs and feed it
// failures.
func moduleTLS(host string, m ModuleTLS) (*corev3.TransportSocket, error) {
	common := &tlsv3.CommonTlsContext{
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
			CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext: &tlsv3.CertificateValidationContext{
					MatchTypedSubjectAltNames: ServerNameMatchers(host),
				},
				ValidationContextSdsSecretConfig: m.secret(SecretCA, SDSCAFile),
			},
		},
	}
	if m.ClientCert {
		common.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{m.secret(SecretClientCert, SDSClientCertFile)}
	}
	return TLSTransportSocket(&tlsv3.UpstreamTlsContext{CommonTlsContext: common, Sni: SNI(host)})
}

// ServerNameMatchers require a server certificate to carry host as a DNS
// SAN, or as an IP SAN for an IP address. Without a matcher Envoy would
// accept any certificate the CA signed.
func ServerNameMatchers(host string) []*tlsv3.SubjectAltNameMatcher {
	san := tlsv3.SubjectAltNameMatcher_DNS
	if ip, err := netip.ParseAddr(host); err == nil {
		san, host = tlsv3.SubjectAltNameMatcher_IP_ADDRESS, ip.String()
	}
	return []*tlsv3.SubjectAltNameMatcher{{
		SanType: san,
		Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: host}},
	}}
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
