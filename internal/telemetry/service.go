package telemetry

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/service/metrics/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/wasmxds/wasmxds/internal/xds"
)

// Refusal reasons, the values of the refused counter's reason label.
const (
	refusedUnauthorized = "unauthorized" // Authorize refused the node
	refusedRebound      = "rebound"      // a later message named another node
	refusedNoNode       = "no_node"      // the first message named no node
)

// Service is envoy.service.metrics.v3.MetricsService: Envoys stream their
// stats to it (the metrics_service stat sink of `wasmxds bootstrap`).
type Service struct {
	store     *Store
	authorize xds.AuthorizeFunc
	attached  func(identity string, node *corev3.Node) bool
	log       *slog.Logger
	m         *serviceMetrics
}

// ServiceOptions configure a Service.
type ServiceOptions struct {
	Store *Store
	// Authorize admits the node of a stream's first message, as it admits
	// an ADS stream's node (NodeAccess with client certificates); nil
	// admits every node.
	Authorize xds.AuthorizeFunc
	// AttachedAs, when set, says whether an ADS stream is attached as the
	// node with that identity; reports of other nodes are ignored.
	AttachedAs func(identity string, node *corev3.Node) bool
	Logger     *slog.Logger          // nil discards
	Registry   prometheus.Registerer // nil registers nothing
}

type serviceMetrics struct {
	streams  prometheus.Gauge
	messages *prometheus.CounterVec
	refused  *prometheus.CounterVec
}

// NewService returns a Service recording into opts.Store.
func NewService(opts ServiceOptions) (*Service, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &serviceMetrics{
		streams: prometheus.NewGauge(prometheus.GaugeOpts{Name: "wasmxds_telemetry_streams",
			Help: "Envoy metrics streams open."}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wasmxds_telemetry_messages_total",
			Help: "Metrics messages received: kept, or ignored (the node has no ADS stream here)."}, []string{"result"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "wasmxds_telemetry_streams_refused_total",
			Help: "Metrics streams refused: unauthorized node, a node other than the stream's first, no node."},
			[]string{"reason"}),
	}
	store := opts.Store
	if opts.Registry != nil {
		nodes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "wasmxds_telemetry_nodes",
			Help: "Nodes whose reported telemetry is kept."}, func() float64 { return float64(store.Len()) })
		for _, c := range []prometheus.Collector{m.streams, m.messages, m.refused, nodes} {
			if err := opts.Registry.Register(c); err != nil {
				return nil, fmt.Errorf("register telemetry metrics: %w", err)
			}
		}
	}
	return &Service{store: store, authorize: opts.Authorize, attached: opts.AttachedAs, log: log.With("component", "telemetry"), m: m}, nil
}

// serviceDesc is envoy.service.metrics.v3.MetricsService with a handler
// that reads messages as bytes (see frame and ServerCodec).
var serviceDesc = grpc.ServiceDesc{
	ServiceName: "envoy.service.metrics.v3.MetricsService",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{StreamName: "StreamMetrics", ClientStreams: true,
		Handler: func(srv any, stream grpc.ServerStream) error { return srv.(*Service).streamMetrics(stream) }}},
	Metadata: "envoy/service/metrics/v3/metrics_service.proto",
}

// Register adds the metrics service to a gRPC server, which must be built
// with grpc.ForceServerCodecV2(ServerCodec()).
func (s *Service) Register(reg grpc.ServiceRegistrar) {
	reg.RegisterService(&serviceDesc, s)
}

// maxPooledFrame is the largest message buffer kept for reuse.
const maxPooledFrame = 1 << 20

// streamMetrics receives one Envoy's stats until it closes the stream. The
// stream is bound to the node of its first message, which Authorize must
// admit: with client certificates a node reports only as itself.
func (s *Service) streamMetrics(stream grpc.ServerStream) error {
	s.m.streams.Inc()
	defer s.m.streams.Dec()
	identity := xds.PeerIdentity(stream.Context())
	var bound *corev3.Node
	for {
		var f frame
		err := stream.RecvMsg(&f)
		if err == nil {
			bound, err = s.message(bound, identity, f.b)
		}
		f.release()
		if errors.Is(err, io.EOF) {
			return stream.SendMsg(&metricsv3.StreamMetricsResponse{})
		}
		if err != nil {
			return err
		}
	}
}

// message binds the stream on its first message and records msg.
func (s *Service) message(bound *corev3.Node, identity string, msg []byte) (*corev3.Node, error) {
	idBytes, err := identifierOf(msg)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "wasmxds: %v", err)
	}
	var node *corev3.Node
	if idBytes != nil {
		var id metricsv3.StreamMetricsMessage_Identifier
		if err := proto.Unmarshal(idBytes, &id); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "wasmxds: identifier: %v", err)
		}
		node = id.GetNode()
	}
	if bound, err = s.bind(bound, identity, node); err != nil {
		return nil, err
	}
	result := "kept"
	if s.attached != nil && !s.attached(identity, bound) {
		s.m.messages.WithLabelValues("ignored").Inc()
		return bound, nil
	}
	switch err := s.store.reportWire(bound.GetId(), msg); {
	case errors.Is(err, errUnknownNode):
		result = "ignored"
	case err != nil:
		return nil, status.Errorf(codes.InvalidArgument, "wasmxds: %v", err)
	}
	s.m.messages.WithLabelValues(result).Inc()
	return bound, nil
}

// bind admits the first message's node and holds later messages to it.
func (s *Service) bind(bound *corev3.Node, identity string, node *corev3.Node) (*corev3.Node, error) {
	switch {
	case bound == nil && node == nil:
		return nil, s.refuse(refusedNoNode, identity, "", codes.InvalidArgument,
			errors.New("the first message of a metrics stream must carry identifier.node"))
	case bound == nil:
		if s.authorize != nil {
			if err := s.authorize(identity, node); err != nil {
				return nil, s.refuse(refusedUnauthorized, identity, node.GetId(), codes.PermissionDenied, err)
			}
		}
		return &corev3.Node{Id: node.GetId(), Cluster: node.GetCluster(), Metadata: node.GetMetadata()}, nil
	case node != nil && !xds.SameNode(bound, node):
		return nil, s.refuse(refusedRebound, identity, node.GetId(), codes.PermissionDenied,
			fmt.Errorf("the stream reports for node %q and then named node %q: a stream reports for the node of "+
				"its first message only", bound.GetId(), node.GetId()))
	}
	return bound, nil
}

func (s *Service) refuse(reason, identity, nodeID string, code codes.Code, why error) error {
	s.m.refused.WithLabelValues(reason).Inc()
	s.log.Warn("metrics stream refused", "identity", identity, "node", nodeID, "reason", why)
	return status.Errorf(code, "wasmxds: %v", why)
}
