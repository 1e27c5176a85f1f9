package controlplane

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/wasmxds/wasmxds/internal/catalog"
	"github.com/wasmxds/wasmxds/internal/fetcher/fetchertest"
	"github.com/wasmxds/wasmxds/internal/xds"
	"github.com/wasmxds/wasmxds/internal/xdstest"
)

const listenerSpec = `apiVersion: wasmxds.dev/v1alpha1
kind: Listener
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  port: 10000
  routes:
  - match: {prefix: /}
    cluster: backend
---
apiVersion: wasmxds.dev/v1alpha1
kind: Cluster
metadata: {name: backend}
spec:
  endpoints: ["127.0.0.1:%d"]
`

const pluginSpec = `apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: add-header}
spec:
  selector: {matchLabels: {app: web}}
  url: file://%s
  pluginConfig: {header: %s}
  failStrategy: FAIL_CLOSE
`

// serveFixture is a running control plane on loopback ports over a temp
// config dir.
type serveFixture struct {
	t       *testing.T
	dir     string
	cp      *ControlPlane
	module  []byte
	modPath string
}

func startFixture(t *testing.T) *serveFixture {
	t.Helper()
	root := t.TempDir()
	f := &serveFixture{t: t, dir: filepath.Join(root, "configs"), module: fetchertest.ProxyWasm("serve-test")}
	modPath := filepath.Join(root, "filter.wasm")
	f.modPath = modPath
	if err := os.WriteFile(modPath, f.module, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(f.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f.write("listener.yaml", fmt.Sprintf(listenerSpec, 8080))
	f.write("plugin.yaml", fmt.Sprintf(pluginSpec, modPath, "x-first"))
	f.cp = newTestCP(t, Options{ConfigDir: f.dir, CacheDir: filepath.Join(root, "cache"), Delivery: xds.DeliveryLDS})
	runCP(t, f.cp)
	return f
}

// newTestCP is New with loopback listeners, a short debounce and test logs.
func newTestCP(t *testing.T, opts Options) *ControlPlane {
	t.Helper()
	opts.XDSListen, opts.HTTPListen = "127.0.0.1:0", "127.0.0.1:0"
	opts.Debounce = cmp.Or(opts.Debounce, 20*time.Millisecond)
	opts.Resync = cmp.Or(opts.Resync, time.Hour)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cp, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// runCP runs cp until the test ends, or until stop is called, waits for its
// first desired state and, once stopped, checks that Run returned cleanly.
func runCP(t *testing.T, cp *ControlPlane) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cp.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	select {
	case <-cp.Watching():
	case err := <-done:
		done <- err
		t.Fatalf("Run ended before the config was read: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("config directory not read within 20s")
	}
	return stop
}

func (f *serveFixture) write(name, content string) {
	f.t.Helper()
	// Write then rename, as editors and config management tools do, so the
	// watcher never reads a half-written file.
	tmp := filepath.Join(f.dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(f.dir, name)); err != nil {
		f.t.Fatal(err)
	}
}

func (f *serveFixture) get(path string) (int, []byte) {
	f.t.Helper()
	resp, err := http.Get("http://" + f.cp.AdminAddr() + path)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp.StatusCode, body
}

func (f *serveFixture) status() StatusReport {
	f.t.Helper()
	code, body := f.get("/debug/status")
	var rep StatusReport
	if err := json.Unmarshal(body, &rep); code != http.StatusOK || err != nil {
		f.t.Fatalf("/debug/status: %d %v\n%s", code, err, body)
	}
	return rep
}

func TestServeDeliversConfigAndModules(t *testing.T) {
	f := startFixture(t)
	if code, _ := f.get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	waitUntil(t, "/readyz", func() bool {
		code, _ := f.get("/readyz")
		return code == http.StatusOK
	})
	e := dialEnvoy(t, f.cp.XDSAddr(), "web-1", map[string]string{"app": "web"}, nil)
	st := e.Await(t, "listener, routes and the Wasm filter", hasWasmConfig)
	sum := sha256.Sum256(f.module)
	want := hex.EncodeToString(sum[:])
	var remote struct{ uri, sha string }
	for _, w := range wasmFilters(st) {
		r := w.GetConfig().GetVmConfig().GetCode().GetRemote()
		remote.uri, remote.sha = r.GetHttpUri().GetUri(), r.GetSha256()
	}
	if remote.sha != want || remote.uri != f.cp.AdvertiseURL()+"/modules/sha256/"+want {
		t.Fatalf("wasm remote code = %+v, want sha256 %s served by %s", remote, want, f.cp.AdvertiseURL())
	}
	resp, err := http.Get(remote.uri)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, f.module) {
		t.Errorf("GET %s = %d, %d bytes; want the module's %d bytes", remote.uri, resp.StatusCode, len(body), len(f.module))
	}
}

func TestServeAppliesEditsAndKeepsLastGoodOnBadSpec(t *testing.T) {
	f := startFixture(t)
	e := dialEnvoy(t, f.cp.XDSAddr(), "web-1", map[string]string{"app": "web"}, nil)
	clusters := e.Await(t, "config", hasWasmConfig).Type(resource.ClusterType).Version

	f.write("listener.yaml", fmt.Sprintf(listenerSpec, 9090))
	e.Await(t, "the edited cluster", func(s xdstest.State) bool { return s.Type(resource.ClusterType).Version != clusters })

	listeners := e.State().Type(resource.ListenerType).Version
	f.write("plugin.yaml", strings.Replace(fmt.Sprintf(pluginSpec, f.modPath, "x-first"), "failStrategy", "bogusField: 1\n  failStrategy", 1))
	var rep StatusReport
	waitUntil(t, "the spec error in /debug/status", func() bool {
		rep = f.status()
		return len(rep.SpecErrors) > 0
	})
	if !strings.HasPrefix(rep.SpecErrors[0], "plugin.yaml:") || !strings.Contains(rep.SpecErrors[0], "bogusField") {
		t.Errorf("spec errors = %q, want plugin.yaml:<line>: ... bogusField", rep.SpecErrors)
	}
	if len(rep.Plugins) != 1 || rep.Plugins[0].SHA256 == "" {
		t.Errorf("plugins = %+v, want add-header still served from its last good spec", rep.Plugins)
	}
	if got := e.State().Type(resource.ListenerType).Version; got != listeners {
		t.Errorf("listener version changed %s → %s on a spec error", listeners, got)
	}
	if len(rep.Nodes) != 1 || rep.Nodes[0].Types[resource.ListenerType].Acked != listeners {
		t.Errorf("nodes = %+v, want web-1 with the listener version ACKed", rep.Nodes)
	}
}

func TestServeReportsNACKs(t *testing.T) {
	f := startFixture(t)
	rej := &xdstest.Rejecter{}
	e := dialEnvoy(t, f.cp.XDSAddr(), "web-1", map[string]string{"app": "web"}, rej)
	e.Await(t, "config", func(s xdstest.State) bool { return s.Type(resource.RouteType).Version != "" })
	rej.RejectNext(resource.ClusterType, "cluster 'backend': rejected for the test")
	f.write("listener.yaml", fmt.Sprintf(listenerSpec, 9091))

	var rep StatusReport
	waitUntil(t, "the NACK in /debug/status", func() bool {
		rep = f.status()
		return len(rep.Nodes) == 1 && rep.Nodes[0].LastNack != nil
	})
	if nack := rep.Nodes[0].LastNack; nack.TypeURL != resource.ClusterType || !strings.Contains(nack.Error, "rejected for the test") {
		t.Errorf("last NACK = %+v", nack)
	}
	_, metrics := f.get("/metrics")
	for _, want := range []string{`wasmxds_xds_nacks_total{type="cluster"} 1`, "wasmxds_xds_connected_nodes 1", "go_goroutines"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

}

func TestRunFailsOnUnreadableConfigDir(t *testing.T) {
	cp := newTestCP(t, Options{ConfigDir: filepath.Join(t.TempDir(), "missing"), CacheDir: t.TempDir()})
	if err := cp.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("Run with a missing config dir: %v", err)
	}
	_, err := New(Options{ConfigDir: t.TempDir(), CacheDir: t.TempDir(), Delivery: "inline",
		XDSListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "--filter-delivery") {
		t.Errorf("New with a bad delivery mode: %v", err)
	}
}

// waitUntil polls cond until it holds, failing after a generous deadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestReadyzBeforeFirstConfig(t *testing.T) {
	cp := newTestCP(t, Options{ConfigDir: t.TempDir(), CacheDir: t.TempDir()})
	t.Cleanup(cp.closeListeners)
	h := cp.adminHandler(cp.reg)
	get := func(path string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code
	}
	if code := get("/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d before any config, want 503", code)
	}
	if code := get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d, want 200 while the process is up", code)
	}
	cp.ctrl.onChange(&catalog.State{})
	cp.server.Update(xds.Input{State: &catalog.State{}, Delivery: xds.DeliveryLDS})
	if code := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d after the first config", code)
	}
	if code := get("/debug/status"); code != http.StatusOK {
		t.Errorf("/debug/status = %d", code)
	}
}

