package controlplane

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/wasmxds/wasmxds/internal/fetcher/fetchertest"
	"github.com/wasmxds/wasmxds/internal/xdstest"
	"go.uber.org/goleak"
)

// hangingRegistry accepts connections and never answers, like a registry
// behind a stuck load balancer. It closes them when the test ends.
func hangingRegistry(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return l.Addr().String()
}

const hungPluginSpec = `apiVersion: wasmxds.dev/v1alpha1
kind: WasmPlugin
metadata: {name: hung-%d}
spec:
  selector: {matchLabels: {app: web}}
  url: oci://%s/filters/hung-%d:v1
  failStrategy: FAIL_CLOSE
  match: [{ports: [{number: 10000}]}]
`

const apiListenerSpec = `apiVersion: wasmxds.dev/v1alpha1
kind: Listener
metadata: {name: api}
spec:
  selector: {matchLabels: {app: web}}
  port: 10001
  routes:
  - match: {prefix: /}
    cluster: backend
`

// With pulls hanging on a registry that never answers, the control plane
// starts, is ready, and pushes an unrelated edit at once; and Run, once
// cancelled, stops every goroutine it started, the hanging pulls included.
func TestHangingRegistryNeitherDelaysEditsNorLeaksOnShutdown(t *testing.T) {
	reg := hangingRegistry(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())

	root := t.TempDir()
	f := &serveFixture{t: t, dir: filepath.Join(root, "configs")}
	if err := mkdir(f.dir); err != nil {
		t.Fatal(err)
	}
	f.write("listener.yaml", fmt.Sprintf(listenerSpec, 8080))
	for i := range 6 {
		f.write(fmt.Sprintf("hung-%d.yaml", i), fmt.Sprintf(hungPluginSpec, i, reg, i))
	}
	f.cp = newTestCP(t, Options{ConfigDir: f.dir, CacheDir: filepath.Join(root, "cache"), Delivery: "lds"})
	stop := runStoppable(t, f.cp)

	// Readiness does not wait on the hanging registry.
	waitUntil(t, "/readyz", func() bool { code, _ := f.get("/readyz"); return code == 200 })
	rep := f.status()
	if len(rep.Plugins) != 6 || rep.Plugins[0].State != PluginPending {
		t.Fatalf("plugins = %+v, want 6 pending", rep.Plugins)
	}

	e, err := xdstest.Dial(f.cp.XDSAddr(), xdstest.Options{NodeID: "web-1", Labels: map[string]string{"app": "web"}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	st := e.Await(t, "clusters", func(s xdstest.State) bool { return s.Type(resource.ClusterType).Version != "" })
	if got := st.Type(resource.ListenerType).Names(); len(got) != 0 {
		t.Errorf("listeners %v pushed while their fail-closed plugins are pending; want them held back", got)
	}
	start := time.Now()
	f.write("api.yaml", apiListenerSpec)
	e.Await(t, "the new listener", func(s xdstest.State) bool {
		return slices.Equal(s.Type(resource.ListenerType).Names(), []string{"api"})
	})
	t.Logf("unrelated edit reached the fake Envoy in %v with 6 pulls hanging", time.Since(start))

	e.Close()
	stop()
}

func mkdir(dir string) error { return os.MkdirAll(dir, 0o755) }

// A file: module that is a named pipe with no writer would block its pull
// forever, filling the file source's pull slots. It is refused at once as
// not a regular file: the other plugins, cached or not, are ready, the
// refused ones say why, and Run stops promptly, leaving no goroutine.
func TestNamedPipeModulesNeitherHangPullsNorShutdown(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	root := t.TempDir()
	f := &serveFixture{t: t, dir: filepath.Join(root, "configs"), module: fetchertest.ProxyWasm("fifo-test")}
	if err := mkdir(f.dir); err != nil {
		t.Fatal(err)
	}
	modPath := filepath.Join(root, "filter.wasm")
	if err := os.WriteFile(modPath, f.module, 0o644); err != nil {
		t.Fatal(err)
	}
	f.write("listener.yaml", fmt.Sprintf(listenerSpec, 8080))
	for i := range 5 {
		pipe := filepath.Join(root, fmt.Sprintf("pipe-%d.wasm", i))
		if err := syscall.Mkfifo(pipe, 0o644); err != nil {
			t.Fatal(err)
		}
		f.write(fmt.Sprintf("pipe-%d.yaml", i), strings.NewReplacer("name: add-header", fmt.Sprintf("name: pipe-%d", i)).
			Replace(fmt.Sprintf(pluginSpec, pipe, "x-pipe")))
	}
	f.write("plugin.yaml", fmt.Sprintf(pluginSpec, modPath, "x-first"))
	f.cp = newTestCP(t, Options{ConfigDir: f.dir, CacheDir: filepath.Join(root, "cache"), Delivery: "lds"})
	stop := runStoppable(t, f.cp)

	waitUntil(t, "every plugin resolved or refused", func() bool {
		rep := f.status()
		if len(rep.Plugins) != 6 {
			return false
		}
		for _, p := range rep.Plugins {
			if p.State == PluginPending {
				return false
			}
		}
		return true
	})
	for _, p := range f.status().Plugins {
		switch {
		case p.Name == "add-header" && p.State != PluginReady:
			t.Errorf("the ordinary plugin is %s (%s), want ready", p.State, p.Error)
		case p.Name != "add-header" && (p.State != PluginFailed || !strings.Contains(p.Error, "named pipe")):
			t.Errorf("plugin %s on a named pipe is %s (%q), want failed saying it is a named pipe", p.Name, p.State, p.Error)
		}
	}
	if code, _ := f.get("/readyz"); code != 200 {
		t.Errorf("/readyz = %d, want 200: the refused plugins are failed, not pending", code)
	}
	stop()
}

// runStoppable runs cp; stop cancels it and fails the test unless Run
// returns cleanly within 20 s. A test that ends without stop still waits
// for Run.
func runStoppable(t *testing.T, cp *ControlPlane) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cp.Run(ctx) }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cancel()
			<-done
		}
	})
	return func() {
		t.Helper()
		cancel()
		stopped = true
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("Run did not return within 20s of cancellation")
		}
	}
}
