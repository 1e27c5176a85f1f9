package xds

import (
	"fmt"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
)

// Snapshot error reasons, the only values of the reason label.
const (
	reasonInconsistent = "inconsistent"
	reasonInvalid      = "invalid"
)

// serverMetrics are the ADS server's Prometheus metrics. Labels are limited to
// resource kinds and fixed reasons so that the series count never grows with
// the number of Envoys.
type serverMetrics struct {
	connectedNodes prometheus.Gauge
	nodeGroups     prometheus.Gauge
	groupsDropped  prometheus.Counter
	refused        prometheus.Counter
	pushes         *prometheus.CounterVec
	nacks          *prometheus.CounterVec
	snapshotErrors *prometheus.CounterVec
	buildDuration  prometheus.Histogram
	convergence    *prometheus.HistogramVec
	cacheMisses    prometheus.Counter
	repushes       prometheus.Counter
	confirmations  prometheus.Counter
	reg            prometheus.Registerer
}

func newServerMetrics(reg prometheus.Registerer) (*serverMetrics, error) {
	m := &serverMetrics{
		connectedNodes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wasmxds_xds_connected_nodes",
			Help: "Envoy nodes with at least one open ADS stream.",
		}),
		nodeGroups: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wasmxds_xds_node_groups",
			Help: "Node groups (label set and rollout bucket), each served one snapshot.",
		}),
		groupsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wasmxds_xds_node_groups_dropped_total",
			Help: "Node groups whose snapshot was dropped because no node used them (idle timeout or too many idle).",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wasmxds_xds_nodes_refused_total",
			Help: "Nodes refused, on connection or when their grant was withdrawn while connected: their identity may not claim their node id or labels (NodeAccess).",
		}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmxds_xds_pushes_total",
			Help: "Discovery responses sent to Envoys, by resource type.",
		}, []string{"type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmxds_xds_nacks_total",
			Help: "Discovery responses Envoys rejected, by resource type.",
		}, []string{"type"}),
		snapshotErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmxds_xds_snapshot_errors_total",
			Help: "Snapshots not set (the previous one kept serving), by reason.",
		}, []string{"reason"}),
		buildDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "wasmxds_xds_snapshot_build_seconds",
			Help:    "Time to translate and set one node group's snapshot.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		convergence: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wasmxds_xds_convergence_seconds",
			Help:    "Time from a snapshot version being set (or the node connecting, if later) to a node ACKing it.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"type"}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wasmxds_xds_module_cache_misses_total",
			Help: "Expected NACKs: an Envoy refused a Wasm config until it has fetched the module (not counted in nacks_total).",
		}),
		repushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wasmxds_xds_module_repushes_total",
			Help: "Wasm configs sent again after an Envoy fetched their module or refused it.",
		}),
		confirmations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wasmxds_xds_module_confirmations_total",
			Help: "First modules sent again as a swap after an Envoy that downloaded them ACKed them, so that it confirms their VM runs.",
		}),
		reg: reg,
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.connectedNodes, m.nodeGroups, m.groupsDropped, m.refused, m.pushes,
		m.nacks, m.snapshotErrors, m.buildDuration, m.convergence, m.cacheMisses, m.repushes, m.confirmations} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("xds metrics: %w", err)
		}
	}
	return m, nil
}

// watchPlugins exports, per delivery state, how many (node, plugin) pairs
// are in it: wasmxds_xds_node_plugins{state="running|pending|failed"}.
func (m *serverMetrics) watchPlugins(d *deliveries) {
	if m.reg == nil {
		return
	}
	for _, state := range []string{PluginRunning, PluginPending, PluginFailed} {
		// Registration fails only for a second server on one registry,
		// whose first server's gauges already report.
		_ = m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "wasmxds_xds_node_plugins",
			Help:        "Plugins on connected nodes, by delivery state (running: the node runs the module; pending: it is fetching it; failed: it refused it).",
			ConstLabels: prometheus.Labels{"state": state},
		}, func() float64 { return float64(d.count(state)) }))
	}
}

// typeLabel maps a type URL to a short, bounded label value; anything an
// Envoy might send that we do not serve collapses into "other".
func typeLabel(typeURL string) string {
	switch typeURL {
	case resource.ListenerType:
		return "listener"
	case resource.RouteType:
		return "route"
	case resource.ClusterType:
		return "cluster"
	case resource.ExtensionConfigType:
		return "extension_config"
	case resource.EndpointType:
		return "endpoint"
	case resource.SecretType:
		return "secret"
	default:
		return "other"
	}
}
