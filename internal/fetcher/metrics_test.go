package fetcher

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// metricValue sums the counter or gauge samples of a family whose labels
// include the given name/value pairs.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

func TestMetricsCountPullsAndCacheHits(t *testing.T) {
	tr := newTestRegistry(t)
	module := validModule(t)
	tr.pushWasm(t, "filters/metered:v1", module)
	reg := prometheus.NewRegistry()
	f := newTestFetcher(t, "", func(o *Options) { o.Registerer = reg })

	mustResolve(t, f, Request{URL: tr.ref("filters/metered:v1")}, module)
	mustResolve(t, f, Request{URL: tr.ref("filters/metered:v1")}, module)
	_, _ = f.Resolve(context.Background(), Request{URL: tr.ref("filters/absent:v1")})

	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"wasmxds_fetcher_pulls_total", []string{"result", "success", "reason", "ok"}, 1},
		{"wasmxds_fetcher_pulls_total", []string{"result", "failure", "reason", "not_found"}, 1},
		{"wasmxds_fetcher_cache_hits_total", nil, 1},
		{"wasmxds_fetcher_cache_bytes", nil, float64(len(module))},
	} {
		if got := metricValue(t, reg, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if _, err := New(Options{CacheDir: t.TempDir(), Registerer: reg}); err == nil {
		t.Error("a second Fetcher registered the same metrics without error")
	}
}
