package controlplane

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/wasmxds/wasmxds/internal/catalog"
	"github.com/wasmxds/wasmxds/internal/telemetry"
	"github.com/wasmxds/wasmxds/internal/xds"
)

// maxCarrierSets bounds the label sets whose plugin listeners are cached.
const maxCarrierSets = 4096

// carriers caches xds.PluginListeners per label set for one state.
type carriers struct {
	mu       sync.Mutex
	state    *catalog.State
	byLabels map[string]map[string][]string
}

func newCarriers() *carriers { return &carriers{byLabels: map[string]map[string][]string{}} }

// of returns, per plugin, the HTTP listeners that carry it on a node with
// these labels under st. The result is shared: do not modify it.
func (c *carriers) of(st *catalog.State, labels map[string]string) map[string][]string {
	key := xds.GroupKey(labels)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != st || len(c.byLabels) >= maxCarrierSets {
		c.state, c.byLabels = st, map[string]map[string][]string{}
	}
	m, ok := c.byLabels[key]
	if !ok {
		m = xds.PluginListeners(st, labels)
		c.byLabels[key] = m
	}
	return m
}

// fillRuntime adds to each node what its Envoy reported: its Wasm
// runtime, and each plugin's requests, 5xx and VM reloads over the last
// minute on the node's listeners that carry it.
func fillRuntime(nodes []xds.NodeStatus, store *telemetry.Store, cr *carriers, st *catalog.State) {
	if store.Len() == 0 {
		return
	}
	for i := range nodes {
		n := &nodes[i]
		nt, ok := store.Node(n.ID)
		if !ok {
			continue
		}
		n.Telemetry = &nt
		carried := cr.of(st, n.Labels)
		for j := range n.Plugins {
			ps := &n.Plugins[j]
			if rt, ok := store.Plugin(n.ID, ps.Name, carried[ps.Name]); ok {
				ps.Runtime = &rt
			}
		}
	}
}

// runtimeCollector exports runtime health fleet-wide, per plugin and
// module (its sha256's first 12 hex digits, and whether it is the rollout
// module): never per node, so the series stay as few as the modules in use.
type runtimeCollector struct {
	cp                                 *ControlPlane
	requests, errors, reloads, reports *prometheus.Desc
}

func newRuntimeCollector(cp *ControlPlane) *runtimeCollector {
	labels := []string{"plugin", "module", "track"}
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, labels, nil) }
	return &runtimeCollector{cp: cp,
		requests: d("wasmxds_plugin_requests", "Requests over the last minute on the listeners carrying the plugin, "+
			"summed over the nodes running the module that report metrics."),
		errors: d("wasmxds_plugin_errors5xx", "5xx responses over the last minute on the listeners carrying the plugin, "+
			"summed over the nodes running the module."),
		reloads: d("wasmxds_plugin_vm_reloads", "VM reloads of the plugin over the last minute, summed over the nodes running the module."),
		reports: d("wasmxds_plugin_reporting_nodes", "Nodes running the module whose Envoy reported metrics in the last minute."),
	}
}

func (rc *runtimeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{rc.requests, rc.errors, rc.reloads, rc.reports} {
		ch <- d
	}
}

type moduleTrack struct{ plugin, module, track string }

func (rc *runtimeCollector) Collect(ch chan<- prometheus.Metric) {
	cp := rc.cp
	if cp.tel.Len() == 0 {
		return
	}
	nodes := cp.server.Status()
	fillRuntime(nodes, cp.tel, cp.carriers, cp.ctrl.currentState())
	rollouts := cp.ctrl.rollouts.pushedSHAs()
	sums := map[moduleTrack]*xds.PluginRuntime{}
	counts := map[moduleTrack]int{}
	for _, n := range nodes {
		for _, ps := range n.Plugins {
			if ps.Runtime == nil || ps.SHA256 == "" {
				continue
			}
			k := moduleTrack{plugin: ps.Name, module: ps.SHA256[:min(12, len(ps.SHA256))], track: "main"}
			if rollouts[ps.Name] == ps.SHA256 {
				k.track = "rollout"
			}
			s := sums[k]
			if s == nil {
				s = &xds.PluginRuntime{}
				sums[k] = s
			}
			s.Requests, s.Errors5xx, s.VMReloads = s.Requests+ps.Runtime.Requests, s.Errors5xx+ps.Runtime.Errors5xx,
				s.VMReloads+ps.Runtime.VMReloads
			counts[k]++
		}
	}
	for k, s := range sums {
		for d, v := range map[*prometheus.Desc]float64{rc.requests: float64(s.Requests), rc.errors: float64(s.Errors5xx),
			rc.reloads: float64(s.VMReloads), rc.reports: float64(counts[k])} {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, k.plugin, k.module, k.track)
		}
	}
}

// buildTelemetry makes the telemetry store, the metrics service Envoys
// report to (authorized like ADS), the analyzer and the fleet-wide runtime
// metrics. Nothing runs until Run.
func (cp *ControlPlane) buildTelemetry() (*telemetry.Service, error) {
	clk := cp.opts.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	cp.tel = telemetry.NewStore(telemetry.Options{MaxNodes: cp.opts.TelemetryMaxNodes, Known: cp.server.Connected, Clock: clk})
	cp.carriers = newCarriers()
	cp.analyzer = newAnalyzer(cp.ctrl.rollouts, cp.tel, cp.server.Status, cp.carriers, clk, cp.log)
	svc, err := telemetry.NewService(telemetry.ServiceOptions{Store: cp.tel, Authorize: cp.authorize, AttachedAs: cp.server.AttachedAs,
		Logger: cp.log, Registry: cp.reg})
	if err != nil {
		return nil, err
	}
	if err := cp.reg.Register(newRuntimeCollector(cp)); err != nil {
		return nil, fmt.Errorf("register runtime metrics: %w", err)
	}
	return svc, nil
}