// Profiles are served only with --pprof.
func TestPprofOnlyWhenAskedFor(t *testing.T) {
	for _, on := range []bool{false, true} {
		cp := newTestCP(t, Options{ConfigDir: t.TempDir(), CacheDir: t.TempDir(), Pprof: on})
		t.Cleanup(cp.closeListeners)
		rec := httptest.NewRecorder()
		cp.adminHandler(cp.reg).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/heap?debug=1", nil))
		if want := map[bool]int{false: http.StatusNotFound, true: http.StatusOK}[on]; rec.Code != want {
			t.Errorf("--pprof=%t: /debug/pprof/heap = %d, want %d", on, rec.Code, want)
		}
	}
}

// The module listener, the one Envoys reach, serves modules and nothing
// about the control plane; the admin listener serves no modules.
func TestModuleAndAdminListenersApart(t *testing.T) {
	f := startFixture(t)
	waitUntil(t, "/readyz", func() bool { code, _ := f.get("/readyz"); return code == http.StatusOK })
	sum := sha256.Sum256(f.module)
	modulePath := "/modules/sha256/" + hex.EncodeToString(sum[:])
	waitUntil(t, "the module served", func() bool {
		resp, err := http.Get(f.cp.AdvertiseURL() + modulePath)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/debug/status", "/debug/pprof/cmdline"} {
		resp, err := http.Get("http://" + f.cp.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("module listener %s = %d, want 404", path, resp.StatusCode)
		}
	}
	if code, _ := f.get(modulePath); code != http.StatusNotFound {
		t.Errorf("admin listener %s = %d, want 404", modulePath, code)
	}
	if host, _, _ := net.SplitHostPort(f.cp.AdminAddr()); host != "127.0.0.1" {
		t.Errorf("admin listener on %s, want loopback by default", f.cp.AdminAddr())
	}
}

// A config directory deleted and recreated is watched again; meanwhile the
// last good configuration keeps serving and readiness says why it is not
// ready.
func TestConfigDirRemovedAndRecreated(t *testing.T) {
	f := startFixture(t)
	e := dialEnvoy(t, f.cp.XDSAddr(), "web-1", map[string]string{"app": "web"}, nil)
	listeners := e.Await(t, "config", hasWasmConfig).Type(resource.ListenerType).Version

	if err := os.RemoveAll(f.dir); err != nil {
		t.Fatal(err)
	}
	var body []byte
	waitUntil(t, "/readyz to name the missing directory", func() bool {
		var code int
		code, body = f.get("/readyz")
		return code == http.StatusServiceUnavailable
	})
	if !strings.Contains(string(body), f.dir) {
		t.Errorf("/readyz = %q, want the missing directory named", body)
	}
	if rep := f.status(); rep.ConfigDirError == "" || rep.Ready {
		t.Errorf("status ready=%v configDirError=%q, want not ready with the reason", rep.Ready, rep.ConfigDirError)
	}
	if got := e.State().Type(resource.ListenerType).Version; got != listeners {
		t.Errorf("listener version changed %s → %s when the directory vanished", listeners, got)
	}

	if err := os.Mkdir(f.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f.write("listener.yaml", fmt.Sprintf(listenerSpec, 9090))
	f.write("plugin.yaml", fmt.Sprintf(pluginSpec, f.modPath, "x-first"))
	clusters := e.State().Type(resource.ClusterType).Version
	e.Await(t, "the recreated directory's config", func(s xdstest.State) bool {
		return s.Type(resource.ClusterType).Version != clusters
	})
	waitUntil(t, "ready again", func() bool { code, _ := f.get("/readyz"); return code == http.StatusOK })
}
