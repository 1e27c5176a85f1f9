package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wasmxds/wasmxds/internal/bootstrap"
	"github.com/wasmxds/wasmxds/internal/testproc"
)

// envoyConcurrency is the worker count of every test Envoy. Each worker runs
// its own Wasm VMs, so per-VM state such as a rate-limit bucket exists this
// many times; assertions are written for this value.
const envoyConcurrency = 2

// envoy is a real Envoy bootstrapped as `wasmxds bootstrap` does.
type envoy struct {
	t         testing.TB
	nodeID    string
	adminPort int
	bootstrap string
	logPath   string
	env       []string // added to the test's environment, KEY=VALUE
	args      []string // added to Envoy's command line
	proc      *testproc.Proc
}

// startEnvoy starts an Envoy whose node carries labels and whose ADS server
// is s, and waits until it has its initial configuration.
func startEnvoy(t testing.TB, s *server, nodeID string, labels map[string]string) *envoy {
	t.Helper()
	e := newEnvoy(t, s, nodeID, labels)
	e.start()
	return e
}

// newEnvoy writes an Envoy's bootstrap (internal/bootstrap, as `wasmxds
// bootstrap` prints it, with the changes given) without starting it.
func newEnvoy(t testing.TB, s *server, nodeID string, labels map[string]string, changes ...func(*bootstrap.Options)) *envoy {
	t.Helper()
	dir := t.TempDir()
	e := &envoy{t: t, nodeID: nodeID, adminPort: freePort(t),
		bootstrap: filepath.Join(dir, "envoy.yaml"), logPath: filepath.Join(dir, "envoy.log")}
	b, err := bootstrapYAML(nodeID, labels, s.xdsAddr, e.adminPort, changes...)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.bootstrap, b, 0o644); err != nil {
		t.Fatal(err)
	}
	testproc.DumpOnFailure(t, "envoy "+nodeID, e.logPath)
	t.Cleanup(func() {
		if e.proc != nil {
			e.proc.Stop()
		}
	})
	return e
}

// bootstrapYAML is the bootstrap with the command's defaults and an admin
// port of its own, so that several Envoys can share the host.
func bootstrapYAML(nodeID string, labels map[string]string, xdsAddr string, adminPort int, changes ...func(*bootstrap.Options)) ([]byte, error) {
	o := bootstrap.Options{NodeID: nodeID, NodeCluster: bootstrap.DefaultNodeCluster, Labels: labels,
		XDSAddress: xdsAddr, AdminAddress: bootstrap.DefaultAdminAddress, AdminPort: uint32(adminPort)}
	for _, change := range changes {
		change(&o)
	}
	b, err := bootstrap.Render(o)
	if err != nil {
		return nil, err
	}
	return b.YAML, b.WriteSDSFiles()
}

// statsEvery has Envoy report its stats every d.
func statsEvery(d time.Duration) func(*bootstrap.Options) {
	return func(o *bootstrap.Options) { o.StatsFlushInterval = d }
}

// mutualTLS has Envoy verify wasmxds with the CA and present the
// certificate and key (files, as in bootstrap.TLS).
func mutualTLS(ca, cert, key string) func(*bootstrap.Options) {
	return func(o *bootstrap.Options) { o.TLS = bootstrap.TLS{CAFile: ca, CertFile: cert, KeyFile: key} }
}

// start (re)starts Envoy and waits until its admin /ready says LIVE, which
// Envoy reports once the first CDS and LDS responses are applied.
func (e *envoy) start() {
	e.t.Helper()
	p := e.launch()
	eventually(e.t, 60*time.Second, func() error {
		if err := p.Alive(); err != nil {
			return err
		}
		body, err := e.admin("/ready")
		if err != nil {
			return err
		}
		if strings.TrimSpace(body) != "LIVE" {
			return fmt.Errorf("envoy %s not ready: %s", e.nodeID, body)
		}
		return nil
	})
}

// launch starts Envoy without waiting for its configuration.
func (e *envoy) launch() *testproc.Proc {
	e.t.Helper()
	args := append([]string{tools.envoy,
		"-c", e.bootstrap, "--concurrency", strconv.Itoa(envoyConcurrency),
		// The admin port is unique among running Envoys, so it makes a
		// unique shared-memory base id too.
		"--base-id", strconv.Itoa(e.adminPort),
		"--log-path", e.logPath, "--log-level", "info",
		// Flush the log often: tests read it while Envoy runs.
		"--file-flush-interval-msec", "200"}, e.args...)
	p, err := testproc.Start("envoy "+e.nodeID, e.logPath, e.env, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.proc = p
	return p
}

// restart stops Envoy and starts it again from the same bootstrap.
func (e *envoy) restart() {
	e.t.Helper()
	e.proc.Stop()
	e.start()
}

// admin GETs an admin endpoint and returns the body.
func (e *envoy) admin(path string) (string, error) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", e.adminPort, path))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("admin %s: %s", path, resp.Status)
	}
	return string(b), nil
}

// stat returns one counter or gauge from the admin /stats endpoint.
func (e *envoy) stat(name string) (int, error) {
	body, err := e.admin("/stats?filter=^" + name + "$")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+": "); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("envoy %s: no stat %s", e.nodeID, name)
}

// wasmStats returns Envoy's counters on Wasm VMs and remote module fetches,
// for failure messages.
func (e *envoy) wasmStats() string {
	body, err := e.admin("/stats?filter=" + url.QueryEscape(`^wasm\.|wasmxds_modules\.upstream_rq_(total|2xx)$`))
	if err != nil {
		return err.Error()
	}
	return body
}
