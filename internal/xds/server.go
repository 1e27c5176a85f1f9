package xds

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	gcplog "github.com/envoyproxy/go-control-plane/pkg/log"
	"github.com/envoyproxy/go-control-plane/pkg/server/config"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"k8s.io/utils/clock"
)

// ServerOptions configures a Server. The zero value is usable.
type ServerOptions struct {
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the server's metrics; nil registers none.
	Registerer prometheus.Registerer
	// GroupIdleTimeout is how long a group with no connected node keeps its
	// bookkeeping (good configs, refusals, held modules) before it is
	// dropped; zero means DefaultGroupIdleTimeout.
	GroupIdleTimeout time.Duration
	// Clock drives the delivery engine's timers (re-pushes, confirmations,
	// idle group expiry) and its timestamps; nil is the real clock. Tests
	// pass a k8s.io/utils/clock/testing.FakeClock and step it.
	Clock clock.WithDelayedExecution
	// MaxIdleGroups caps the groups (label set and rollout bucket, see
	// nodeGroupKey) kept with no connected node; the longest idle are
	// dropped first. Zero means 4096.
	MaxIdleGroups int
	// MaxLabelSetsPerSource caps the label sets that nodes without a
	// client certificate, from one source address, may bring into being
	// while their groups are kept (connected or idle): each label set costs
	// a translation, so an unauthenticated peer could otherwise fill memory
	// by connecting under ever new labels. A node over the cap is refused.
	// Nodes with a certificate are bounded by NodeAccess instead. Zero
	// means DefaultMaxLabelSetsPerSource; negative, no cap.
	MaxLabelSetsPerSource int
	// Authorize, if set, admits or refuses each node on its first request;
	// Server.Reauthorize checks attached nodes again.
	Authorize AuthorizeFunc
	// OnUnknownVersion, if set, hears of a node that opens a stream (state
	// of the world) reporting a version of a type that this server never
	// built for its group: the node comes from another replica, which may
	// be ahead (see reportedVersion). It runs on the stream's goroutine
	// and must not block.
	OnUnknownVersion func(nodeID, typeURL, version string)
	// OnModuleRefused, if set, hears of a node that refused a plugin's
	// module (status failed: it downloaded the module and did not start
	// its VM, never managed to load it, or Envoy rejected the config
	// carrying it). It is an event, the engine's only report about
	// modules: whether the refusal halts a rollout is for the control
	// plane to decide. It runs on the stream's goroutine and must not
	// block.
	OnModuleRefused func(nodeID, plugin, sha256, reason string)
	// Redact, if set, removes secrets from Envoy's NACK messages before
	// they are kept, logged or reported: Envoy may quote the rejected
	// config, which can carry pluginConfig values filled from secrets.
	Redact func(string) string
}

// DefaultGroupIdleTimeout is how long an idle group is kept by default.
const DefaultGroupIdleTimeout = 10 * time.Minute

// Server serves ADS (state-of-the-world and delta) from one snapshot per
// node group, where a group is the set of nodes sharing a label set.
type Server struct {
	log         *slog.Logger
	clock       clock.WithDelayedExecution
	metrics     *serverMetrics
	idleTimeout time.Duration
	maxIdle     int
	maxSets     int
	cache       snapshotStore
	xds         serverv3.Server
	cancel      context.CancelFunc
	tracker     *tracker
	authorize   AuthorizeFunc
	onUnknown   func(nodeID, typeURL, version string)
	onRefused   func(nodeID, plugin, sha256, reason string)
	redact      func(string) string
	deliveries  *deliveries
	downloads   downloads
	repush      *repusher
	idle        *idleExpiry
	// translate is Translate; in-package tests replace it to feed the
	// server resources that real specs cannot produce.
	translate func(in Input, labels map[string]string) (*Resources, []Problem)

	// idleHeld is set when a group went idle, or a group without nodes
	// was built, since releaseIdleLocked last ran: some group without
	// nodes may hold its snapshot. idleGroups counts the groups without
	// nodes. Both under mu.
	idleHeld   bool
	idleGroups int

	// authMu makes Reauthorize exclusive with the admission of new nodes
	// (read-locked from Authorize until the node is attached).
	authMu sync.RWMutex

	// buildMu serializes snapshot builds so that an older Input can never
	// overwrite a snapshot built from a newer one. It guards shared: the
	// work done so far for the latest Input, reused by groups built later
	// (nodes with a new label set or bucket, re-pushes), and batch.
	buildMu sync.Mutex
	shared  *buildCache
	// batch, while an Update builds every group, collects the snapshots
	// to set once all are built (see setBatch); nil otherwise.
	batch    []pendingSet
	interned map[string]*corev3.TypedExtensionConfig // see internExts

	mu     sync.Mutex
	input  *Input
	ready  bool
	groups map[string]*group
	// refusals holds, per label set, the modules (by plugin, by sha256) a
	// node of the set refused: every group of the set gets the plugin's
	// last good config instead while the module is in the Input.
	refusals map[string]map[string]map[string]bool
	// familyGood holds, per translation (label set and rollouts chosen),
	// the config of each plugin a node of it last ACKed: the fallback of a
	// group whose own nodes never ran the plugin.
	familyGood map[string]map[string]goodConfigs
}

