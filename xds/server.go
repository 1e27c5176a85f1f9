package xds

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	gcplog "github.com/envoyproxy/go-control-plane/pkg/log"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/config"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"k8s.io/utils/clock"
)

// errInconsistent marks a snapshot whose resources reference each other
// wrongly (e.g. a listener naming a route configuration that is missing).
var errInconsistent = errors.New("inconsistent snapshot")

// ServerOptions configures a Server. The zero value is usable.
type ServerOptions struct {
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the server's metrics; nil registers none.
	Registerer prometheus.Registerer
	// GroupIdleTimeout is how long a label set with no connected node keeps
	// its snapshot before it is dropped; zero means 10 minutes.
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
	// OnPluginFailed, if set, hears of a node that refused a plugin's
	// module (status failed: it downloaded the module and did not start
	// its VM, or never managed to load it). It runs on the stream's
	// goroutine and must not block.
	OnPluginFailed func(nodeID, plugin, sha256, reason string)
	// Redact, if set, removes secrets from Envoy's NACK messages before
	// they are kept, logged or reported: Envoy may quote the rejected
	// config, which can carry pluginConfig values filled from secrets.
	Redact func(string) string
}

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
	onFailed    func(nodeID, plugin, sha256, reason string)
	redact      func(string) string
	deliveries  *deliveries
	downloads   downloads
	repush      *repusher
	idle        *idleExpiry
	// translate is Translate; in-package tests replace it to feed the
	// server resources that real specs cannot produce.
	translate func(in Input, labels map[string]string) (*Resources, []Problem)

	// authMu makes Reauthorize exclusive with the admission of new nodes
	// (read-locked from Authorize until the node is attached).
	authMu sync.RWMutex

	// buildMu serializes snapshot builds so that an older Input can never
	// overwrite a snapshot built from a newer one. It guards shared: the
	// work done so far for the latest Input, reused by groups built later
	// (nodes with a new label set or bucket, re-pushes).
	buildMu  sync.Mutex
	shared   *buildCache
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
	// current is the group's extension configs as last built.
	current map[string]ecdsEntry
	// pendingHeld are reports of nodes that came before the group's first
	// build; they are read against it (see resolvePendingHeldLocked).
	pendingHeld []heldReport
	family      string // the translation key of the last build
	// unconfirmed are first modules (plugin → sha256) nodes of the group
	// ACKed that no confirmation has shown to run yet; confirming, those
	// whose confirmation was sent (see confirm.go).
	unconfirmed map[string]string
	confirming  map[string]string
}

func newGroup(labels map[string]string, bucket int) *group {
	return &group{labels: labels, labelsKey: GroupKey(labels), bucket: bucket, ecds: map[string]map[string]ecdsEntry{}, retries: map[string]int{},
		retryOf: map[string]string{}, repushed: map[string]time.Time{},
		lastGood: map[string]goodConfigs{}, held: map[string]string{}, unconfirmed: map[string]string{},
		confirming: map[string]string{}}
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
		idleTimeout: cmp.Or(opts.GroupIdleTimeout, 10*time.Minute),
		maxIdle:     cmp.Or(opts.MaxIdleGroups, 4096),
		maxSets:     cmp.Or(opts.MaxLabelSetsPerSource, DefaultMaxLabelSetsPerSource),
		groups:      map[string]*group{},
		refusals:    map[string]map[string]map[string]bool{},
		familyGood:  map[string]map[string]goodConfigs{},
		interned:    map[string]*corev3.TypedExtensionConfig{},
		tracker:     newTracker(clk),
		authorize:   opts.Authorize,
		onUnknown:   opts.OnUnknownVersion,
		onFailed:    opts.OnPluginFailed,
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

// Refusals returns the latest nodes refused, newest last.
func (s *Server) Refusals() []Refusal { return s.tracker.refused() }

// Ready reports whether the first Input has been processed, i.e. every
// group with a connected node at that time has a snapshot and groups that
// connect later (or come back from idle) get one on their first request.
func (s *Server) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}

// Update rebuilds the snapshot of every group with a connected node from
// in; idle groups give theirs back and are built on their next node. A
// group whose resources hash the same as before is left alone, so Envoys
// are sent nothing.
func (s *Server) Update(in Input) {
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	s.mu.Lock()
	s.input = &in
	s.dropIdleGroupsLocked(s.clock.Now())
	s.liftRefusalsLocked(in)
	s.pruneHeldLocked(in)
	s.releaseIdleLocked()
	keys := s.activeGroupsLocked()
	s.mu.Unlock()
	s.shared = newBuildCache()
	for _, key := range keys {
		s.rebuild(key, in, s.shared)
	}
	s.mu.Lock()
	s.ready = true
	s.forgetFamiliesLocked()
	s.pruneInternedLocked()
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
	if pending {
		// Before a group is added, those gone idle give back theirs: the
		// snapshots kept stay one per group in use, however many label
		// sets come and go between Updates.
		s.releaseIdleLocked()
	}
	s.mu.Unlock()
	if pending {
		s.rebuild(key, *in, s.shared)
	}
}

