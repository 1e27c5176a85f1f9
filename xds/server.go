package xds

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	gcplog "github.com/envoyproxy/go-control-plane/pkg/log"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// errInconsistent marks a snapshot whose resources reference each other
// wrongly (e.g. a listener naming a route configuration that is missing).
var errInconsistent = errors.New("inconsistent snapshot")

// TranslateFunc turns an Input into one node group's resources.
type TranslateFunc func(in Input, labels map[string]string) (*Resources, []Problem)

// ServerOptions configures a Server. The zero value is usable.
type ServerOptions struct {
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the server's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Translate builds a group's resources; nil uses Translate.
	Translate TranslateFunc
	// GroupIdleTimeout is how long a label set with no connected node keeps
	// its snapshot before it is dropped; zero means 10 minutes.
	GroupIdleTimeout time.Duration
}

// Server serves ADS (state-of-the-world and delta) from one snapshot per
// node group, where a group is the set of nodes sharing a label set.
type Server struct {
	log         *slog.Logger
	metrics     *serverMetrics
	translate   TranslateFunc
	idleTimeout time.Duration
	cache       cache.SnapshotCache
	xds         serverv3.Server
	cancel      context.CancelFunc

	// buildMu serializes snapshot builds so that an older Input can never
	// overwrite a snapshot built from a newer one.
	buildMu sync.Mutex

	mu      sync.Mutex
	input   *Input
	ready   bool
	groups  map[string]*group
	streams map[streamKey]*streamState
	nodes   map[string]*nodeState
	// peakStreams is the most streams open at once since memory was last
	// returned to the OS.
	peakStreams int
}

// group is one label set's snapshot bookkeeping.
type group struct {
	labels    map[string]string
	versions  typeVersions         // nil until the first snapshot is set
	setAt     map[string]time.Time // per type: when its current version was set
	problems  []Problem
	nodes     int // open streams of nodes in this group
	idleSince time.Time
}

// NewServer returns a Server with no snapshots; it serves nothing until
// Update is called.
func NewServer(opts ServerOptions) *Server {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		log:         logger.With("component", "xds"),
		metrics:     newServerMetrics(opts.Registerer),
		translate:   opts.Translate,
		idleTimeout: cmp.Or(opts.GroupIdleTimeout, 10*time.Minute),
		groups:      map[string]*group{},
		streams:     map[streamKey]*streamState{},
		nodes:       map[string]*nodeState{},
	}
	if s.translate == nil {
		s.translate = Translate
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.cache = cache.NewSnapshotCache(true, groupHash{}, cacheLogger(logger))
	// Ordered ADS sends a SotW update's types in dependency order (clusters
	// before the listeners and routes that use them) instead of whichever
	// watch fires first, so Envoy never sees a route to a cluster it lacks.
	s.xds = serverv3.NewServer(ctx, s.cache, peakTracker{s}, sotw.WithOrderedADS())
	go s.releaseMemoryAfterDepartures(ctx)
	return s
}

// Register adds the aggregated discovery service to a gRPC server.
func (s *Server) Register(reg grpc.ServiceRegistrar) {
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(reg, s.xds)
}

// Close ends every open ADS stream. ADS streams never finish on their own,
// so call Close before grpc.Server.GracefulStop or it waits for its timeout.
func (s *Server) Close() { s.cancel() }

// GRPCServerOptions are the gRPC server settings an ADS server needs.
func GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		// Envoy keeps one long-lived ADS stream per connection and may send
		// HTTP/2 keepalive pings; allow pings every 10s, even with no stream
		// open, instead of closing the connection with ENHANCE_YOUR_CALM.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             10 * time.Second,
			PermitWithoutStream: true,
		}),
		// Ping idle connections so that Envoys that vanished without a FIN
		// (host crash, network partition) are noticed within about a
		// minute, releasing their streams and node status.
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    30 * time.Second,
			Timeout: 20 * time.Second,
		}),
		// An Envoy opens one ADS stream per connection; a small cap stops
		// one misbehaving client from holding many server goroutines.
		grpc.MaxConcurrentStreams(100),
		// Requests (ACKs, NACKs with error details) are small. Responses
		// carry whole resource sets for SotW, so allow large ones.
		grpc.MaxRecvMsgSize(4 << 20),
		grpc.MaxSendMsgSize(64 << 20),
		// Envoys are mostly idle between configuration changes; a shared
		// write buffer is returned to a pool after each flush instead of
		// every connection holding its own 32 KiB for its whole life.
		grpc.SharedWriteBuffer(true),
	}
}

