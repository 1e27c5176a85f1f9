package bench

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wasmxds/wasmxds/internal/bootstrap"
	"github.com/wasmxds/wasmxds/internal/testenv"
	"github.com/wasmxds/wasmxds/internal/testproc"
)

// EnvoyBin finds Envoy: $ENVOY_BIN, then PATH, then the copy `make deps`
// installs under .tools.
func EnvoyBin() (string, error) { return testenv.Envoy() }

// StartEnvoy bootstraps an Envoy (internal/bootstrap: node id, labels, ADS
// address, the command's other defaults), its admin on a free port, and
// waits until it is live.
func StartEnvoy(xdsAddr, nodeID string, labels map[string]string, dir string) (*testproc.Proc, error) {
	envoy, err := EnvoyBin()
	if err != nil {
		return nil, err
	}
	admin, err := testproc.FreeAddr()
	if err != nil {
		return nil, err
	}
	_, adminPort, _ := net.SplitHostPort(admin)
	port, err := strconv.ParseUint(adminPort, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("admin address %s: %w", admin, err)
	}
	b, err := bootstrap.Render(bootstrap.Options{NodeID: nodeID, NodeCluster: bootstrap.DefaultNodeCluster,
		Labels: labels, XDSAddress: xdsAddr, AdminAddress: bootstrap.DefaultAdminAddress, AdminPort: uint32(port)})
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	cfg := filepath.Join(dir, "envoy.yaml")
	if err := os.WriteFile(cfg, b.YAML, 0o644); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	p, err := testproc.Start("envoy", filepath.Join(dir, "envoy.log"), nil, envoy, "-c", cfg,
		"--concurrency", "2", "--base-id", adminPort, "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	if err := p.WaitHTTP("http://"+admin+"/ready", 60*time.Second); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// Load is a steady stream of requests through Envoy: clients that keep
// their connection and clients that open one per request, as real
// traffic mixes both.
type Load struct {
	url  string
	done chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	requests int
	failures []string
}

// StartLoad starts keepAlive + fresh clients, each sending a request
// every 5 ms.
func StartLoad(url string, keepAlive, fresh int) *Load {
	l := &Load{url: url, done: make(chan struct{})}
	for i := range keepAlive + fresh {
		tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableKeepAlives: i >= keepAlive}
		l.wg.Add(1)
		go l.client(&http.Client{Transport: tr, Timeout: 5 * time.Second})
	}
	return l
}

func (l *Load) client(c *http.Client) {
	defer l.wg.Done()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-tick.C:
		}
		resp, err := c.Get(l.url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		l.mu.Lock()
		l.requests++
		if err != nil {
			l.failures = append(l.failures, time.Now().Format("15:04:05.000")+" "+err.Error())
		}
		l.mu.Unlock()
	}
}

// Stop ends the load and returns the requests sent and the failures.
func (l *Load) Stop() (int, []string) {
	close(l.done)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.requests, l.failures
}

// EnvoySpecs writes the specs of the Envoy benchmark: one listener on
// port routing to upstream, and config-echo with {"edit": marker}.
func EnvoySpecs(configDir string, port int, upstream, module, marker string) error {
	base := fmt.Sprintf(`apiVersion: wasmxds.dev/v1alpha1
kind: Listener
metadata: {name: envoy-bench}
spec:
  selector: {matchLabels: {app: envoy-bench}}
  address: 127.0.0.1
  port: %d
  routes:
  - match: {prefix: /}
    cluster: upstream
---
apiVersion: wasmxds.dev/v1alpha1
kind: Cluster
metadata: {name: upstream}
spec:
  endpoints: [%q]
`, port, upstream)
	if err := writeAtomic(filepath.Join(configDir, "envoy.yaml"), base); err != nil {
		return err
	}
	return EnvoyEdit(configDir, module, marker)
}

// EnvoyEdit rewrites the config-echo plugin with a new marker.
func EnvoyEdit(configDir, module, marker string) error {
	return writeAtomic(filepath.Join(configDir, "plugin.yaml"), fmt.Sprintf(`apiVersion: wasmxds.dev/v1alpha1
kind: WasmPlugin
metadata: {name: config-echo}
spec:
  selector: {matchLabels: {app: envoy-bench}}
  url: file://%s
  failStrategy: FAIL_CLOSE
  pluginConfig: {edit: %q}
`, module, marker))
}

// WaitHeader polls url until header x-plugin-config contains want.
func WaitHeader(c *http.Client, url, want string, timeout time.Duration) error {
	return testproc.Poll(timeout, 2*time.Millisecond, func() error {
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if got := resp.Header.Get("x-plugin-config"); !strings.Contains(got, want) {
			return fmt.Errorf("x-plugin-config %q, want %q in it", got, want)
		}
		return nil
	})
}
