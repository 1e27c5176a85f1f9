// Package telemetry keeps what Envoys report on their metrics streams
// (envoy.service.metrics.v3.MetricsService), only what runtime health and
// rollout analysis need, bounded per node whatever a node sends: per
// listener the requests and 5xx responses, the Wasm VMs created and
// active, each plugin's VM reloads and a few of the plugins' own metrics.
package telemetry

import (
	"cmp"
	"context"
	"errors"
	"sync"
	"time"

	promgo "github.com/prometheus/client_model/go"
	"k8s.io/utils/clock"

	"github.com/wasmxds/wasmxds/internal/xds"
)

// Defaults for zero Options fields.
const (
	DefaultMaxNodes     = 65536
	DefaultMaxListeners = 64
	DefaultMaxPlugins   = 64
	DefaultMaxCustom    = 32
	// DefaultForget is how long a node that stopped reporting is kept.
	DefaultForget = 2 * Window
	// maxName bounds the metric names kept (as map keys).
	maxName = 256
)

// Options bound a Store. The zero value is usable.
type Options struct {
	// MaxNodes bounds the nodes kept; past it, the node that reported
	// least recently is forgotten.
	MaxNodes int
	// MaxListeners, MaxPlugins and MaxCustom bound, per node, the
	// listeners, plugins (VM reloads) and wasmcustom metrics kept; further
	// names are ignored.
	MaxListeners, MaxPlugins, MaxCustom int
	// Forget drops a node that has not reported for this long.
	Forget time.Duration
	// Known, if set, admits reports only from the nodes it knows (those
	// with an ADS stream open), so that memory follows the fleet served.
	Known func(nodeID string) bool
	// Clock; nil is the real clock.
	Clock clock.WithTicker
}

// Store holds every reporting node's telemetry.
type Store struct {
	opts  Options
	clock clock.WithTicker

	mu    sync.Mutex
	nodes map[string]*node
}

// node is one Envoy's telemetry.
type node struct {
	lastReport time.Time
	listeners  map[string]*listenerSeries
	reloads    map[string]*series // per plugin
	created    series             // VMs created
	active     uint64             // VMs active at the last report
	custom     map[string]*custom // nil until the node reports one
}

type listenerSeries struct{ requests, errors5xx series }

// custom is a plugin's own metric: a counter's increases or a gauge.
type custom struct {
	counter bool
	s       series
	gauge   float64
}

// NewStore returns an empty Store.
func NewStore(opts Options) *Store {
	opts.MaxNodes = cmp.Or(opts.MaxNodes, DefaultMaxNodes)
	opts.MaxListeners = cmp.Or(opts.MaxListeners, DefaultMaxListeners)
	opts.MaxPlugins = cmp.Or(opts.MaxPlugins, DefaultMaxPlugins)
	opts.MaxCustom = cmp.Or(opts.MaxCustom, DefaultMaxCustom)
	opts.Forget = cmp.Or(opts.Forget, DefaultForget)
	clk := opts.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Store{opts: opts, clock: clk, nodes: map[string]*node{}}
}

// Report records decoded metric families of a node; it returns false
// when the node is not known (see Options.Known) and nothing was kept.
func (s *Store) Report(nodeID string, families []*promgo.MetricFamily) bool {
	if s.opts.Known != nil && !s.opts.Known(nodeID) {
		return false
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodeLocked(nodeID, now)
	for _, pf := range families {
		f := fromProto(pf)
		n.ingest(now, &f, &s.opts)
	}
	return true
}

// errUnknownNode: the node has no ADS stream here (Options.Known).
var errUnknownNode = errors.New("node not known")

// reportWire records a StreamMetricsMessage's families from its bytes.
// The families before a malformed one are kept.
func (s *Store) reportWire(nodeID string, msg []byte) error {
	if s.opts.Known != nil && !s.opts.Known(nodeID) {
		return errUnknownNode
	}
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodeLocked(nodeID, now)
	fs := families{r: fields{b: msg}}
	for fs.next() {
		n.ingest(now, &fs.f, &s.opts)
	}
	return fs.err()
}

// nodeLocked is the node's telemetry, made (room permitting) if new, as
// reported now.
func (s *Store) nodeLocked(nodeID string, now time.Time) *node {
	n := s.nodes[nodeID]
	if n == nil {
		s.makeRoomLocked(now)
		n = &node{listeners: map[string]*listenerSeries{}, reloads: map[string]*series{}}
		s.nodes[nodeID] = n
	}
	n.lastReport = now
	return n
}

// makeRoomLocked forgets stale nodes and, if the store is still full, the
// one that reported least recently.
func (s *Store) makeRoomLocked(now time.Time) {
	if len(s.nodes) < s.opts.MaxNodes {
		return
	}
	s.sweepLocked(now)
	if len(s.nodes) < s.opts.MaxNodes {
		return
	}
	var oldest string
	var at time.Time
	for id, n := range s.nodes {
		if oldest == "" || n.lastReport.Before(at) {
			oldest, at = id, n.lastReport
		}
	}
	delete(s.nodes, oldest)
}

// Sweep forgets the nodes that have not reported for Options.Forget and
// returns how many.
func (s *Store) Sweep() int {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sweepLocked(now)
}

func (s *Store) sweepLocked(now time.Time) int {
	n := 0
	for id, nd := range s.nodes {
		if now.Sub(nd.lastReport) > s.opts.Forget {
			delete(s.nodes, id)
			n++
		}
	}
	return n
}

// Run sweeps every Window until ctx ends.
func (s *Store) Run(ctx context.Context) {
	t := s.clock.NewTicker(Window)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			s.Sweep()
		}
	}
}

// Len is the number of nodes kept.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.nodes)
}

// Totals are a plugin's counts on a node since the node was first heard
// from: the analysis compares them between two moments.
type Totals struct {
	Requests, Errors5xx, VMReloads uint64
}

// Totals sums the counts of a plugin on a node over the listeners that
// carry it; false when the node has not reported.
func (s *Store) Totals(nodeID, plugin string, listeners []string) (Totals, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[nodeID]
	if n == nil {
		return Totals{}, false
	}
	var t Totals
	for _, l := range listeners {
		if ls := n.listeners[l]; ls != nil {
			t.Requests += ls.requests.total
			t.Errors5xx += ls.errors5xx.total
		}
	}
	if r := n.reloads[plugin]; r != nil {
		t.VMReloads = r.total
	}
	return t, true
}

// Plugin is how a plugin ran on a node over the last Window, over the
// listeners that carry it; false when the node has not reported.
func (s *Store) Plugin(nodeID, plugin string, listeners []string) (xds.PluginRuntime, bool) {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[nodeID]
	if n == nil {
		return xds.PluginRuntime{}, false
	}
	rt := xds.PluginRuntime{LastReport: n.lastReport}
	for _, l := range listeners {
		if ls := n.listeners[l]; ls != nil {
			rt.Requests += ls.requests.recent(now)
			rt.Errors5xx += ls.errors5xx.recent(now)
		}
	}
	if r := n.reloads[plugin]; r != nil {
		rt.VMReloads = r.recent(now)
	}
	return rt, true
}