// buildCache holds the work of one Input done so far, shared by groups:
// the groups of a label set that see the same rollout modules share one
// translation, and those whose refusals come out the same share one
// snapshot (its hashing and, for delta, its version map).
type buildCache struct {
	translations map[string]*translation
	built        map[string]*built
}

func newBuildCache() *buildCache {
	return &buildCache{translations: map[string]*translation{}, built: map[string]*built{}}
}

// retain forgets the work done for label sets not in labelsKeys.
func (c *buildCache) retain(labelsKeys map[string]bool) {
	for k := range c.translations {
		if !labelsKeys[labelsOfBuildKey(k)] {
			delete(c.translations, k)
		}
	}
	for k := range c.built {
		if !labelsKeys[labelsOfBuildKey(k)] {
			delete(c.built, k)
		}
	}
}

// labelsOfBuildKey is the label set of a translation or built key (the
// label set, then NUL-separated variants).
func labelsOfBuildKey(k string) string {
	labels, _, _ := strings.Cut(k, "\x00")
	return labels
}

// translation is one Translate's result and the plugin module of each of
// its extension configs.
type translation struct {
	res      *Resources
	problems []Problem
	entries  []ecdsEntry // per res.Extensions; sha "" when not a plugin's module
	names    []string    // per res.Extensions: the plugin, "" when none
}

// built is a translation with one refusal plan applied, as a snapshot.
type built struct {
	exts     []*corev3.TypedExtensionConfig
	ecds     map[string]ecdsEntry
	snap     *servedSnapshot
	versions typeVersions
	err      error
}