// group is the snapshot bookkeeping of the nodes of one label set in one
// rollout bucket (see nodeGroupKey).
type group struct {
	labels    map[string]string
	labelsKey string
	bucket    int
	versions  typeVersions         // nil until the first snapshot is set
	setAt     map[string]time.Time // per type: when its current version was set
	problems  []Problem
	nodes     int // open streams of nodes in this group
	idleSince time.Time
	creator   string // the source address of an unauthenticated node that made it, "" otherwise

	// Module delivery (see delivery.go): the plugins of each ECDS version
	// sent, newest last, re-pushes, refused modules and last good configs.
	ecds      map[string]map[string]ecdsEntry
	ecdsOrder []string
	retries   map[string]int    // plugin → re-pushes of its current module
	retryOf   map[string]string // plugin → the module retries counts for
	repushed  map[string]time.Time
	lastGood  map[string]goodConfigs // plugin → the configs nodes of the group ACKed, newest first
	// held are plugins a node of the group already ran when it came to
	// this server (from another replica, or over a new stream), with the
	// module it ran, heldUnknown when that is not known here.
	held map[string]string
	// current is the group's extension configs as last built; filterless,
	// that build has none (its listeners name none).
	current    map[string]ecdsEntry
	filterless bool
	// pendingHeld are reports of nodes that came before the group's first
	// build; they are read against it (see resolvePendingHeldLocked).
	pendingHeld []heldReport
	family      string // the translation key of the last build
	// unconfirmed are first modules (plugin → sha256) nodes of the group
	// ACKed that no confirmation has shown to run yet; confirming, those
	// whose confirmation was sent (see confirm.go).
	unconfirmed map[string]string
	confirming  map[string]string
	// warmed are first modules (plugin → sha256) nodes of the group ACKed
	// after downloading them: their listeners warmed with the plugin, so
	// any other module is a swap (see swapping).
	warmed map[string]string
	// subscribed are the filter configs each open stream of the group
	// subscribes to (see subscribed.go).
	subscribed map[streamKey]map[string]bool
}

func newGroup(labels map[string]string, bucket int) *group {
	return &group{labels: labels, labelsKey: GroupKey(labels), bucket: bucket, ecds: map[string]map[string]ecdsEntry{}, retries: map[string]int{},
		retryOf: map[string]string{}, repushed: map[string]time.Time{},
		lastGood: map[string]goodConfigs{}, held: map[string]string{}, unconfirmed: map[string]string{},
		confirming: map[string]string{}, warmed: map[string]string{}, subscribed: map[streamKey]map[string]bool{}}
}

// NewServer returns a Server with no snapshots; it serves nothing until
// Update is called. It fails only if its metrics cannot be registered.
func NewServer(opts ServerOptions) (*Server, error) { return newServer(opts, nil) }

