package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wasmxds/wasmxds/internal/testproc"
)

// staticMesh is one wasmxds with two Envoys (app=a, app=b) and specs that do
// not change, shared by the scenarios that only read. Envoy a has one
// listener per scenario; plugins other than the app=a-wide one are limited
// to their scenario's listener with match.ports.
type staticMesh struct {
	srv                      *server
	a, b                     *envoy
	portA                    int // add-header only
	portB                    int // Envoy b's only listener
	portEcho, portRate       int
	portOrder, portCompat    int
	echoConfig, rateLimitCfg map[string]any
}

const (
	rateCapacity = 3
	rateWindow   = 4 * time.Second
)

func startStaticMesh(t *testing.T) *staticMesh {
	m := &staticMesh{portA: freePort(t), portB: freePort(t), portEcho: freePort(t),
		portRate: freePort(t), portOrder: freePort(t), portCompat: freePort(t)}
	m.echoConfig = map[string]any{
		"greeting": `say "hello", 'world' & <friends>`,
		"nested":   map[string]any{"list": []any{1, 2.5, "three", true, nil}, "empty": map[string]any{}},
		"unicode":  "héllo wörld ✓",
		"big":      1234567890123,
	}
	m.rateLimitCfg = rateLimit(rateCapacity, rateWindow)
	up := startUpstream(t)
	specs := []string{clusterSpec("upstream", up), listenerSpec("b", "b", m.portB, "upstream")}
	for _, p := range []int{m.portA, m.portEcho, m.portRate, m.portOrder, m.portCompat} {
		specs = append(specs, listenerSpec(fmt.Sprintf("a-%d", p), "a", p, "upstream"))
	}
	plugins := []plugin{
		{name: "scenario-1", app: "a", url: oci(refAddHeader), config: addHeader("x-scenario-1", "from-oci")},
		{name: "echo", app: "a", url: oci(refConfigEcho), config: m.echoConfig, ports: []int{m.portEcho}},
		{name: "limit", app: "a", url: oci(refRateLimit), config: m.rateLimitCfg, ports: []int{m.portRate}},
		{name: "logger", app: "b", url: oci(refLogger)},
		{name: "compat", app: "a", url: oci(refCompat), config: addHeader("x-compat", "OCI image"), ports: []int{m.portCompat}},
		{name: "compat-docker", app: "a", url: oci(refCompatDock), config: addHeader("x-compat-docker", "Docker image"),
			ports: []int{m.portCompat}},
	}
	plugins = append(plugins, orderPlugins(m.portOrder)...)
	for _, p := range plugins {
		specs = append(specs, p.spec())
	}
	m.srv = startServerWith(t, serverOptions{}, func(s *server) { s.writeSpec("static.yaml", docs(specs...)) })
	m.a = startEnvoy(t, m.srv, "node-a", map[string]string{"app": "a"})
	m.b = startEnvoy(t, m.srv, "node-b", map[string]string{"app": "b"})
	return m
}

// orderPlugins are four add-header plugins appending to one response header.
// Their names sort, and are written, in an order different from the one
// phase and priority give: b-authn, c-stats-50, a-stats-1, d-default-100.
func orderPlugins(port int) []plugin {
	mk := func(name, phase string, priority int, url string) plugin {
		return plugin{name: name, app: "a", url: url, phase: phase, priority: priority,
			config: chainLink(name), ports: []int{port}}
	}
	return []plugin{
		mk("a-stats-1", "STATS", 1, oci(refAddHeader)),
		mk("b-authn", "AUTHN", 0, oci(refOrasAdd)),
		mk("c-stats-50", "STATS", 50, oci(refAddHeader)),
		mk("d-default-100", "", 100, oci(refOrasAdd)),
	}
}

// TestStaticScenarios runs the scenarios that share one unchanging setup.
func TestStaticScenarios(t *testing.T) {
	requireFull(t)
	t.Parallel()
	m := startStaticMesh(t)
	t.Run("AddHeaderFromOCIOnlyOnMatchingNode", m.addHeaderOnMatchingNode)
	t.Run("ConfigEchoGetsPluginConfigUnchanged", m.configEcho)
	t.Run("RateLimitRefusesOverLimitThenRecovers", m.rateLimit)
	t.Run("PhaseAndPriorityOrderTheChain", m.order)
	t.Run("CompatImagePulledAndWorking", m.compat)
}

