package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The manifests of the older ways in, as those tools' users wrote them,
// each running the config-echo filter (which answers with its
// configuration in x-plugin-config) with its own configuration form.
const (
	wasmeManifest = `apiVersion: wasme.io/v1
kind: FilterDeployment
metadata:
  name: details-echo
  namespace: bookinfo
spec:
  deployment:
    istio:
      kind: Deployment
      labels:
        app: details
  filter:
    id: wasme-vm
    image: %s
    rootID: wasme_root
    config:
      '@type': type.googleapis.com/google.protobuf.StringValue
      value: hello from wasme
    imagePullOptions:
      plainHttp: true
`
	asmManifest = `apiVersion: istio.alibabacloud.com/v1beta1
kind: ASMFilterDeployment
metadata:
  name: reviews-echo
  namespace: default
spec:
  workload:
    kind: Deployment
    labels:
      app: reviews
  filter:
    parameters: '{"name": "asm", "value": "hello from asm"}'
    image: '%s'
    rootID: asm_root
    id: reviews-echo.default
`
	envoyFilterManifest = `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata:
  name: ratings-echo
spec:
  workloadSelector:
    labels:
      app: ratings
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      listener:
        portNumber: %d
        filterChain:
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter:
              name: envoy.filters.http.router
    patch:
      operation: INSERT_BEFORE
      value:
        name: envoy.filters.http.wasm
        typed_config:
          '@type': type.googleapis.com/udpa.type.v1.TypedStruct
          type_url: type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
          value:
            config:
              root_id: envoyfilter_root
              configuration:
                '@type': type.googleapis.com/google.protobuf.Struct
                value:
                  from: envoyfilter
              vm_config:
                vm_id: ratings-vm
                runtime: envoy.wasm.runtime.v8
                code:
                  local:
                    filename: config-echo.wasm
`
	// Istio TrafficExtensions as Istio's examples write them.
	trafficExtensionWasm = `apiVersion: extensions.istio.io/v1alpha1
kind: TrafficExtension
metadata:
  name: echo-config
spec:
  selector:
    matchLabels:
      app: gateway
  phase: STATS
  wasm:
    url: oci://%s
    pluginName: echo
    pluginConfig:
      extension: wasm
`
	trafficExtensionLua = `apiVersion: extensions.istio.io/v1alpha1
kind: TrafficExtension
metadata:
  name: tag-response
spec:
  selector:
    matchLabels:
      app: gateway
  phase: AUTHN
  priority: 1000
  lua:
    inlineCode: |
      function envoy_on_response(response_handle)
        response_handle:headers():add("x-lua", "added by lua")
      end
`
)

// TestOlderManifestsServe serves a config directory holding a wasme
// FilterDeployment, an ASM ASMFilterDeployment and an Istio EnvoyFilter
// (its module a local file): it validates without an error, and each Envoy
// the manifests' labels select runs its filter with the configuration
// and root id the manifest gave; the EnvoyFilter only on its port.
func TestOlderManifestsServe(t *testing.T) {
	requireFull(t)
	up := startUpstream(t)
	ports := map[string]int{"details": freePort(t), "reviews": freePort(t), "ratings": freePort(t)}
	otherPort := freePort(t) // a second listener of the ratings Envoy
	image := shared.registry.ref(refConfigEcho)
	s := startServerWith(t, serverOptions{}, func(s *server) {
		base := []string{clusterSpec("upstream", up), listenerSpec("ratings-other", "ratings", otherPort, "upstream")}
		for app, port := range ports {
			base = append(base, listenerSpec(app, app, port, "upstream"))
		}
		s.writeSpec(baseSpecFile, docs(base...))
		s.writeSpec("wasme.yaml", fmt.Sprintf(wasmeManifest, image))
		s.writeSpec("asm.yaml", fmt.Sprintf(asmManifest, image))
		s.writeSpec("envoyfilter.yaml", fmt.Sprintf(envoyFilterManifest, ports["ratings"]))
		copyFile(t, filterPath("config-echo"), filepath.Join(s.configDir, "config-echo.wasm"))
	})
	validateClean(t, s.configDir)
	envoys := map[string]*envoy{}
	for app := range ports {
		envoys[app] = startEnvoy(t, s, app+"-node", map[string]string{"app": app})
	}
	want := map[string]string{
		"details": "hello from wasme",
		"reviews": `{"name": "asm", "value": "hello from asm"}`,
		"ratings": `{"from":"envoyfilter"}`,
	}
	for app, port := range ports {
		eventually(t, applyTimeout, steady(steadyReplies, expectHeader(port, "x-plugin-config", want[app])))
	}
	holds(t, "the EnvoyFilter's filter stays off the ratings Envoy's other port",
		expectHeader(otherPort, "x-plugin-config", ""))
	roots := map[string][]string{
		"details": {`"root_id": "wasme_root"`, `"vm_id": "wasme-vm.`},
		"reviews": {`"root_id": "asm_root"`, `"vm_id": "reviews-echo.default.`},
		"ratings": {`"root_id": "envoyfilter_root"`, `"vm_id": "ratings-vm.`},
	}
	for app, words := range roots {
		eventually(t, applyTimeout, configDumpHas(envoys[app], words))
	}
}

// TestTrafficExtensionsServe serves Istio TrafficExtensions as Istio's
// examples write them, one with a Wasm module and one with Lua, on one
// Envoy: both run, the Lua filter as Envoy's own, and status shows the Lua
// one ready without a module.
func TestTrafficExtensionsServe(t *testing.T) {
	requireFull(t)
	wasm := fmt.Sprintf(trafficExtensionWasm, shared.registry.ref(refConfigEcho))
	lua := trafficExtensionLua
	f := newSingle(t, serverOptions{}, "gateway", map[string]string{"wasm.yaml": wasm, "lua.yaml": lua})
	validateClean(t, f.srv.configDir)
	f.waitFor(t, func() error {
		if err := expectHeader(f.port, "x-plugin-config", `{"extension":"wasm"}`)(); err != nil {
			return err
		}
		return expectHeader(f.port, "x-lua", "added by lua")()
	})
	eventually(t, applyTimeout, func() error {
		var st struct {
			Plugins []struct {
				Name  string `json:"name"`
				State string `json:"state"`
				Lua   bool   `json:"lua"`
				Kind  string `json:"kind"`
			} `json:"plugins"`
		}
		if err := f.srv.get("/debug/status", &st); err != nil {
			return err
		}
		for _, p := range st.Plugins {
			if p.Name == "tag-response" && p.State == "ready" && p.Lua && p.Kind == "TrafficExtension" {
				return nil
			}
		}
		return fmt.Errorf("tag-response not ready as a Lua TrafficExtension: %+v", st.Plugins)
	})
}

// validateClean runs `wasmxds validate` on dir and requires no error.
func validateClean(t *testing.T, dir string) {
	t.Helper()
	out, err := run(nil, tools.wasmxds, "validate", dir)
	if err != nil || !strings.Contains(out, " 0 errors") {
		t.Fatalf("wasmxds validate %s: %v\n%s", dir, err, out)
	}
}

// configDumpHas polls Envoy's config dump for every one of words.
func configDumpHas(e *envoy, words []string) func() error {
	return func() error {
		dump, err := e.admin("/config_dump")
		if err != nil {
			return err
		}
		for _, w := range words {
			if !strings.Contains(dump, w) {
				return fmt.Errorf("envoy %s config dump lacks %s", e.nodeID, w)
			}
		}
		return nil
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