// Memory is handed back to the OS once the open streams fall to half
// their peak, if the peak was at least releaseMinStreams: Go returns freed
// memory only after a GC cycle, and an idle server may not run one for
// minutes, so the RSS of a departed fleet would linger.
const (
	releaseMinStreams = 100
	releaseEvery      = 5 * time.Second
)

// releaseMemoryAfterDepartures runs until ctx ends.
func (s *Server) releaseMemoryAfterDepartures(ctx context.Context) {
	tick := time.NewTicker(releaseEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.mu.Lock()
		n, peak := len(s.streams), s.peakStreams
		release := peak >= releaseMinStreams && n <= peak/2
		if release {
			s.peakStreams = n
		}
		s.mu.Unlock()
		if release {
			// The first cycle moves pooled buffers (gRPC, protobuf) to
			// sync.Pool's victim cache; only the second frees them.
			runtime.GC()
			debug.FreeOSMemory()
			s.log.Info("returned free memory to the OS after nodes left", "streams", n, "peak_streams", peak)
		}
	}
}

// peakTracker records the peak of open streams as each opens: a periodic
// sample would miss a fleet that connected and left between two ticks.
type peakTracker struct{ *Server }

// OnStreamOpen implements serverv3.Callbacks.
func (p peakTracker) OnStreamOpen(ctx context.Context, id int64, typeURL string) error {
	err := p.Server.OnStreamOpen(ctx, id, typeURL)
	p.notePeak()
	return err
}

// OnDeltaStreamOpen implements serverv3.Callbacks.
func (p peakTracker) OnDeltaStreamOpen(ctx context.Context, id int64, typeURL string) error {
	err := p.Server.OnDeltaStreamOpen(ctx, id, typeURL)
	p.notePeak()
	return err
}

func (s *Server) notePeak() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.peakStreams = max(s.peakStreams, len(s.streams))
}

// Ready reports whether the first Input has been processed, i.e. every
// group known at that time has a snapshot and groups that connect later get
// one on their first request.
func (s *Server) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}

// Update rebuilds every known group's snapshot from in. A group whose
// resources hash the same as before is left alone, so Envoys are sent
// nothing.
func (s *Server) Update(in Input) {
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	s.mu.Lock()
	s.input = &in
	s.dropIdleGroupsLocked(time.Now())
	keys := slices.Sorted(maps.Keys(s.groups))
	s.mu.Unlock()
	for _, key := range keys {
		s.rebuild(key, in)
	}
	s.mu.Lock()
	s.ready = true
	s.mu.Unlock()
}

// Problems returns the translation problems of every known group, without
// duplicates, sorted by source.
func (s *Server) Problems() []Problem {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[Problem]bool{}
	var out []Problem
	for _, g := range s.groups {
		for _, p := range g.problems {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	slices.SortFunc(out, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Source.File, b.Source.File), cmp.Compare(a.Source.Line, b.Source.Line),
			cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Message, b.Message))
	})
	return out
}

// ensureGroup builds a group's first snapshot when a node with a new label
// set connects after an Input is known. It runs in the stream's request
// callback, before the watch is created, so the node is answered at once.
func (s *Server) ensureGroup(key string) {
	s.mu.Lock()
	g := s.groups[key]
	pending := g != nil && g.versions == nil && s.input != nil
	s.mu.Unlock()
	if !pending {
		return
	}
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	s.mu.Lock()
	in := s.input
	pending = s.groups[key] == g && g.versions == nil
	s.mu.Unlock()
	if pending {
		s.rebuild(key, *in)
	}
}

