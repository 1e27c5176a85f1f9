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
// one Go filter, against the same Envoy without it. Envoy's V8 compiles a
// whole module with its optimizing compiler before the plugin starts, so
// this is the delay a new module adds to a configuration update.
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
			var total time.Duration
			for b.Loop() {
				start := time.Now()
				e := startEnvoy(b, cfg)
				total += time.Since(start)
				e.stop()
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "s/ready")
		})
	}
}
