package filters_test

import (
	"net/http"
	"testing"
	"time"
)

// BenchmarkRequestThroughEnvoy measures one request's round trip through
// Envoy without Wasm, with one Go filter, and with three in a row.
func BenchmarkRequestThroughEnvoy(b *testing.B) {
	up := echoUpstream(b)
	e := startEnvoy(b, bootstrap(b, up.Listener.Addr().String(),
		listener("plain"),
		listener("one", wasmFilter("add-header", "one", "add-header", addHeaderConfig)),
		listener("three",
			wasmFilter("add-header", "three", "add-header", addHeaderConfig),
			wasmFilter("config-echo", "config-echo", "config-echo", echoConfig),
			wasmFilter("rate-limit", "rate-limit", "rate-limit", `{"requestsPerWindow": 1000000000}`)),
	))
	for _, name := range []string{"plain", "one", "three"} {
		b.Run(name, func(b *testing.B) {
			url := e.listeners[name] + "/"
			for b.Loop() {
				if r := do(b, url, nil); r.status != http.StatusOK {
					b.Fatalf("status %d", r.status)
				}
			}
		})
	}
}

// BenchmarkModuleLoad measures how long Envoy takes to become ready with
// one Go filter, against the same Envoy without it, and how long the first
// request through the filter then takes. Envoy's V8 compiles a whole module
// with its optimizing compiler before the plugin starts, so s/ready is the
// delay a new module adds to a configuration update; ms/first-request is
// what the first client after it waits (the VM's first stream context, the
// Go runtime's first allocations in the filter).
func BenchmarkModuleLoad(b *testing.B) {
	up := echoUpstream(b)
	for _, module := range []string{"", "header-logger", "add-header", "rate-limit"} {
		name := module
		if name == "" {
			name = "no-wasm"
		}
		b.Run(name, func(b *testing.B) {
			var filters []map[string]any
			if module != "" {
				filters = append(filters, wasmFilter(module, module, module, "{}"))
			}
			cfg := bootstrap(b, up.Listener.Addr().String(), listener("l", filters...))
			var ready, first time.Duration
			for b.Loop() {
				start := time.Now()
				e := startEnvoy(b, cfg)
				ready += time.Since(start)
				start = time.Now()
				if r := do(b, e.listeners["l"]+"/", nil); r.status != http.StatusOK {
					b.Fatalf("first request: status %d", r.status)
				}
				first += time.Since(start)
				e.stop()
			}
			b.ReportMetric(ready.Seconds()/float64(b.N), "s/ready")
			b.ReportMetric(float64(first.Microseconds())/1e3/float64(b.N), "ms/first-request")
		})
	}
}
