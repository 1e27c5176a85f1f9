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
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"gopkg.in/yaml.v3"

	"github.com/wasmxds/wasmxds/catalog"
	"github.com/wasmxds/wasmxds/xds"
)

type bootstrapOptions struct {
	nodeID       string
	nodeCluster  string
	labels       map[string]string
	xdsAddress   string
	adminAddress string
	adminPort    uint32
	delta        bool
	tls          tlsOptions
	// flushInterval is how often Envoy reports its stats to wasmxds;
	// noTelemetry leaves the stat sink out.
	flushInterval time.Duration
	noTelemetry   bool
}

func newBootstrapCmd() *cobra.Command {
	var o bootstrapOptions
	cmd := &cobra.Command{
		Use:   "bootstrap --node-id ID --labels k=v[,k=v] --xds-address HOST:PORT",
		Short: "Print an Envoy bootstrap that takes all its configuration from wasmxds",
		Long: `Print an Envoy v3 bootstrap (YAML) whose only static cluster is wasmxds's ADS
endpoint (STATIC for an IP address; STRICT_DNS for a host name, re-resolved so a
moved control plane is found), with Envoy's admin listener on
--admin-address:--admin-port. The node's labels (node.metadata.labels) select
which listeners and Wasm plugins it receives; nodes with the same labels share one
configuration. Every string stays a string for Envoy: a node id or label value
such as yes, n, ~ or 0123 is quoted.

With --tls-ca-file Envoy connects over TLS and verifies the server's certificate:
it must chain to that CA and name the --xds-address host as a DNS SAN (or an IP
SAN for an IP address; a DNS host is also sent as SNI). --tls-cert-file and
--tls-key-file add a client certificate for mutual TLS (both, and only with a CA).
File paths are absolute, as Envoy sees them; Envoy reads them once at start. With
--tls-sds-dir the command also writes DIR/wasmxds-xds-ca.yaml and
DIR/wasmxds-xds-client-cert.yaml (file-based SDS; DIR must be the same path for
Envoy), and Envoy reloads the CA, certificate and key when they are moved into
place in their directories (a rename, or a Kubernetes Secret volume update)
without a restart.

Envoy also reports its stats to wasmxds (a metrics_service stat sink over the
same connection and TLS as ADS) every --stats-flush-interval: runtime health
per plugin and rollout analysis come from them. --no-telemetry leaves it out.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := renderBootstrap(o)
			if err != nil {
				return err
			}
			if err := writeSDSFiles(out.sdsFiles); err != nil {
				return err
			}
			_, err = io.WriteString(cmd.OutOrStdout(), out.bootstrap)
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
	f.DurationVar(&o.flushInterval, "stats-flush-interval", defaultStatsFlushInterval,
		"how often Envoy reports its stats to wasmxds (runtime health, rollout analysis)")
	f.BoolVar(&o.noTelemetry, "no-telemetry", false, "leave out the stat sink: Envoy reports nothing to wasmxds")
	addTLSFlags(f, &o.tls)
	_ = cmd.MarkFlagRequired("node-id")
	return cmd
}

// renderedBootstrap is the bootstrap YAML and the SDS files it refers to.
type renderedBootstrap struct {
	bootstrap string
	sdsFiles  []sdsFile
}

// renderBootstrap builds the bootstrap proto, validates it and renders it
// as YAML with Envoy's field names. It writes nothing.
func renderBootstrap(o bootstrapOptions) (renderedBootstrap, error) {
	bs, err := buildBootstrap(o)
	if err != nil {
		return renderedBootstrap{}, err
	}
	if err := bs.ValidateAll(); err != nil {
		return renderedBootstrap{}, fmt.Errorf("generated bootstrap is invalid: %w", err)
	}
	out := renderedBootstrap{}
	if out.bootstrap, err = protoYAML(bs); err != nil {
		return renderedBootstrap{}, err
	}
	if out.sdsFiles, err = renderSDSFiles(o.tls); err != nil {
		return renderedBootstrap{}, err
	}
	return out, nil
}

func buildBootstrap(o bootstrapOptions) (*bootstrapv3.Bootstrap, error) {
	if o.nodeID == "" {
		return nil, fmt.Errorf("--node-id is required")
	}
	meta, err := labelsMetadata(o.labels)
	if err != nil {
		return nil, err
	}
	cluster, err := xdsCluster(o.xdsAddress, o.tls)
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
	sinks, flush, err := statsSink(o)
	if err != nil {
		return nil, err
	}
	return &bootstrapv3.Bootstrap{
		Node:               &corev3.Node{Id: o.nodeID, Cluster: o.nodeCluster, Metadata: meta},
		StatsSinks:         sinks,
		StatsFlushInterval: flush,
		Admin:              &bootstrapv3.Admin{Address: xds.SocketAddress(o.adminAddress, o.adminPort)},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Clusters: []*clusterv3.Cluster{cluster},
			Secrets:  staticSecrets(o.tls),
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
func xdsCluster(address string, tls tlsOptions) (*clusterv3.Cluster, error) {
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