func (m *staticMesh) addHeaderOnMatchingNode(t *testing.T) {
	eventually(t, applyTimeout, steady(steadyReplies, expectHeader(m.portA, "x-scenario-1", "from-oci")))
	// Envoy b is up and serving its own listener, just without the plugin.
	eventually(t, applyTimeout, steady(steadyReplies, func() error {
		if err := expectHeader(m.portB, "x-scenario-1", "")(); err != nil {
			return err
		}
		r, err := get(m.portB, "/")
		if err != nil {
			return err
		}
		if r.body != upstreamBody {
			return fmt.Errorf("Envoy b answered %q, want the upstream's body", r.body)
		}
		return nil
	}))
	// Envoy b's own plugin, header-logger, saw the requests.
	eventually(t, applyTimeout, func() error {
		if _, err := get(m.portB, "/"); err != nil {
			return err
		}
		if !strings.Contains(testproc.Tail(m.b.logPath, 1000), loggerLine) {
			return fmt.Errorf("Envoy b's log has no %q", loggerLine)
		}
		return nil
	})
}

func (m *staticMesh) configEcho(t *testing.T) {
	eventually(t, applyTimeout, steady(steadyReplies, func() error {
		r, err := get(m.portEcho, "/")
		if err != nil {
			return err
		}
		raw := r.header.Get(configEchoHeader)
		if raw == "" {
			return fmt.Errorf("no %s header (status %d): %v", configEchoHeader, r.status, r.header)
		}
		var got any
		if err := json.Unmarshal([]byte(raw), &got); err != nil {
			return fmt.Errorf("%s is not JSON: %q: %w", configEchoHeader, raw, err)
		}
		want := jsonRoundTrip(m.echoConfig)
		if !reflect.DeepEqual(got, want) {
			return fmt.Errorf("filter got config %s, spec had %v", raw, want)
		}
		return nil
	}))
}

func jsonRoundTrip(v any) any {
	b, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

// rateLimit sends a burst over fresh connections. Each of Envoy's workers
// has its own bucket of rateCapacity, so within one window at most
// envoyConcurrency*rateCapacity requests pass and the rest get 403.
func (m *staticMesh) rateLimit(t *testing.T) {
	eventually(t, applyTimeout, expectHeader(m.portRate, "x-scenario-1", "from-oci"))
	burst := envoyConcurrency*rateCapacity + 4
	var denied reply
	eventually(t, applyTimeout, func() error {
		start := time.Now()
		ok, limited := 0, 0
		for range burst {
			r, err := get(m.portRate, "/")
			if err != nil {
				return err
			}
			switch r.status {
			case http.StatusOK:
				ok++
			case http.StatusForbidden:
				limited++
				denied = r
			default:
				return fmt.Errorf("status %d, body %q", r.status, r.body)
			}
		}
		if time.Since(start) >= rateWindow {
			return fmt.Errorf("burst of %d took %s, longer than the window", burst, time.Since(start))
		}
		if limited == 0 || ok > envoyConcurrency*rateCapacity {
			return fmt.Errorf("burst of %d: %d passed, %d limited; want at most %d to pass",
				burst, ok, limited, envoyConcurrency*rateCapacity)
		}
		return nil
	})
	if !strings.Contains(denied.body, rateLimitBody) {
		t.Errorf("403 body = %q, want it to contain %q", denied.body, rateLimitBody)
	}
	// After a window without traffic every bucket is full again.
	eventually(t, 3*rateWindow, func() error {
		r, err := get(m.portRate, "/")
		if err != nil {
			return err
		}
		if r.status != http.StatusOK {
			return fmt.Errorf("still limited: %d %q", r.status, r.body)
		}
		return nil
	})
}

// order reads the chain order back twice: from the request header each
// filter appends to (echoed by the upstream), and from the response, where
// encoders run from the router outwards so the last filter adds first.
func (m *staticMesh) order(t *testing.T) {
	chain := []string{"b-authn", "c-stats-50", "a-stats-1", "d-default-100"}
	reversed := slices.Clone(chain)
	slices.Reverse(reversed)
	eventually(t, applyTimeout, steady(steadyReplies, func() error {
		r, err := get(m.portOrder, "/")
		if err != nil {
			return err
		}
		if got := r.header.Get("x-echo-x-chain"); got != strings.Join(chain, ",") {
			return fmt.Errorf("request passed the filters in order %q, want %q", got, strings.Join(chain, ","))
		}
		if got := r.header.Values("x-order"); !slices.Equal(got, reversed) {
			return fmt.Errorf("response x-order = %q, want %q", got, reversed)
		}
		return nil
	}))
}

func (m *staticMesh) compat(t *testing.T) {
	eventually(t, applyTimeout, steady(steadyReplies, func() error {
		if err := expectHeader(m.portCompat, "x-compat", "OCI image")(); err != nil {
			return err
		}
		return expectHeader(m.portCompat, "x-compat-docker", "Docker image")()
	}))
}
