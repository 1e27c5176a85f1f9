package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmxds/wasmxds/internal/testproc"
)

// TestFirstModuleConfirmedThroughAProxy is TestFirstModuleConfirmed with
// Envoy fetching modules through HAProxy (an L7 load balancer in front of
// the module server, as in front of replicas), which connects from another
// address than Envoy's ADS connection: the module server cannot tell whose
// download it serves. A download from an address no node connects from is
// taken as any waiting node's, so both first modules are confirmed; the
// broken one is refused once its attempts run out, since a proxied
// download may be another node's (proxiedFailWithin).
func TestFirstModuleConfirmedThroughAProxy(t *testing.T) {
	requireFull(t)
	haproxy := lookHAProxy(t)
	lb := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	const app = "first-proxied"
	f := newSingleServer(t, serverOptions{args: []string{"--advertise-url", "http://" + lb}}, app, nil)
	startModuleProxy(t, haproxy, lb, f.srv.httpAddr, proxySource)
	f.envoy = startEnvoy(t, f.srv, app+"-node", map[string]string{"app": app})
	firstModuleConfirmed(t, f, "filters/first-vm-start-fails-proxied:v1", "http://"+lb+"/", proxiedFailWithin)
}

// proxiedFailWithin bounds how long a first module whose VM fails takes to
// show failed when its download came through a proxy: the download may be
// another node's, so its NACKs count as cache misses until the attempts
// run out (8, and 15 s since the first: about 16 s).
const proxiedFailWithin = 30 * time.Second

// proxySource is the address the module proxy connects from: loopback,
// but not the address Envoy connects to wasmxds from.
const proxySource = "127.0.0.2"

// startModuleProxy runs HAProxy as an HTTP proxy on addr in front of the
// module server at upstream, connecting to it from source.
func startModuleProxy(t *testing.T, bin, addr, upstream, source string) {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	conf := fmt.Sprintf(`global
  maxconn 200
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
frontend modules
  bind %s
  default_backend modules
backend modules
  source %s
  server modules %s
`, addr, source, upstream)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p := testproc.StartT(t, "haproxy", nil, bin, "-db", "-f", cfg)
	eventually(t, 10*time.Second, func() error {
		if err := p.Alive(); err != nil {
			return err
		}
		resp, err := http.Get("http://" + addr + "/modules/sha256/" + strings.Repeat("0", 64))
		if err != nil {
			return err
		}
		resp.Body.Close()
		// The module server answers a digest it does not serve with 503
		// and Retry-After; HAProxy's own 503 has none.
		if resp.Header.Get("Retry-After") == "" {
			return fmt.Errorf("an unknown module through the proxy: status %d without Retry-After, want the module server's answer", resp.StatusCode)
		}
		return nil
	})
}

// TestFirstModuleConfirmedThroughAnotherReplica is TestFirstModuleConfirmed
// with two replicas that peer, the Envoy's ADS stream on replica a and its
// module downloads going through HAProxy to replica b: a hears of each
// download from b (peers share the downloads their module servers
// finished) and confirms the first modules as if it had served them.
func TestFirstModuleConfirmedThroughAnotherReplica(t *testing.T) {
	requireFull(t)
	haproxy := lookHAProxy(t)
	const app = "first-replica"
	f := &single{port: freePort(t), app: app}
	specDir := filepath.Join(t.TempDir(), "specs")
	if err := os.MkdirAll(specDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFileAtomic(t, filepath.Join(specDir, baseSpecFile),
		docs(listenerSpec(app, app, f.port, app+"-upstream"), clusterSpec(app+"-upstream", startUpstream(t))))
	lb := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	admins := []string{fmt.Sprintf("127.0.0.1:%d", freePort(t)), fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	var replicas []*server
	for i, id := range []string{"a", "b"} {
		args := []string{"--advertise-url", "http://" + lb, "--replica-id", id, "--peer", admins[1-i]}
		replicas = append(replicas, startServerWith(t, serverOptions{configDir: specDir, args: args},
			func(s *server) { s.adminAddr = admins[i] }))
	}
	startModuleProxy(t, haproxy, lb, replicas[1].httpAddr, proxySource)
	f.srv = replicas[0]
	f.envoy = startEnvoy(t, f.srv, app+"-node", map[string]string{"app": app})
	firstModuleConfirmed(t, f, "filters/first-vm-start-fails-replica:v1", "http://"+lb+"/", proxiedFailWithin)
}