// rebuild translates in for one group and sets its snapshot if anything
// changed. An invalid snapshot is logged and counted and the previous one
// keeps serving. The caller holds buildMu.
func (s *Server) rebuild(key string, in Input) {
	start := time.Now()
	s.mu.Lock()
	g := s.groups[key]
	s.mu.Unlock()
	if g == nil {
		return
	}
	res, problems := s.translate(in, g.labels)
	snap, versions, err := buildSnapshot(res)
	s.mu.Lock()
	g.problems = problems
	old, oldSetAt := g.versions, g.setAt
	changed := err == nil && !maps.Equal(old, versions)
	if changed {
		// Recorded before SetSnapshot, which may answer watches at once, so
		// that a quick ACK already finds the version for convergence.
		g.versions, g.setAt = versions, setTimes(old, oldSetAt, versions, start)
	}
	s.mu.Unlock()
	defer func() { s.metrics.buildDuration.Observe(time.Since(start).Seconds()) }()
	if err != nil {
		s.snapshotFailed(key, reasonFor(err), err)
		return
	}
	if !changed {
		return
	}
	if err := s.cache.SetSnapshot(context.Background(), key, snap); err != nil {
		s.mu.Lock()
		g.versions, g.setAt = old, oldSetAt
		s.mu.Unlock()
		s.snapshotFailed(key, reasonSetFailed, err)
		return
	}
	s.log.Info("snapshot set", "group", key, "versions", versionAttrs(versions), "problems", len(problems))
}

func (s *Server) snapshotFailed(key, reason string, err error) {
	s.metrics.snapshotErrors.WithLabelValues(reason).Inc()
	s.log.Error("snapshot not set, previous one keeps serving", "group", key, "reason", reason, "error", err)
}

func reasonFor(err error) string {
	if errors.Is(err, errInconsistent) {
		return reasonInconsistent
	}
	return reasonInvalid
}

// setTimes keeps the set time of types whose version did not change.
func setTimes(old typeVersions, oldAt map[string]time.Time, now typeVersions, at time.Time) map[string]time.Time {
	out := make(map[string]time.Time, len(now))
	for typeURL, v := range now {
		if old[typeURL] == v {
			out[typeURL] = oldAt[typeURL]
		} else {
			out[typeURL] = at
		}
	}
	return out
}

func versionAttrs(v typeVersions) slog.Value {
	attrs := make([]slog.Attr, 0, len(v))
	for _, typeURL := range servedTypes {
		attrs = append(attrs, slog.String(typeLabel(typeURL), v[typeURL]))
	}
	return slog.GroupValue(attrs...)
}

// dropIdleGroupsLocked forgets label sets no node has used for a while, so
// the cache does not grow with every label set ever seen.
func (s *Server) dropIdleGroupsLocked(now time.Time) {
	for key, g := range s.groups {
		if g.nodes == 0 && now.Sub(g.idleSince) > s.idleTimeout {
			s.cache.ClearSnapshot(key)
			delete(s.groups, key)
			s.log.Info("dropped idle node group", "group", key)
		}
	}
	s.metrics.nodeGroups.Set(float64(len(s.groups)))
}

// cacheLogger routes go-control-plane's own logs into slog. Its Info
// messages are per-watch chatter, so they go to Debug.
func cacheLogger(l *slog.Logger) gcplog.Logger {
	l = l.With("component", "xds-cache")
	return gcplog.LoggerFuncs{
		DebugFunc: func(f string, a ...any) { l.Debug(fmt.Sprintf(f, a...)) },
		InfoFunc:  func(f string, a ...any) { l.Debug(fmt.Sprintf(f, a...)) },
		WarnFunc:  func(f string, a ...any) { l.Info(fmt.Sprintf(f, a...)) },
		ErrorFunc: func(f string, a ...any) { l.Error(fmt.Sprintf(f, a...)) },
	}
}
