package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/service/metrics/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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
//
// A stream's own goroutine only receives: it hands each message to one of
// a few shared workers (see Run) and waits for the verdict. Thousands of
// Envoys keep a metrics stream open each, and a goroutine's stack grows
// to what its deepest call needed and stays there until a garbage
// collection shrinks it; reading, authorizing and recording a message on
// the stream's goroutine would give every stream the stack of that work.
type Service struct {
	store     *Store
	authorize xds.AuthorizeFunc
	attached  func(identity string, node *xds.StreamNode) bool
	log       *slog.Logger
	m         *serviceMetrics
	workers   int
	queue     chan *metricsStream // messages waiting for a worker
	stopped   chan struct{}       // closed when Run's workers have returned
}

// metricsStream is one metrics stream's state. Its goroutine and a worker
// take turns: the stream receives a message into frame and queues itself,
// a worker processes frame and answers on done, and only then does the
// stream release the frame and receive again.
type metricsStream struct {
	identity string
	bound    *xds.StreamNode // the node of its first message, once admitted
	frame    frame
	done     chan error
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
	AttachedAs func(identity string, node *xds.StreamNode) bool
	Logger     *slog.Logger          // nil discards
	Registry   prometheus.Registerer // nil registers nothing
	// Workers process messages (see Run); 0 means GOMAXPROCS.
	Workers int
}

// queuedMessages bounds the messages waiting for a worker; past it, a
// stream waits to queue its message (and gRPC's flow control holds its
// Envoy back).
const queuedMessages = 64

type serviceMetrics struct {
	streams       prometheus.Gauge
	messages      *prometheus.CounterVec
	kept, ignored prometheus.Counter
	refused       *prometheus.CounterVec
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
	m.kept, m.ignored = m.messages.WithLabelValues("kept"), m.messages.WithLabelValues("ignored")
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
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	return &Service{store: store, authorize: opts.Authorize, attached: opts.AttachedAs, log: log.With("component", "telemetry"),
		m: m, workers: workers, queue: make(chan *metricsStream, queuedMessages), stopped: make(chan struct{})}, nil
}

// Run processes the streams' messages on Options.Workers goroutines until
// ctx ends, and returns once they have. Streams receive nothing before Run
// and are ended with Unavailable after it; call it once.
func (s *Service) Run(ctx context.Context) {
	defer close(s.stopped)
	var wg sync.WaitGroup
	for range s.workers {
		wg.Go(func() {
			var scratch []byte
			for {
				select {
				case <-ctx.Done():
					return
				case st := <-s.queue:
					var err error
					st.bound, err = s.message(st.bound, st.identity, st.frame.bytes(&scratch))
					if cap(scratch) > maxScratch {
						scratch = nil
					}
					st.done <- err
				}
			}
		})
	}
	wg.Wait()
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
// with ServerOptions.
func (s *Service) Register(reg grpc.ServiceRegistrar) {
	reg.RegisterService(&serviceDesc, s)
}

// streamMetrics receives one Envoy's stats until it closes the stream. The
// stream is bound to the node of its first message, which Authorize must
// admit: with client certificates a node reports only as itself.
func (s *Service) streamMetrics(stream grpc.ServerStream) error {
	s.m.streams.Inc()
	defer s.m.streams.Dec()
	st := &metricsStream{identity: xds.PeerIdentity(stream.Context()), done: make(chan error, 1)}
	for {
		err := stream.RecvMsg(&st.frame)
		if err == nil {
			err = s.process(stream.Context(), st)
		}
		st.frame.release()
		if errors.Is(err, io.EOF) {
			return stream.SendMsg(&metricsv3.StreamMetricsResponse{})
		}
		if err != nil {
			return err
		}
	}
}

// errStopped ends the streams still open when Run has returned.
var errStopped = status.Error(codes.Unavailable, "wasmxds: the metrics service is stopping")

// process has a worker process the stream's frame and returns its
// verdict. The frame is the worker's until then.
func (s *Service) process(ctx context.Context, st *metricsStream) error {
	select {
	case s.queue <- st:
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	case <-s.stopped:
		return errStopped
	}
	// A worker that took the frame answers before it returns: wait for the
	// answer even if the stream ends meanwhile, so that the frame is not
	// released under it.
	select {
	case err := <-st.done:
		return err
	case <-s.stopped:
		select {
		case err := <-st.done:
			return err
		default:
			return errStopped
		}
	}
}

// message binds the stream on its first message and records msg.
func (s *Service) message(bound *xds.StreamNode, identity string, msg []byte) (*xds.StreamNode, error) {
	node, err := nodeOf(msg)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "wasmxds: identifier: %v", err)
	}
	if bound, err = s.bind(bound, identity, node); err != nil {
		return nil, err
	}
	if s.attached != nil && !s.attached(identity, bound) {
		s.m.ignored.Inc()
		return bound, nil
	}
	switch err := s.store.reportWire(bound.ID, msg); {
	case errors.Is(err, errUnknownNode):
		s.m.ignored.Inc()
	case err != nil:
		return nil, status.Errorf(codes.InvalidArgument, "wasmxds: %v", err)
	default:
		s.m.kept.Inc()
	}
	return bound, nil
}

// bind admits the first message's node and holds later messages to it.
func (s *Service) bind(bound *xds.StreamNode, identity string, node *corev3.Node) (*xds.StreamNode, error) {
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
		b := xds.NodeOf(node)
		return &b, nil
	case node != nil && !bound.Is(node):
		return nil, s.refuse(refusedRebound, identity, node.GetId(), codes.PermissionDenied,
			fmt.Errorf("the stream reports for node %q and then named node %q: a stream reports for the node of "+
				"its first message only", bound.ID, node.GetId()))
	}
	return bound, nil
}

func (s *Service) refuse(reason, identity, nodeID string, code codes.Code, why error) error {
	s.m.refused.WithLabelValues(reason).Inc()
	s.log.Warn("metrics stream refused", "identity", identity, "node", nodeID, "reason", why)
	return status.Errorf(code, "wasmxds: %v", why)
}
