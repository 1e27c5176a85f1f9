package catalog

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Reload results, the only values of the result label.
const (
	resultChanged   = "changed"
	resultUnchanged = "unchanged"
	resultFailed    = "failed"
)

type metrics struct {
	reloads       *prometheus.CounterVec
	specErrors    prometheus.Gauge
	parses        prometheus.Counter
	dirUnreadable prometheus.Gauge
}

// newMetrics creates the watcher's metrics and registers them on reg when
// reg is not nil. A registration that fails (a name already taken, by a
// second watcher or anything else) is an error.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmxds_catalog_reloads_total",
			Help: "Config directory rescans after file changes, by result (changed, unchanged, failed).",
		}, []string{"result"}),
		specErrors: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wasmxds_catalog_spec_errors",
			Help: "Spec errors in the current desired state.",
		}),
		parses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wasmxds_catalog_file_parses_total",
			Help: "Spec files parsed; a rescan parses only the files whose content changed.",
		}),
		dirUnreadable: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wasmxds_catalog_dir_unreadable",
			Help: "1 while the config directory is missing or unreadable (the last desired state stays in force), else 0.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.reloads, m.specErrors, m.parses, m.dirUnreadable} {
		errs = append(errs, reg.Register(c))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("register catalog metrics: %w", err)
	}
	return m, nil
}