// rebuild translates in for one group and sets its snapshot if anything
// changed. An invalid snapshot is logged and counted and the previous one
// keeps serving. shared, if not nil, holds the work done for the same
// Input so far. The caller holds buildMu.
func (s *Server) rebuild(key string, in Input, shared *buildCache) {
	orig := in
	start := s.clock.Now()
	s.mu.Lock()
	g := s.groups[key]
	s.mu.Unlock()
	if g == nil {
		return
	}
	if shared == nil {
		shared = newBuildCache()
	}
	s.mu.Lock()
	// A group's nodes take a rollout module only as a swap from a module
	// they run (ECDS): Envoy confirms a swap before applying it, so a VM
	// that fails halts the rollout instead of failing traffic.
	ran := func(plugin string) bool {
		_, held := g.held[plugin]
		return len(g.lastGood[plugin]) > 0 || held || in.Delivery != DeliveryECDS
	}
	in, variant := in.forBucket(g.bucket, ran)
	tk := g.labelsKey + "\x00" + variant
	g.family = tk
	groups := len(s.groups)
	s.mu.Unlock()
	if len(shared.built) > maxBuilt(groups) {
		shared.built = map[string]*built{} // re-pushes piled up: keep memory bounded
	}
	tr := shared.translations[tk]
	if tr == nil {
		tr = s.translateShared(in, g.labels)
		shared.translations[tk] = tr
	}
	s.mu.Lock()
	plan, planKey := s.planRefusalsLocked(g, tr)
	s.mu.Unlock()
	bk := tk + "\x00" + planKey
	b := shared.built[bk]
	if b == nil {
		res := *tr.res
		res.Extensions = s.internExts(applyPlan(tr.res.Extensions, plan))
		b = &built{exts: res.Extensions, ecds: ecdsEntries(res.Extensions)}
		b.snap, b.versions, b.err = buildSnapshot(&res)
		shared.built[bk] = b
	}
	problems, snap, versions, err := tr.problems, b.snap, b.versions, b.err
	s.mu.Lock()
	if err == nil && s.resolvePendingHeldLocked(g, orig, versions[resource.ExtensionConfigType], b.ecds) {
		// A node that came first runs a module this build would send it
		// as a first module: build again, sending it as a swap.
		s.mu.Unlock()
		s.rebuild(key, orig, shared)
		return
	}
	g.problems = problems
	if err == nil {
		g.current = b.ecds
	}
	old, oldSetAt := g.versions, g.setAt
	changed := err == nil && !maps.Equal(old, versions)
	if changed {
		// Recorded before SetSnapshot, which may answer watches at once, so
		// that a quick ACK already finds the version for convergence.
		g.versions, g.setAt = versions, setTimes(old, oldSetAt, versions, start)
		g.recordECDS(versions[resource.ExtensionConfigType], b.ecds)
	}
	s.mu.Unlock()
	defer func() { s.metrics.buildDuration.Observe(s.clock.Since(start).Seconds()) }()
	if err != nil {
		s.snapshotFailed(key, reasonFor(err), err)
		return
	}
	if !changed {
		return
	}
	s.cache.set(key, snap)
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

// maxBuilt bounds the snapshots kept for reuse between Updates.
func maxBuilt(groups int) int { return 2*groups + 64 }

// liftRefusalsLocked forgets refused modules that are no longer any
// plugin's module or rollout module in in: a module that comes back later
// is tried again.
func (s *Server) liftRefusalsLocked(in Input) {
	for labels, byPlugin := range s.refusals {
		for plugin, shas := range byPlugin {
			for sha := range shas {
				if !inputCarries(in, plugin, sha) {
					delete(shas, sha)
				}
			}
			if len(shas) == 0 {
				delete(byPlugin, plugin)
			}
		}
		if len(byPlugin) == 0 {
			delete(s.refusals, labels)
		}
	}
}

func inputCarries(in Input, plugin, sha string) bool {
	if m := in.Modules[plugin].Module; m != nil && m.SHA256 == sha {
		return true
	}
	r, ok := in.Rollouts[plugin]
	return ok && r.Module != nil && r.Module.SHA256 == sha
}

// refusedLocked reports whether a node of the label set refused plugin's
// module sha.
func (s *Server) refusedLocked(labelsKey, plugin, sha string) bool {
	return s.refusals[labelsKey][plugin][sha]
}

// refusalsOfLocked is a copy of the label set's refused modules.
func (s *Server) refusalsOfLocked(labelsKey string) map[string]map[string]bool {
	out := make(map[string]map[string]bool, len(s.refusals[labelsKey]))
	for plugin, shas := range s.refusals[labelsKey] {
		out[plugin] = maps.Clone(shas)
	}
	return out
}

// forgetFamiliesLocked drops the last good configs of translations no
// group uses any more.
func (s *Server) forgetFamiliesLocked() {
	used := make(map[string]bool, len(s.groups))
	for _, g := range s.groups {
		used[g.family] = true
	}
	for f := range s.familyGood {
		if !used[f] {
			delete(s.familyGood, f)
		}
	}
}

// translateShared translates in for labels and notes the plugin module of
// each extension config.
func (s *Server) translateShared(in Input, labels map[string]string) *translation {
	res, problems := s.translate(in, labels)
	if res == nil {
		res = &Resources{}
	}
	tr := &translation{res: res, problems: problems, entries: make([]ecdsEntry, len(res.Extensions)),
		names: make([]string, len(res.Extensions))}
	for i, e := range res.Extensions {
		if name, ok := EcdsPluginName(e.Name); ok {
			tr.names[i], tr.entries[i] = name, ecdsEntries([]*corev3.TypedExtensionConfig{e})[name]
		}
	}
	return tr
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

// releaseIdleLocked gives back the snapshot of every group no node uses:
// an idle group keeps only its bookkeeping (what its nodes ran and
// refused), and is built again, to the same versions, when a node returns
// (see ensureGroup). Work shared by label sets no group uses any more goes
// too. The caller holds buildMu and mu.
func (s *Server) releaseIdleLocked() {
	inUse := map[string]bool{}
	for key, g := range s.groups {
		if g.nodes > 0 {
			inUse[g.labelsKey] = true
			continue
		}
		if g.versions != nil {
			s.cache.clear(key)
			g.versions, g.setAt, g.current = nil, nil, nil
		}
	}
	if s.shared != nil {
		s.shared.retain(inUse)
	}
}

// activeGroupsLocked returns the keys of the groups with a connected node,
// sorted.
func (s *Server) activeGroupsLocked() []string {
	var keys []string
	for key, g := range s.groups {
		if g.nodes > 0 {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	return keys
}

// dropIdleGroupsLocked forgets label sets no node has used for a while, and
// the longest idle beyond MaxIdleGroups, so the cache does not grow with
// every label set ever seen.
func (s *Server) dropIdleGroupsLocked(now time.Time) {
	var idle []string
	for key, g := range s.groups {
		if g.nodes > 0 {
			continue
		}
		if now.Sub(g.idleSince) > s.idleTimeout {
			s.dropGroupLocked(key, "idle timeout")
			continue
		}
		idle = append(idle, key)
	}
	if excess := len(idle) - s.maxIdle; excess > 0 {
		slices.SortFunc(idle, func(a, b string) int {
			return s.groups[a].idleSince.Compare(s.groups[b].idleSince)
		})
		for _, key := range idle[:excess] {
			s.dropGroupLocked(key, "too many idle groups")
		}
	}
	s.metrics.nodeGroups.Set(float64(len(s.groups)))
}

func (s *Server) dropGroupLocked(key, why string) {
	s.cache.clear(key)
	delete(s.groups, key)
	s.metrics.groupsDropped.Inc()
	s.log.Info("dropped idle node group", "group", key, "reason", why)
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
