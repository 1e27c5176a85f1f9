package filters_test

import (
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Plugin configurations used through Envoy. echoConfig has spaces and
// nesting to show config-echo returns it byte for byte.
const (
	addHeaderConfig = `{"header": "x-wasm", "value": "hello", "headers": {"x-wasm-a": "1", "x-wasm-b": "2"}}`
	echoConfig      = `{"greeting": "hi there", "n": 1, "nested": {"list": [1, 2]}}`
	limitConfig     = `{"requestsPerWindow": 3, "windowSeconds": 3600}`
	limitRequests   = 3
)

// wasmFilter is an envoy.filters.http.wasm entry loading module from disk.
// Plugins with the same vmID share one VM (per worker) and get separate
// root contexts.
func wasmFilter(module, rootID, vmID, config string) map[string]any {
	return wasmFilterEnv(module, rootID, vmID, config, nil)
}

// wasmFilterEnv is wasmFilter with environment variables for the VM.
func wasmFilterEnv(module, rootID, vmID, config string, env map[string]string) map[string]any {
	return map[string]any{
		"name": "envoy.filters.http.wasm",
		"typed_config": map[string]any{
			"@type":  "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
			"config": pluginConfig(module, rootID, vmID, config, env),
		},
	}
}

// pluginConfig is an envoy.extensions.wasm.v3.PluginConfig that fails
// closed.
func pluginConfig(module, rootID, vmID, config string, env map[string]string) map[string]any {
	return map[string]any{
		"name":    rootID,
		"root_id": rootID,
		"vm_config": map[string]any{
			"vm_id":                 vmID,
			"runtime":               "envoy.wasm.runtime.v8",
			"environment_variables": map[string]any{"key_values": env},
			"code":                  map[string]any{"local": map[string]any{"filename": modulePath(module)}},
		},
		"configuration": map[string]any{
			"@type": "type.googleapis.com/google.protobuf.StringValue",
			"value": config,
		},
		"failure_policy": "FAIL_CLOSED",
	}
}

// listener is an HTTP listener on a free 127.0.0.1 port whose filters run
// in the given order before the router, proxying to cluster "upstream".
func listener(name string, filters ...map[string]any) map[string]any {
	chain := append(filters, map[string]any{
		"name":         "envoy.filters.http.router",
		"typed_config": map[string]any{"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
	})
	return map[string]any{
		"name":    name,
		"address": socketAddress("127.0.0.1", 0),
		"filter_chains": []any{map[string]any{"filters": []any{map[string]any{
			"name": "envoy.filters.network.http_connection_manager",
			"typed_config": map[string]any{
				"@type":       "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
				"stat_prefix": name,
				"route_config": map[string]any{"virtual_hosts": []any{map[string]any{
					"name": "all", "domains": []string{"*"},
					"routes": []any{map[string]any{
						"match": map[string]any{"prefix": "/"},
						"route": map[string]any{"cluster": "upstream"},
					}},
				}}},
				"http_filters": chain,
			},
		}}}},
	}
}

func socketAddress(host string, port int) map[string]any {
	return map[string]any{"socket_address": map[string]any{"address": host, "port_value": port}}
}

// bootstrap is a static Envoy configuration (JSON, which Envoy reads as
// YAML) with an admin endpoint on a free port.
func bootstrap(t testing.TB, upstream string, listeners ...map[string]any) string {
	host, portText, err := net.SplitHostPort(upstream)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(portText)
	b, err := json.Marshal(map[string]any{
		"admin": map[string]any{"address": socketAddress("127.0.0.1", 0)},
		"static_resources": map[string]any{
			"listeners": listeners,
			"clusters": []any{map[string]any{
				"name": "upstream", "type": "STATIC", "connect_timeout": "2s",
				"load_assignment": map[string]any{
					"cluster_name": "upstream",
					"endpoints": []any{map[string]any{"lb_endpoints": []any{map[string]any{
						"endpoint": map[string]any{"address": socketAddress(host, port)},
					}}}},
				},
			}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// startFiltersEnvoy runs Envoy with listeners "basic" (add-header,
// config-echo, header-logger), "chain" and "chain-reversed" (two
// add-header instances appending to x-chain, in opposite orders) and
// "limited" (rate-limit), all proxying to an echo upstream.
func startFiltersEnvoy(t *testing.T) *envoy {
	up := echoUpstream(t)
	// The chain VM traces the Go garbage collector to Envoy's log, so the
	// load test below can check that collections happened.
	gctrace := map[string]string{"GODEBUG": "gctrace=1"}
	chain := func(rootID, value string) map[string]any {
		return wasmFilterEnv("add-header", rootID, "chain",
			`{"requestHeader": "x-chain", "requestValue": "`+value+`"}`, gctrace)
	}
	return startEnvoy(t, bootstrap(t, up.Listener.Addr().String(),
		listener("basic",
			wasmFilter("add-header", "add-header", "add-header", addHeaderConfig),
			wasmFilter("config-echo", "config-echo", "config-echo", echoConfig),
			wasmFilter("header-logger", "header-logger", "header-logger", "")),
		listener("chain", chain("chain-a", "a"), chain("chain-b", "b")),
		listener("chain-reversed", chain("chain-b", "b"), chain("chain-a", "a")),
		listener("limited", wasmFilter("rate-limit", "rate-limit", "rate-limit", limitConfig)),
	))
}

// TestFiltersInEnvoy loads the HTTP example filters into a real Envoy (V8
// runtime, one worker) and checks what a client sees through it.
func TestFiltersInEnvoy(t *testing.T) {
	e := startFiltersEnvoy(t)

	t.Run("add-header", func(t *testing.T) {
		r := do(t, e.listeners["basic"]+"/hello", nil)
		if r.status != http.StatusOK || r.body != "upstream /hello\n" {
			t.Fatalf("got %d %q, want 200 from the upstream", r.status, r.body)
		}
		for name, want := range map[string]string{"x-wasm": "hello", "x-wasm-a": "1", "x-wasm-b": "2"} {
			if got := r.header.Get(name); got != want {
				t.Errorf("response header %s = %q, want %q", name, got, want)
			}
		}
	})

	t.Run("config-echo", func(t *testing.T) {
		r := do(t, e.listeners["basic"]+"/", nil)
		if got := r.header.Get("x-plugin-config"); got != echoConfig {
			t.Errorf("x-plugin-config = %q, want %q", got, echoConfig)
		}
	})

	t.Run("header-logger", func(t *testing.T) {
		do(t, e.listeners["basic"]+"/", map[string]string{"User-Agent": "filters-test/1.0"})
		e.waitLog(t, "user-agent: filters-test/1.0", 10*time.Second)
	})

	t.Run("chain order", func(t *testing.T) {
		for name, want := range map[string]string{"chain": "a,b", "chain-reversed": "b,a"} {
			r := do(t, e.listeners[name]+"/", nil)
			if got := r.header.Get("x-echo-x-chain"); r.status != http.StatusOK || got != want {
				t.Errorf("%s: status %d, upstream saw x-chain %q, want %q", name, r.status, got, want)
			}
		}
	})

	t.Run("garbage collection under load", func(t *testing.T) { checkGCUnderLoad(t, e) })

	t.Run("rate-limit", func(t *testing.T) {
		url := e.listeners["limited"] + "/"
		for i := range limitRequests {
			if r := do(t, url, nil); r.status != http.StatusOK {
				t.Fatalf("request %d: status %d, want 200", i+1, r.status)
			}
		}
		r := do(t, url, nil)
		if r.status != http.StatusForbidden || r.body != "rate limited\n" || r.header.Get("x-rate-limited") != "true" {
			t.Errorf("over the limit: %d %q x-rate-limited=%q; want 403 \"rate limited\\n\" true",
				r.status, r.body, r.header.Get("x-rate-limited"))
		}
		if r.header.Get("x-echo-user-agent") != "" {
			t.Error("a limited request reached the upstream")
		}
	})
}

// checkGCUnderLoad sends requests through the chain listener. Each makes
// the guest copy a 30 KB header three times (the host's allocation, the Go
// string, the appended value), so a few hundred requests run the Go garbage
// collector many times, also while the host is filling memory the SDK
// allocated for it.
func checkGCUnderLoad(t *testing.T, e *envoy) {
	big := strings.Repeat("z", 30<<10)
	for i := range 300 {
		r := do(t, e.listeners["chain"]+"/", map[string]string{"x-chain": big})
		if got := r.header.Get("x-echo-x-chain"); r.status != http.StatusOK || got != big+",a,b" {
			t.Fatalf("request %d: status %d, upstream saw %d bytes of x-chain, want %d",
				i+1, r.status, len(got), len(big)+4)
		}
	}
	// The runtime writes each trace line in pieces and Envoy logs every
	// piece, so a cycle shows as a log line ending in "gc ".
	if n := strings.Count(e.log(), "chain: gc \n"); n < 2 {
		t.Errorf("%d garbage collections traced, want at least 2", n)
	}
}
