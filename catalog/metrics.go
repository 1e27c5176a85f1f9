package catalog

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Reload results, the only values of the result label.
const (
	resultChanged   = "changed"
	resultUnchanged = "unchanged"
	resultFailed    = "failed"
)

type metrics struct {
	reloads    *prometheus.CounterVec
	specErrors prometheus.Gauge
}

// newMetrics creates the watcher's metrics, registering them when reg is not
// nil. A second watcher on the same registry shares the first one's
// collectors rather than failing.
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmxds_catalog_reloads_total",
			Help: "Config directory rescans after file changes, by result (changed, unchanged, failed).",
		}, []string{"result"}),
		specErrors: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wasmxds_catalog_spec_errors",
			Help: "Spec errors in the current desired state.",
		}),
	}
	if reg != nil {
		m.reloads = register(reg, m.reloads)
		m.specErrors = register(reg, m.specErrors)
	}
	return m
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}