// newServer is NewServer with the delivery cache passed through wrap, when
// set, before the ADS server is built on it, so that in-package tests can
// watch and hold the calls made to the cache.
func newServer(opts ServerOptions, wrap func(snapshotStore) snapshotStore) (*Server, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	metrics, err := newServerMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	clk := opts.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	s := &Server{
		log:         logger.With("component", "xds"),
		clock:       clk,
		metrics:     metrics,
		idleTimeout: cmp.Or(opts.GroupIdleTimeout, DefaultGroupIdleTimeout),
		maxIdle:     cmp.Or(opts.MaxIdleGroups, 4096),
		maxSets:     cmp.Or(opts.MaxLabelSetsPerSource, DefaultMaxLabelSetsPerSource),
		groups:      map[string]*group{},
		refusals:    map[string]map[string]map[string]bool{},
		familyGood:  map[string]map[string]goodConfigs{},
		interned:    map[string]*corev3.TypedExtensionConfig{},
		tracker:     newTracker(clk),
		authorize:   opts.Authorize,
		onUnknown:   opts.OnUnknownVersion,
		onRefused:   opts.OnModuleRefused,
		redact:      opts.Redact,
		deliveries:  newDeliveries(),
		translate:   Translate,
	}
	s.repush = newRepusher(clk, s.repushPlugin)
	s.idle = newIdleExpiry(clk, s.expireIdle)
	metrics.watchPlugins(s.deliveries)
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.cache = newDeliveryCache()
	if wrap != nil {
		s.cache = wrap(s.cache)
	}
	// Ordered ADS sends a SotW update's types in dependency order (clusters
	// before the listeners and routes that use them) instead of whichever
	// watch fires first, so Envoy never sees a route to a cluster it lacks.
	s.xds = serverv3.NewServer(ctx, s.cache, callbacks{s}, sotw.WithOrderedADS(), withLogger(s.log))
	return s, nil
}

// Register adds the aggregated discovery service to a gRPC server, which
// must be built with GRPCServerOptions for Reauthorize to end streams.
func (s *Server) Register(reg grpc.ServiceRegistrar) {
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(reg, s.xds)
}

// Close ends every open ADS stream. ADS streams never finish on their own,
// so call Close before grpc.Server.GracefulStop or it waits for its timeout.
func (s *Server) Close() {
	s.cancel()
	s.repush.close()
	s.idle.close()
}

// GRPCServerOptions are the gRPC server settings an ADS server needs:
// GRPCTransportOptions and the stream interceptor that lets Reauthorize end
// streams.
func GRPCServerOptions() []grpc.ServerOption {
	return append(GRPCTransportOptions(),
		// Streams the server can end when a node's grant is withdrawn
		// (see Server.Reauthorize).
		grpc.ChainStreamInterceptor(revocableStreams))
}

// GRPCTransportOptions are the keepalive, stream and message size settings
// of GRPCServerOptions alone, for a plain go-control-plane server to be
// compared with this one on equal terms.
func GRPCTransportOptions() []grpc.ServerOption {
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
	}
}

// Streams returns the ADS streams open now and the most open at once since
// the last call with reset (which starts a new peak at the current count).
// A program can use it to decide when to return memory to the OS after a
// fleet left: the peak catches a fleet that came and went between calls.
func (s *Server) Streams(reset bool) (open, peak int) {
	open, peak, _ = s.tracker.counts(reset)
	return open, peak
}

// Status returns every connected node, sorted by id, with its plugins.
func (s *Server) Status() []NodeStatus {
	nodes := s.tracker.status()
	for i := range nodes {
		nodes[i].Plugins = s.deliveries.status(nodes[i].ID)
	}
	return nodes
}

// NodeIDs returns the ids of the connected nodes, in no particular order:
// far cheaper than Status for a count.
func (s *Server) NodeIDs() []string { return s.tracker.nodeIDs() }

// NodeDenials returns the latest nodes refused, newest last.
func (s *Server) NodeDenials() []NodeDenial { return s.tracker.denied() }

// Ready reports whether the first Input has been processed, i.e. every
// group with a connected node at that time has a snapshot and groups that
// connect later (or come back from idle) get one on their first request.
func (s *Server) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}

// withLogger routes go-control-plane's own logs into slog. Its Info
// messages are per-stream chatter, so they go to Debug.
func withLogger(l *slog.Logger) config.XDSOption {
	l = l.With("component", "xds-protocol")
	return func(o *config.Opts) {
		o.Logger = gcplog.LoggerFuncs{
			DebugFunc: func(f string, a ...any) { l.Debug(fmt.Sprintf(f, a...)) },
			InfoFunc:  func(f string, a ...any) { l.Debug(fmt.Sprintf(f, a...)) },
			WarnFunc:  func(f string, a ...any) { l.Info(fmt.Sprintf(f, a...)) },
			ErrorFunc: func(f string, a ...any) { l.Error(fmt.Sprintf(f, a...)) },
		}
	}
}
