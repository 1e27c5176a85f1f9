package main

import (
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"gopkg.in/yaml.v3"
)

// xdsClusterName is the bootstrap's only static cluster: the way to wasmxds.
const xdsClusterName = "wasmxds_xds"

type bootstrapOptions struct {
	nodeID       string
	nodeCluster  string
	labels       map[string]string
	xdsAddress   string
	adminAddress string
	adminPort    uint32
	delta        bool
}

func newBootstrapCmd() *cobra.Command {
	var o bootstrapOptions
	cmd := &cobra.Command{
		Use:   "bootstrap --node-id ID --labels k=v[,k=v] --xds-address HOST:PORT",
		Short: "Print an Envoy bootstrap that takes all its configuration from wasmxds",
		Long: `Print an Envoy v3 bootstrap (YAML) whose only static resource is a cluster to
wasmxds's ADS endpoint. The node's labels select which listeners and Wasm plugins
it receives; nodes with the same labels share one configuration.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := renderBootstrap(o)
			if err != nil {
				return err
			}
			_, err = io.WriteString(cmd.OutOrStdout(), out)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.nodeID, "node-id", "", "Envoy node id (required, unique per Envoy)")
	f.StringVar(&o.nodeCluster, "node-cluster", "wasmxds", "Envoy node cluster")
	f.StringToStringVar(&o.labels, "labels", nil, "node labels, k=v[,k=v]")
	f.StringVar(&o.xdsAddress, "xds-address", "127.0.0.1:18000", "wasmxds ADS address, HOST:PORT")
	f.StringVar(&o.adminAddress, "admin-address", "127.0.0.1", "Envoy admin listen address")
	f.Uint32Var(&o.adminPort, "admin-port", 9901, "Envoy admin listen port")
	f.BoolVar(&o.delta, "delta", false, "use incremental (delta) xDS instead of state-of-the-world")
	_ = cmd.MarkFlagRequired("node-id")
	return cmd
}

// renderBootstrap builds the bootstrap proto, validates it and renders it
// as YAML with Envoy's field names.
func renderBootstrap(o bootstrapOptions) (string, error) {
	bs, err := buildBootstrap(o)
	if err != nil {
		return "", err
	}
	if err := bs.ValidateAll(); err != nil {
		return "", fmt.Errorf("generated bootstrap is invalid: %w", err)
	}
	return protoYAML(bs)
}

func buildBootstrap(o bootstrapOptions) (*bootstrapv3.Bootstrap, error) {
	if o.nodeID == "" {
		return nil, fmt.Errorf("--node-id is required")
	}
	meta, err := labelsMetadata(o.labels)
	if err != nil {
		return nil, err
	}
	xds, err := xdsCluster(o.xdsAddress)
	if err != nil {
		return nil, err
	}
	apiType := corev3.ApiConfigSource_GRPC
	if o.delta {
		apiType = corev3.ApiConfigSource_DELTA_GRPC
	}
	ads := func() *corev3.ConfigSource {
		return &corev3.ConfigSource{
			ResourceApiVersion:    corev3.ApiVersion_V3,
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		}
	}
	return &bootstrapv3.Bootstrap{
		Node:  &corev3.Node{Id: o.nodeID, Cluster: o.nodeCluster, Metadata: meta},
		Admin: &bootstrapv3.Admin{Address: socketAddr(o.adminAddress, o.adminPort)},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Clusters: []*clusterv3.Cluster{xds},
		},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:             apiType,
				TransportApiVersion: corev3.ApiVersion_V3,
				GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
					EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: xdsClusterName},
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
// STRICT_DNS for a name (re-resolved, so a moved control plane is found).
func xdsCluster(address string) (*clusterv3.Cluster, error) {
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("--xds-address %q: %w", address, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 || host == "" {
		return nil, fmt.Errorf("--xds-address %q: want HOST:PORT", address)
	}
	discovery := clusterv3.Cluster_STRICT_DNS
	if net.ParseIP(host) != nil {
		discovery = clusterv3.Cluster_STATIC
	}
	opts, err := xdsProtocolOptions()
	if err != nil {
		return nil, err
	}
	return &clusterv3.Cluster{
		Name:                 xdsClusterName,
		ConnectTimeout:       durationpb.New(2 * time.Second),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: discovery},
		TypedExtensionProtocolOptions: map[string]*anypb.Any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": opts,
		},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: xdsClusterName,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: socketAddr(host, uint32(port)),
				}},
			}}}},
		},
	}, nil
}

// xdsProtocolOptions makes the ADS connection HTTP/2, as gRPC requires.
func xdsProtocolOptions() (*anypb.Any, error) {
	return anypb.New(&httpv3.HttpProtocolOptions{
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

func socketAddr(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
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
	clearStyle(&node)
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&node); err != nil {
		return "", fmt.Errorf("converting to YAML: %w", err)
	}
	return b.String(), enc.Close()
}

// clearStyle turns JSON's flow style into block style, and drops the
// quotes JSON put on every key and string where YAML does not need them.
func clearStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		clearStyle(c)
	}
}
