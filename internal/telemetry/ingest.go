package telemetry

import (
	"bytes"
	"maps"
	"slices"
	"time"

	promgo "github.com/prometheus/client_model/go"

	"github.com/wasmxds/wasmxds/internal/xds"
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
func (n *node) ingest(now time.Time, f *family, o *Options) {
	name := f.name
	if len(name) > maxName {
		return
	}
	switch {
	case bytes.HasPrefix(name, []byte(httpPrefix)):
		n.listenerCount(now, f, o.MaxListeners)
	case bytes.HasPrefix(name, []byte(customPrefix)):
		n.customMetric(now, f, o.MaxCustom)
	case string(name) == vmsCreated:
		n.created.add(now, f.counterDelta())
	case string(name) == vmsActive:
		n.active = uint64(max(0, min(f.gaugeValue(), maxDelta)))
	case bytes.HasPrefix(name, []byte(wasmPrefix)):
		n.reload(now, f, o.MaxPlugins)
	}
}

func (n *node) listenerCount(now time.Time, f *family, limit int) {
	rest := f.name[len(httpPrefix):]
	listener, isRequests := bytes.CutSuffix(rest, []byte(requestsSuffix))
	if !isRequests {
		var is5xx bool
		if listener, is5xx = bytes.CutSuffix(rest, []byte(errors5xxSuffix)); !is5xx {
			return
		}
	}
	ls := n.listeners[string(listener)]
	if ls == nil {
		if len(n.listeners) >= limit || len(listener) == 0 {
			return
		}
		ls = &listenerSeries{}
		n.listeners[string(listener)] = ls
	}
	if isRequests {
		ls.requests.add(now, f.counterDelta())
	} else {
		ls.errors5xx.add(now, f.counterDelta())
	}
}

// reload counts wasm.<plugin>.vm_reload_success and vm_reload_failure: a
// FAIL_RELOAD plugin's VM was replaced after it failed at run time.
func (n *node) reload(now time.Time, f *family, limit int) {
	rest := f.name[len(wasmPrefix):]
	plugin, ok := bytes.CutSuffix(rest, []byte(reloadSuccessSfx))
	if !ok {
		if plugin, ok = bytes.CutSuffix(rest, []byte(reloadFailureSfx)); !ok {
			return
		}
	}
	s := n.reloads[string(plugin)]
	if s == nil {
		if len(n.reloads) >= limit || len(plugin) == 0 {
			return
		}
		s = &series{}
		n.reloads[string(plugin)] = s
	}
	s.add(now, f.counterDelta())
}

func (n *node) customMetric(now time.Time, f *family, limit int) {
	isCounter := f.typ == int32(promgo.MetricType_COUNTER)
	if !isCounter && f.typ != int32(promgo.MetricType_GAUGE) {
		return
	}
	c := n.custom[string(f.name)]
	if c == nil || c.counter != isCounter {
		if c == nil && len(n.custom) >= limit {
			return
		}
		c = &custom{counter: isCounter}
		if n.custom == nil {
			n.custom = map[string]*custom{}
		}
		n.custom[string(f.name)] = c
	}
	if isCounter {
		c.s.add(now, f.counterDelta())
	} else {
		c.gauge = f.gaugeValue()
	}
}

// counterDelta is the increase a counter family reports (one metric
// without tags as labels; every series summed otherwise).
func (f *family) counterDelta() uint64 {
	if f.values() != nil {
		return 0
	}
	return counterDelta(f.counter)
}

// gaugeValue is a gauge family's value (its last metric's).
func (f *family) gaugeValue() float64 {
	if f.values() != nil || f.gauge != f.gauge { // NaN
		return 0
	}
	return f.gauge
}

// fromProto reads a decoded family (tests and in-process reporters).
func fromProto(pf *promgo.MetricFamily) family {
	f := family{name: []byte(pf.GetName()), typ: int32(pf.GetType()), valuesRead: true}
	for _, m := range pf.GetMetric() {
		f.counter += m.GetCounter().GetValue()
		if m.Gauge != nil {
			f.gauge = m.GetGauge().GetValue()
		}
	}
	return f
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
