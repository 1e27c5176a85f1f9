// Package bootstrap generates the Envoy bootstrap that takes all of its
// configuration from wasmxds: a node identity with labels, an admin
// listener, one static cluster to wasmxds's ADS endpoint (over TLS when
// asked), ADS for listeners and clusters, and a stat sink that reports to
// wasmxds. `wasmxds bootstrap` prints it; tests and the benchmarks start
// Envoys from it.
//
// Options mirror the command's flags one to one, and errors name the
// option by its flag (--xds-address, --tls-ca-file, ...).
package bootstrap

import (
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"gopkg.in/yaml.v3"

	"github.com/wasmxds/wasmxds/internal/catalog"
	"github.com/wasmxds/wasmxds/internal/xds"
)

// Defaults of the options, which are the defaults of the command's flags.
const (
	DefaultNodeCluster  = "wasmxds"
	DefaultXDSAddress   = "127.0.0.1:18000"
	DefaultAdminAddress = "127.0.0.1"
	DefaultAdminPort    = 9901
	// DefaultStatsFlushInterval is Envoy's own default, written out.
	DefaultStatsFlushInterval = 5 * time.Second
)

// Options say which Envoy the bootstrap is for and how it reaches wasmxds.
// Zero values are taken as they are (an empty node cluster stays empty,
// admin port 0 lets Envoy choose one), except StatsFlushInterval.
type Options struct {
	NodeID      string            // --node-id: required, unique per Envoy
	NodeCluster string            // --node-cluster
	Labels      map[string]string // --labels: node.metadata.labels, which select what the node receives
	XDSAddress  string            // --xds-address: HOST:PORT of wasmxds's ADS endpoint
	// AdminAddress and AdminPort are where Envoy's admin listens
	// (--admin-address, --admin-port).
	AdminAddress string
	AdminPort    uint32
	Delta        bool // --delta: incremental xDS instead of state-of-the-world
	TLS          TLS
	// StatsFlushInterval is how often Envoy reports its stats to wasmxds
	// (--stats-flush-interval; 0: DefaultStatsFlushInterval); NoTelemetry
	// leaves the stat sink out (--no-telemetry).
	StatsFlushInterval time.Duration
	NoTelemetry        bool
}

// Bootstrap is a rendered bootstrap and the file-based SDS configs it
// refers to (with TLS.SDSDir), which WriteSDSFiles puts in place.
type Bootstrap struct {
	YAML     []byte
	SDSFiles []SDSFile
}

// Render builds the bootstrap, validates it and renders it as YAML with
// Envoy's field names. It writes nothing.
func Render(o Options) (Bootstrap, error) {
	bs, err := build(o)
	if err != nil {
		return Bootstrap{}, err
	}
	if err := bs.ValidateAll(); err != nil {
		return Bootstrap{}, fmt.Errorf("generated bootstrap is invalid: %w", err)
	}
	y, err := protoYAML(bs)
	if err != nil {
		return Bootstrap{}, err
	}
	sds, err := renderSDSFiles(o.TLS)
	if err != nil {
		return Bootstrap{}, err
	}
	return Bootstrap{YAML: []byte(y), SDSFiles: sds}, nil
}

// build is the bootstrap proto for o.
func build(o Options) (*bootstrapv3.Bootstrap, error) {
	if o.NodeID == "" {
		return nil, fmt.Errorf("--node-id is required")
	}
	meta, err := labelsMetadata(o.Labels)
	if err != nil {
		return nil, err
	}
	cluster, err := xdsCluster(o.XDSAddress, o.TLS)
	if err != nil {
		return nil, err
	}
	apiType := corev3.ApiConfigSource_GRPC
	if o.Delta {
		apiType = corev3.ApiConfigSource_DELTA_GRPC
	}
	ads := func() *corev3.ConfigSource {
		return &corev3.ConfigSource{
			ResourceApiVersion:    corev3.ApiVersion_V3,
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		}
	}
	sinks, flush, err := statsSink(o)
	if err != nil {
		return nil, err
	}
	return &bootstrapv3.Bootstrap{
		Node:               &corev3.Node{Id: o.NodeID, Cluster: o.NodeCluster, Metadata: meta},
		StatsSinks:         sinks,
		StatsFlushInterval: flush,
		Admin:              &bootstrapv3.Admin{Address: xds.SocketAddress(o.AdminAddress, o.AdminPort)},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Clusters: []*clusterv3.Cluster{cluster},
			Secrets:  staticSecrets(o.TLS),
		},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:             apiType,
				TransportApiVersion: corev3.ApiVersion_V3,
				GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
					EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: xds.XDSClusterName},
				}}},
				SetNodeOnFirstMessageOnly: true,
			},
			LdsConfig: ads(),
			CdsConfig: ads(),
		},
	}, nil
}

