package telemetry

import (
	"maps"
	"slices"
	"strings"
	"time"

	promgo "github.com/prometheus/client_model/go"

	"github.com/wasmxds/wasmxds/xds"
)

// The Envoy 1.40 stats read (full names: the bootstrap sets
// emit_tags_as_labels false). HTTP listeners' stat prefix is the
// Listener spec's name.
const (
	httpPrefix       = "http."
	requestsSuffix   = ".downstream_rq_total"
	errors5xxSuffix  = ".downstream_rq_5xx"
	wasmPrefix       = "wasm."
	customPrefix     = "wasmcustom."
	vmsCreated       = "wasm.envoy.wasm.runtime.v8.created"
	vmsActive        = "wasm.envoy.wasm.runtime.v8.active"
	reloadSuccessSfx = ".vm_reload_success"
	reloadFailureSfx = ".vm_reload_failure"
)

// ingest records one metric family, ignoring what is not kept and names
// past the node's bounds.
func (n *node) ingest(now time.Time, f *promgo.MetricFamily, o *Options) {
	name := f.GetName()
	if len(name) > maxName {
		return
	}
	switch {
	case strings.HasPrefix(name, httpPrefix):
		n.listenerCount(now, name, f, o.MaxListeners)
	case strings.HasPrefix(name, customPrefix):
		n.customMetric(now, name, f, o.MaxCustom)
	case name == vmsCreated:
		n.created.add(now, counterSum(f))
	case name == vmsActive:
		n.active = uint64(max(0, min(gaugeValue(f), maxDelta)))
	case strings.HasPrefix(name, wasmPrefix):
		n.reload(now, name, f, o.MaxPlugins)
	}
}

func (n *node) listenerCount(now time.Time, name string, f *promgo.MetricFamily, limit int) {
	rest := name[len(httpPrefix):]
	listener, isRequests := strings.CutSuffix(rest, requestsSuffix)
	if !isRequests {
		var is5xx bool
		if listener, is5xx = strings.CutSuffix(rest, errors5xxSuffix); !is5xx {
			return
		}
	}
	ls := n.listeners[listener]
	if ls == nil {
		if len(n.listeners) >= limit || listener == "" {
			return
		}
		ls = &listenerSeries{}
		n.listeners[strings.Clone(listener)] = ls
	}
	if isRequests {
		ls.requests.add(now, counterSum(f))
	} else {
		ls.errors5xx.add(now, counterSum(f))
	}
}

// reload counts wasm.<plugin>.vm_reload_success and vm_reload_failure: a
// FAIL_RELOAD plugin's VM was replaced after it failed at run time.
func (n *node) reload(now time.Time, name string, f *promgo.MetricFamily, limit int) {
	rest := name[len(wasmPrefix):]
	plugin, ok := strings.CutSuffix(rest, reloadSuccessSfx)
	if !ok {
		if plugin, ok = strings.CutSuffix(rest, reloadFailureSfx); !ok {
			return
		}
	}
	s := n.reloads[plugin]
	if s == nil {
		if len(n.reloads) >= limit || plugin == "" {
			return
		}
		s = &series{}
		n.reloads[strings.Clone(plugin)] = s
	}
	s.add(now, counterSum(f))
}

func (n *node) customMetric(now time.Time, name string, f *promgo.MetricFamily, limit int) {
	isCounter := f.GetType() == promgo.MetricType_COUNTER
	if !isCounter && f.GetType() != promgo.MetricType_GAUGE {
		return
	}
	c := n.custom[name]
	if c == nil || c.counter != isCounter {
		if c == nil && len(n.custom) >= limit {
			return
		}
		c = &custom{counter: isCounter}
		n.custom[strings.Clone(name)] = c
	}
	if isCounter {
		c.s.add(now, counterSum(f))
	} else {
		c.gauge = gaugeValue(f)
	}
}

// counterSum is the increase a counter family reports (one metric without
// tags as labels; every series summed otherwise).
func counterSum(f *promgo.MetricFamily) uint64 {
	var sum uint64
	for _, m := range f.GetMetric() {
		sum += counterDelta(m.GetCounter().GetValue())
	}
	return min(sum, maxDelta)
}

// gaugeValue is a gauge family's value (its last metric's).
func gaugeValue(f *promgo.MetricFamily) float64 {
	ms := f.GetMetric()
	if len(ms) == 0 {
		return 0
	}
	v := ms[len(ms)-1].GetGauge().GetValue()
	if v != v { // NaN
		return 0
	}
	return v
}

// Node is what a node reported about its Wasm runtime; false when it has
// not reported.
func (s *Store) Node(nodeID string) (xds.NodeTelemetry, bool) {
	now := s.clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[nodeID]
	if n == nil {
		return xds.NodeTelemetry{}, false
	}
	out := xds.NodeTelemetry{LastReport: n.lastReport, VMsCreated: n.created.recent(now), VMsActive: n.active}
	for _, name := range slices.Sorted(maps.Keys(n.custom)) {
		c := n.custom[name]
		m := xds.CustomMetric{Name: name, Type: "gauge", Value: c.gauge}
		if c.counter {
			m.Type, m.Value = "counter", float64(c.s.recent(now))
		}
		out.CustomMetrics = append(out.CustomMetrics, m)
	}
	return out, true
}
