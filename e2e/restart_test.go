package e2e

import (
	"maps"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// TestRegistryDownWasmxdsRestartKeepsServingFromCache: with its registry
// gone, a restarted wasmxds serves the full config from its module cache —
// to the Envoy that was connected and to one that never saw the module.
func TestRegistryDownWasmxdsRestartKeepsServingFromCache(t *testing.T) {
	requireFull(t)
	t.Parallel()
	reg := startRegistryT(t, "", "")
	if _, err := reg.pushWasmxds(nil, filterPath("add-header"), refAddHeader); err != nil {
		t.Fatal(err)
	}
	p := plugin{name: "cached", app: "cache", url: "oci://" + reg.ref(refAddHeader),
		config: addHeader("x-cached", "from cache")}
	f := newSingle(t, serverOptions{insecure: []string{reg.addr}}, "cache", map[string]string{pluginFile: p.spec()})
	f.waitFor(t, expectHeader(f.port, "x-cached", "from cache"))
	before := waitAcked(t, f.srv, f.envoy.nodeID)

	reg.stop()
	f.srv.restart()
	// Versions are content hashes: the same versions ACKed from the new
	// process mean Envoy holds the same, full configuration.
	if after := waitAcked(t, f.srv, f.envoy.nodeID); !maps.Equal(after, before) {
		t.Errorf("after the restart Envoy ACKed %v, before %v", after, before)
	}
	f.waitFor(t, expectHeader(f.port, "x-cached", "from cache"))

	// A new Envoy has nothing cached: it must download the module from
	// wasmxds, which must still hold it.
	port2 := freePort(t)
	f.srv.writeSpec("second.yaml", docs(listenerSpec("cache-2", "cache-2", port2, "cache-upstream"),
		plugin{name: "cached-2", app: "cache-2", url: p.url, config: addHeader("x-cached", "second")}.spec()))
	startEnvoy(t, f.srv, "cache-2-node", map[string]string{"app": "cache-2"})
	f.waitFor(t, expectHeader(port2, "x-cached", "second"))
}

// TestEnvoyRestartGetsSameConfig: a restarted Envoy reconnects, gets the same
// configuration (the same versions), runs the plugin again and shows up in
// `wasmxds status` again.
func TestEnvoyRestartGetsSameConfig(t *testing.T) {
	requireFull(t)
	t.Parallel()
	p := plugin{name: "restart", app: "restart", url: oci(refAddHeader), config: addHeader("x-restart", "same")}
	f := newSingle(t, serverOptions{}, "restart", map[string]string{pluginFile: p.spec()})
	f.waitFor(t, expectHeader(f.port, "x-restart", "same"))
	before := waitAcked(t, f.srv, f.envoy.nodeID)

	f.envoy.restart()
	f.waitFor(t, expectHeader(f.port, "x-restart", "same"))
	waitRunning(t, f.srv, f.envoy.nodeID, "restart")
	if after := waitAcked(t, f.srv, f.envoy.nodeID); !maps.Equal(after, before) {
		t.Errorf("the restarted Envoy ACKed %v, before the restart %v", after, before)
	}
	lds := before["type.googleapis.com/envoy.config.listener.v3.Listener"]
	if len(lds) < 12 {
		t.Fatalf("no listener version ACKed: %v", before)
	}
	out, err := f.srv.statusText()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, f.envoy.nodeID) || !strings.Contains(out, lds[:12]) {
		t.Errorf("`wasmxds status` does not show %s with listener version %s:\n%s", f.envoy.nodeID, lds[:12], out)
	}
}

// TestPrivateRegistryWithDockerConfigCredentials: wasmxds pulls from a
// registry behind htpasswd auth with credentials from DOCKER_CONFIG.
func TestPrivateRegistryWithDockerConfigCredentials(t *testing.T) {
	requireFull(t)
	t.Parallel()
	reg := startRegistryT(t, "wasm-user", "s3cret-pass")
	resp, err := http.Get("http://" + reg.addr + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous GET /v2/ = %s, want 401: auth is not on", resp.Status)
	}
	cfgDir, err := reg.dockerConfig(filepath.Join(t.TempDir(), "docker"))
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"DOCKER_CONFIG=" + cfgDir}
	if out, err := reg.pushWasmxds(env, filterPath("add-header"), "private/add-header:v1"); err != nil {
		t.Fatalf("push with credentials: %v\n%s", err, out)
	}
	p := plugin{name: "private", app: "private", url: "oci://" + reg.ref("private/add-header:v1"),
		config: addHeader("x-private", "authenticated")}
	f := newSingle(t, serverOptions{env: env, insecure: []string{reg.addr}}, "private",
		map[string]string{pluginFile: p.spec()})
	f.waitFor(t, expectHeader(f.port, "x-private", "authenticated"))
}