// labelsMetadata puts labels where wasmxds reads them: node.metadata.labels.
func labelsMetadata(labels map[string]string) (*structpb.Struct, error) {
	fields := make(map[string]any, len(labels))
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if k == "" {
			return nil, fmt.Errorf("--labels: empty label name")
		}
		fields[k] = labels[k]
	}
	meta, err := structpb.NewStruct(map[string]any{"labels": fields})
	if err != nil {
		return nil, fmt.Errorf("--labels: %w", err)
	}
	return meta, nil
}

// xdsCluster is the HTTP/2 cluster to wasmxds: STATIC for an IP address,
// STRICT_DNS for a name (re-resolved, so a moved control plane is found),
// over TLS when a CA is given.
func xdsCluster(address string, tls TLS) (*clusterv3.Cluster, error) {
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("--xds-address %q: %w", address, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 || host == "" {
		return nil, fmt.Errorf("--xds-address %q: want HOST:PORT", address)
	}
	c, err := xds.NewCluster(xds.XDSClusterName, []catalog.Endpoint{{Host: host, Port: uint32(port)}})
	if err != nil {
		return nil, fmt.Errorf("--xds-address %q: %w", address, err)
	}
	opts, err := xdsProtocolOptions()
	if err != nil {
		return nil, err
	}
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{protocolOptionsKey: opts}
	if c.TransportSocket, err = xdsTransportSocket(host, tls); err != nil {
		return nil, err
	}
	return c, nil
}

// protocolOptionsKey is where a cluster's typed_extension_protocol_options
// take HttpProtocolOptions: under the message's full name.
var protocolOptionsKey = string((&httpv3.HttpProtocolOptions{}).ProtoReflect().Descriptor().FullName())

// xdsProtocolOptions makes the ADS connection HTTP/2, as gRPC requires.
func xdsProtocolOptions() (*anypb.Any, error) {
	return xds.PackValid(&httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{
						// Pings find a dead control plane connection (no FIN
						// after a crash or partition) so Envoy reconnects.
						ConnectionKeepalive: &corev3.KeepaliveSettings{
							Interval: durationpb.New(30 * time.Second),
							Timeout:  durationpb.New(5 * time.Second),
						},
					},
				},
			},
		},
	})
}

// protoYAML renders a message as YAML with proto field names, keeping
// protojson's field order.
func protoYAML(m proto.Message) (string, error) {
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("rendering %s: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	var node yaml.Node
	if err := yaml.Unmarshal(js, &node); err != nil {
		return "", fmt.Errorf("converting to YAML: %w", err)
	}
	if err := blockStyle(&node); err != nil {
		return "", fmt.Errorf("converting to YAML: %w", err)
	}
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&node); err != nil {
		return "", fmt.Errorf("converting to YAML: %w", err)
	}
	return b.String(), enc.Close()
}

// blockStyle turns JSON's flow style into block style, and gives every
// string (key or value) the style yaml.v3 gives a Go string: quoted exactly
// when plain text would read as something else. That covers YAML 1.2's
// non-strings (true, null, ~, "", 0123, 1e3) and also YAML 1.1's booleans
// (yes, no, on, off, y, n), which Envoy's YAML parser still reads as bools;
// a node id "n" left plain would be false, and a label value "yes" a bool
// that wasmxds ignores.
func blockStyle(n *yaml.Node) error {
	n.Style = 0
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
		var asGoString yaml.Node
		if err := asGoString.Encode(n.Value); err != nil {
			return err
		}
		n.Style = asGoString.Style
	}
	for _, c := range n.Content {
		if err := blockStyle(c); err != nil {
			return err
		}
	}
	return nil
}
