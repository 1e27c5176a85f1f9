package fetcher

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	pulls       *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	cacheHits   prometheus.Counter
	servedBytes prometheus.Counter
	requests    *prometheus.CounterVec
	gcRemoved   prometheus.Counter
	corrupt     *prometheus.CounterVec
}

// newMetrics builds the fetcher's metrics and registers them on reg when
// reg is non-nil. Label values are the bounded result/reason/code sets.
func newMetrics(reg prometheus.Registerer, c *cache) (*metrics, error) {
	m := &metrics{
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmxds_fetcher_pulls_total",
			Help: "Module pulls from their source, by result (success, failure) and reason.",
		}, []string{"result", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "wasmxds_fetcher_pull_duration_seconds",
			Help:    "Duration of module pulls, retries included, by result.",
			Buckets: prometheus.ExponentialBuckets(0.01, 3, 10),
		}, []string{"result"}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wasmxds_fetcher_cache_hits_total",
			Help: "Resolutions answered from the module cache without contacting the source.",
		}),
		servedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wasmxds_fetcher_served_bytes_total",
			Help: "Module bytes sent by the module server.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmxds_fetcher_module_requests_total",
			Help: "Module server requests by HTTP status code.",
		}, []string{"code"}),
		gcRemoved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wasmxds_fetcher_gc_removed_total",
			Help: "Modules deleted from the cache by garbage collection.",
		}),
		corrupt: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wasmxds_fetcher_cache_corrupt_total",
			Help: "Cached modules whose content no longer matched their sha256, quarantined, by check (startup, serve, resolve).",
		}, []string{"check"}),
	}
	if reg == nil {
		return m, nil
	}
	cacheBytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wasmxds_fetcher_cache_bytes",
		Help: "Total size of the modules in the cache.",
	}, func() float64 { return float64(c.totalBytes()) })
	degraded := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "wasmxds_fetcher_cache_degraded",
		Help: "1 while the cache directory cannot be written (new pulls fail; cached modules are served), else 0.",
	}, func() float64 {
		if c.degraded() != nil {
			return 1
		}
		return 0
	})
	var errs []error
	for _, col := range []prometheus.Collector{m.pulls, m.duration, m.cacheHits, m.servedBytes, m.requests, m.gcRemoved,
		m.corrupt, cacheBytes, degraded} {
		errs = append(errs, reg.Register(col))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	return m, nil
}

func (m *metrics) pullDone(err error, d time.Duration) {
	result := "success"
	if err != nil {
		result = "failure"
	}
	m.pulls.WithLabelValues(result, reasonOf(err)).Inc()
	if d > 0 {
		m.duration.WithLabelValues(result).Observe(d.Seconds())
	}
}
