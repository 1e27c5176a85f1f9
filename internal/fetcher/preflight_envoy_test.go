package fetcher

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmxds/wasmxds/internal/testenv"
)

// envoyStartup bounds how long Envoy may take to start and compile a module
// on a busy machine.
const envoyStartup = 90 * time.Second

// TestPreflightAgreesWithEnvoy runs each feature module in real Envoy (V8)
// as a FAIL_CLOSED filter loaded from a local file, and checks that a
// request reaches the upstream with the header the filter adds, so the VM
// started and the filter ran; the preflight must accept the same file.
// Envoy missing is a failure, not a skip.
func TestPreflightAgreesWithEnvoy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Envoy once per module")
	}
	envoy, err := testenv.Envoy()
	if err != nil {
		t.Fatal(err)
	}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-upstream-saw", r.Header.Get("x-wasm-feature"))
	}))
	t.Cleanup(upstream.Close)
	for name := range featureModules {
		t.Run(name, func(t *testing.T) {
			path, err := filepath.Abs(filepath.Join("testdata", "features", name+".wasm"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Preflight(context.Background(), readFeatureModule(t, name)); err != nil {
				t.Errorf("preflight refuses what Envoy is about to run: %v", err)
			}
			listener := startEnvoy(t, envoy, wasmBootstrap(path, upstream.Listener.Addr().String()))
			status, saw := getThroughEnvoy(t, listener)
			if status != http.StatusOK || saw != name {
				t.Errorf("through Envoy: status %d, upstream saw x-wasm-feature %q; want 200 and %q", status, saw, name)
			}
		})
	}
}

// wasmBootstrap is a static Envoy config: one listener on an ephemeral port
// whose only HTTP filter before the router is the module at path, and a
// cluster for the upstream at addr.
func wasmBootstrap(path, addr string) string {
	host, port, _ := strings.Cut(addr, ":")
	return fmt.Sprintf(`
static_resources:
  listeners:
  - name: feature
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: feature
          route_config:
            virtual_hosts:
            - {name: all, domains: ["*"], routes: [{match: {prefix: /}, route: {cluster: upstream}}]}
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: feature
                failure_policy: FAIL_CLOSED
                vm_config:
                  runtime: envoy.wasm.runtime.v8
                  code: {local: {filename: %q}}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: upstream
    connect_timeout: 5s
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: %s, port_value: %s}}}
`, path, host, port)
}

// startEnvoy runs Envoy on bootstrap until the test ends and returns the
// listener's base URL once Envoy is live. If Envoy exits first (e.g. it
// refused the module), the test fails with Envoy's log.
func startEnvoy(t *testing.T, envoy, bootstrap string) string {
	t.Helper()
	dir := t.TempDir()
	cfg, addrFile, logPath := filepath.Join(dir, "envoy.yaml"), filepath.Join(dir, "admin"), filepath.Join(dir, "envoy.log")
	if err := os.WriteFile(cfg, []byte(bootstrap), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(envoy, "-c", cfg, "--concurrency", "1", "--disable-hot-restart",
		"--admin-address-path", addrFile, "--config-yaml", `admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}`)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting Envoy: %v", err)
	}
	// exited is closed once Envoy has exited and waitErr is set.
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); logFile.Close(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("Envoy log:\n%s", b)
		}
	})
	url := waitListener(t, addrFile, exited)
	if url == "" {
		t.Fatalf("Envoy exited during startup: %v", waitErr)
	}
	return url
}

// waitListener polls Envoy's admin API (there is no event to wait on) until
// the listener has its port, and returns its URL, or "" if Envoy exited.
func waitListener(t *testing.T, addrFile string, exited <-chan struct{}) string {
	t.Helper()
	deadline := time.Now().Add(envoyStartup)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return ""
		case <-time.After(50 * time.Millisecond):
		}
		admin, err := os.ReadFile(addrFile)
		if err != nil || len(admin) == 0 {
			continue
		}
		if url := listenerURL("http://" + strings.TrimSpace(string(admin))); url != "" {
			return url
		}
	}
	t.Fatalf("Envoy not ready after %v", envoyStartup)
	return ""
}

// listenerURL returns the base URL of Envoy's listener, or "" while Envoy is
// not live or the listener has no port yet.
func listenerURL(admin string) string {
	var resp struct {
		ListenerStatuses []struct {
			LocalAddress struct {
				SocketAddress struct {
					Address   string `json:"address"`
					PortValue int    `json:"port_value"`
				} `json:"socket_address"`
			} `json:"local_address"`
		} `json:"listener_statuses"`
	}
	if body, code := httpGetBody(admin + "/ready"); code != http.StatusOK || !strings.Contains(body, "LIVE") {
		return ""
	}
	body, code := httpGetBody(admin + "/listeners?format=json")
	if code != http.StatusOK || json.Unmarshal([]byte(body), &resp) != nil || len(resp.ListenerStatuses) != 1 {
		return ""
	}
	sa := resp.ListenerStatuses[0].LocalAddress.SocketAddress
	if sa.PortValue == 0 {
		return ""
	}
	return fmt.Sprintf("http://%s:%d", sa.Address, sa.PortValue)
}

func httpGetBody(url string) (string, int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", 0
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode
}

// getThroughEnvoy sends one request through Envoy and returns the status and the
// x-wasm-feature header the upstream received.
func getThroughEnvoy(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET through Envoy: %v", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("x-upstream-saw")
}
