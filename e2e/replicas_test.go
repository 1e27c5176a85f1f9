package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/wasmxds/wasmxds/internal/testproc"
)

// resubscribeGoal is how soon an Envoy whose replica died must hold a
// stream to a survivor, with everything ACKed.
const resubscribeGoal = 5 * time.Second

// TestReplicasFailover runs three `wasmxds serve` replicas on one spec
// directory behind HAProxy (TCP for ADS, HTTP for modules) and two Envoys
// bootstrapped with the load balancer's address, under steady traffic. It
// kills -9 the replicas the Envoys are connected to and checks that no
// request fails, that each Envoy is re-subscribed to a survivor within 5 s
// and is sent no changed configuration, that an edit and a new module tag
// made during the outage reach both Envoys (the module downloaded through
// the load balancer), and that the killed replicas restart and take the
// Envoys back, again with no changed configuration.
func TestReplicasFailover(t *testing.T) {
	requireFull(t)
	t.Parallel()
	haproxy := lookHAProxy(t)
	f := newReplicaFleet(t, haproxy, 3, []string{"rep-a", "rep-b"})
	p := plugin{name: "rep", url: oci(refAddHeader), config: addHeader("x-rep", "one")}
	f.writeSpec(p.spec())
	f.waitAll(t, "x-rep", "one")
	loads := f.startLoad(t)

	// Move: kill -9 every replica an Envoy is on.
	f.waitSettled(t)
	before := f.envoyState(t)
	killed := f.killConnectedReplicas(t)
	f.waitResubscribed(t, killed)
	f.assertUnchanged(t, before, "after moving to a survivor")

	// Outage: an edit, then a module behind a tag no replica has seen.
	p.config = addHeader("x-rep", "two")
	f.writeSpec(p.spec())
	f.waitAll(t, "x-rep", "two")
	tag := fmt.Sprintf("filters/replicas-echo:%d", time.Now().UnixNano())
	if _, err := shared.registry.pushWasmxds(nil, filterPath("config-echo"), tag); err != nil {
		t.Fatal(err)
	}
	p.url, p.config = oci(tag), map[string]any{"rep": "echo"}
	f.writeSpec(p.spec())
	f.waitAll(t, configEchoHeader, `{"rep":"echo"}`)
	for _, e := range f.envoys {
		if n, err := e.stat("cluster.wasmxds_modules.upstream_rq_200"); err != nil || n == 0 {
			t.Errorf("envoy %s downloaded no module through the load balancer (%d, %v)", e.nodeID, n, err)
		}
	}

	// Rejoin: the killed replicas restart; the survivors go; the Envoys
	// move back and are again sent nothing new.
	for _, s := range killed {
		s.start()
	}
	f.waitSettled(t)
	settled := f.envoyState(t)
	var survivors []*server
	for _, s := range f.replicas {
		if !slices.Contains(killed, s) {
			survivors = append(survivors, s)
		}
	}
	for _, s := range survivors {
		s.proc.Kill()
	}
	f.waitResubscribed(t, survivors)
	f.assertUnchanged(t, settled, "after moving to the restarted replicas")
	for _, l := range loads {
		l.stop()
		l.assertNoFailures(t)
	}
}

// replicaFleet is N replicas sharing one spec directory behind a load
// balancer, and Envoys (one listener each) that reach them through it.
type replicaFleet struct {
	replicas []*server
	lb       *haproxyLB
	envoys   []*envoy
	ports    []int
	specDir  string
	upstream string
}

func newReplicaFleet(t *testing.T, haproxy string, n int, apps []string) *replicaFleet {
	t.Helper()
	f := &replicaFleet{specDir: filepath.Join(t.TempDir(), "specs"), upstream: startUpstream(t)}
	if err := os.MkdirAll(f.specDir, 0o755); err != nil {
		t.Fatal(err)
	}
	var base []string
	for _, app := range apps {
		port := freePort(t)
		f.ports = append(f.ports, port)
		base = append(base, listenerSpec(app, app, port, "rep-upstream"))
	}
	base = append(base, clusterSpec("rep-upstream", f.upstream))
	writeFileAtomic(t, filepath.Join(f.specDir, baseSpecFile), docs(base...))
	lbXDS, lbHTTP := fmt.Sprintf("127.0.0.1:%d", freePort(t)), fmt.Sprintf("127.0.0.1:%d", freePort(t))
	for range n {
		// Every replica advertises the load balancer: the same module URLs,
		// hence the same versions, whichever replica an Envoy is on.
		f.replicas = append(f.replicas, startServer(t, serverOptions{configDir: f.specDir,
			args: []string{"--advertise-url", "http://" + lbHTTP}}))
	}
	f.lb = startHAProxy(t, haproxy, lbXDS, lbHTTP, f.replicas)
	lbServer := &server{xdsAddr: lbXDS}
	for _, app := range apps {
		f.envoys = append(f.envoys, startEnvoy(t, lbServer, app+"-node", map[string]string{"app": app}))
	}
	return f
}

// writeSpec replaces the plugin spec file every replica reads.
func (f *replicaFleet) writeSpec(content string) {
	f.replicas[0].writeSpec(pluginFile, content)
}

func writeFileAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// waitAll waits until every Envoy's listener answers with header = want.
func (f *replicaFleet) waitAll(t *testing.T, header, want string) {
	t.Helper()
	for _, port := range f.ports {
		eventually(t, applyTimeout, steady(steadyReplies, expectHeader(port, header, want)))
	}
}

// startLoad sends steady traffic through every Envoy.
func (f *replicaFleet) startLoad(t *testing.T) []*load {
	var out []*load
	for _, port := range f.ports {
		l := startLoad(t, port)
		t.Cleanup(l.stop)
		out = append(out, l)
	}
	return out
}

// assertNoFailures fails the test for every request that failed.
func (l *load) assertNoFailures(t *testing.T) {
	t.Helper()
	for name := range loadClients {
		c := l.summary(name, 0, time.Now(), func(reply) bool { return true })
		t.Logf("port %d, %s client: %d requests, %d failed", l.port, name, c.requests, len(c.failures))
		for _, e := range c.failures {
			t.Errorf("port %d, %s client: failed request: %s", l.port, name, e)
		}
	}
}

// connectedTo returns the replica a node has a live stream to, nil if none.
func (f *replicaFleet) connectedTo(nodeID string) *server {
	for _, s := range f.replicas {
		if s.proc.Alive() != nil {
			continue
		}
		if _, err := ackedVersions(s, nodeID); err == nil {
			return s
		}
	}
	return nil
}

// killConnectedReplicas kills -9 every replica an Envoy is connected to
// (found in each replica's /debug/status), as a crash would.
func (f *replicaFleet) killConnectedReplicas(t *testing.T) []*server {
	t.Helper()
	var killed []*server
	for _, e := range f.envoys {
		var s *server
		eventually(t, applyTimeout, func() error {
			if s = f.connectedTo(e.nodeID); s == nil {
				return fmt.Errorf("envoy %s is on no replica with everything ACKed", e.nodeID)
			}
			return nil
		})
		if !slices.Contains(killed, s) {
			killed = append(killed, s)
		}
	}
	if len(killed) == len(f.replicas) {
		t.Fatal("the Envoys are on every replica: none would survive")
	}
	for _, s := range killed {
		s.proc.Kill()
	}
	return killed
}

// waitResubscribed waits until every Envoy holds a stream to a replica
// other than gone, with everything sent ACKed, and fails the test if that
// took longer than resubscribeGoal.
func (f *replicaFleet) waitResubscribed(t *testing.T, gone []*server) {
	t.Helper()
	start := time.Now()
	for _, e := range f.envoys {
		eventually(t, applyTimeout, func() error {
			s := f.connectedTo(e.nodeID)
			if s == nil || slices.Contains(gone, s) {
				return fmt.Errorf("envoy %s not re-subscribed", e.nodeID)
			}
			return nil
		})
	}
	took := time.Since(start)
	t.Logf("every Envoy re-subscribed to a surviving replica %v after the kill", took.Round(time.Millisecond))
	if took > resubscribeGoal {
		t.Errorf("Envoys re-subscribed %v after the kill, want within %v", took, resubscribeGoal)
	}
}

// envoyView is what an Envoy holds (every version_info in its config
// dump) and how often it applied changed content.
type envoyView struct {
	versions []string
	changes  map[string]int
	updates  map[string]int
}

// changeStats count configuration that Envoy applied because its content
// changed; updateStats count responses, changed or not.
var (
	changeStats = `(config_reload|listener_added|listener_modified|listener_removed|cluster_added|cluster_modified|cluster_removed)$`
	updateStats = `(cds|lds)\.update_success$|\.rds\..*\.update_success$|extension_config_discovery\..*\.update_success$`
)

func (f *replicaFleet) envoyState(t *testing.T) map[string]envoyView {
	t.Helper()
	out := map[string]envoyView{}
	for _, e := range f.envoys {
		dump, err := e.admin("/config_dump")
		if err != nil {
			t.Fatal(err)
		}
		var v envoyView
		if v.versions, err = versionInfos(dump); err != nil {
			t.Fatal(err)
		}
		if v.changes, err = e.stats(changeStats); err != nil {
			t.Fatal(err)
		}
		if v.updates, err = e.stats(updateStats); err != nil {
			t.Fatal(err)
		}
		out[e.nodeID] = v
	}
	return out
}

// waitSettled waits until no Envoy holds a plugin config marked as a
// first module's confirmation (its module URL carries "?attempt="): the
// mark is dropped once every node of the group runs the module, and a
// replica that takes over a node running it sends the plain config, so a
// state captured before the mark is dropped would differ from the one
// after a move for that reason alone.
func (f *replicaFleet) waitSettled(t *testing.T) {
	t.Helper()
	for _, e := range f.envoys {
		eventually(t, applyTimeout, func() error {
			dump, err := e.admin("/config_dump?resource=ecds_filters")
			if err != nil {
				return err
			}
			if strings.Contains(dump, "attempt=") {
				return fmt.Errorf("envoy %s still holds a first module's confirmation config", e.nodeID)
			}
			return nil
		})
	}
}

// assertUnchanged checks that every Envoy holds the versions it held
// before and applied no changed content, and logs the responses it got.
func (f *replicaFleet) assertUnchanged(t *testing.T, before map[string]envoyView, when string) {
	t.Helper()
	for _, e := range f.envoys {
		// The survivor answers each subscription once on the new stream;
		// wait for those answers so that a late change would show.
		eventually(t, applyTimeout, func() error {
			if n, err := e.stat("control_plane.connected_state"); err != nil || n != 1 {
				return fmt.Errorf("envoy %s: connected_state %d, %v", e.nodeID, n, err)
			}
			return nil
		})
	}
	after := f.envoyState(t)
	for _, e := range f.envoys {
		b, a := before[e.nodeID], after[e.nodeID]
		if !slices.Equal(a.versions, b.versions) {
			t.Errorf("%s, envoy %s holds versions\n%v\nbefore\n%v", when, e.nodeID, a.versions, b.versions)
		}
		if !maps.Equal(a.changes, b.changes) {
			t.Errorf("%s, envoy %s applied changed configuration: %v, before %v", when, e.nodeID, a.changes, b.changes)
		}
		t.Logf("%s, envoy %s: responses applied before %v, after %v; changed content: none", when, e.nodeID, b.updates, a.updates)
	}
}

// stats returns the counters whose names match the regular expression.
func (e *envoy) stats(re string) (map[string]int, error) {
	body, err := e.admin("/stats?usedonly&format=json&filter=" + strings.ReplaceAll(re, "\\", "%5C"))
	if err != nil {
		return nil, err
	}
	var doc struct {
		Stats []struct {
			Name  string `json:"name"`
			Value *int   `json:"value"`
		} `json:"stats"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		return nil, fmt.Errorf("envoy %s stats: %w", e.nodeID, err)
	}
	out := map[string]int{}
	for _, s := range doc.Stats {
		if s.Value != nil {
			out[s.Name] = *s.Value
		}
	}
	return out, nil
}

// versionInfos lists every version_info in an Envoy config dump, each with
// the JSON path (indexes left out) it was found at, sorted.
func versionInfos(dump string) ([]string, error) {
	var doc any
	if err := json.Unmarshal([]byte(dump), &doc); err != nil {
		return nil, fmt.Errorf("config dump: %w", err)
	}
	var out []string
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && k == "version_info" {
					out = append(out, path+"="+s)
				} else {
					walk(path+"/"+k, x)
				}
			}
		case []any:
			for _, x := range v {
				walk(path, x)
			}
		}
	}
	walk("", doc)
	slices.Sort(out)
	if len(out) == 0 {
		return nil, fmt.Errorf("no version_info in the config dump")
	}
	return out, nil
}

// haproxyLB is Debian's HAProxy in front of the replicas: TCP mode for ADS
// (gRPC streams pass through whole), HTTP mode for modules; a replica is
// in rotation while its /readyz answers 200.
type haproxyLB struct {
	proc *testproc.Proc
}

var haproxyConfig = template.Must(template.New("haproxy").Parse(`global
  maxconn 2000
defaults
  timeout connect 1s
  # ADS streams live as long as the Envoy; wasmxds pings idle ones.
  timeout client 1h
  timeout server 1h
  timeout tunnel 1h
  retries 3
  option redispatch
{{- range .Health}}
  {{.}}
{{- end}}
frontend xds
  mode tcp
  bind {{.XDS}}
  default_backend xds
backend xds
  mode tcp
  balance roundrobin
  option httpchk GET /readyz
{{- range $i, $r := .Replicas}}
  server r{{$i}} {{$r.XDS}} check addr {{$r.AdminHost}} port {{$r.AdminPort}}
{{- end}}
frontend modules
  mode http
  bind {{.HTTP}}
  default_backend modules
backend modules
  mode http
  balance roundrobin
  option httpchk GET /readyz
  retry-on conn-failure empty-response
{{- range $i, $r := .Replicas}}
  server r{{$i}} {{$r.HTTP}} check addr {{$r.AdminHost}} port {{$r.AdminPort}}
{{- end}}
`))

type lbReplica struct{ XDS, HTTP, AdminHost, AdminPort string }

// lookHAProxy finds HAProxy, failing the test when it is not installed.
func lookHAProxy(t *testing.T) string {
	t.Helper()
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatalf("haproxy not found (run `make deps`, or apt-get install haproxy): %v", err)
	}
	return haproxy
}

func startHAProxy(t *testing.T, bin, xdsAddr, httpAddr string, replicas []*server) *haproxyLB {
	t.Helper()
	return startHAProxyChecking(t, bin, xdsAddr, httpAddr, replicas, failFast)
}

// HAProxy's health checks of the replicas' /readyz, as defaults lines.
var (
	// failFast takes a replica out of rotation, closing its sessions, at
	// the first check that fails or takes over 200 ms.
	failFast = []string{"default-server inter 200ms fall 1 rise 1 on-marked-down shutdown-sessions"}
	// failSlow takes a replica out after three checks in a row fail or
	// take over 2 s: a replica busy for a moment (a module pull on a
	// loaded host) keeps its Envoys, a killed one loses them within 1.5 s.
	failSlow = []string{"timeout check 2s", "default-server inter 500ms fall 3 rise 1 on-marked-down shutdown-sessions"}
)

// startHAProxyChecking is startHAProxy with the given health checks.
func startHAProxyChecking(t *testing.T, bin, xdsAddr, httpAddr string, replicas []*server, health []string) *haproxyLB {
	t.Helper()
	data := struct {
		XDS, HTTP string
		Health    []string
		Replicas  []lbReplica
	}{XDS: xdsAddr, HTTP: httpAddr, Health: health}
	for _, s := range replicas {
		host, port, _ := strings.Cut(s.adminAddr, ":")
		data.Replicas = append(data.Replicas, lbReplica{XDS: s.xdsAddr, HTTP: s.httpAddr, AdminHost: host, AdminPort: port})
	}
	var b strings.Builder
	if err := haproxyConfig.Execute(&b, data); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := run(nil, bin, "-c", "-f", cfg); err != nil {
		t.Fatalf("haproxy config: %v\n%s", err, out)
	}
	lb := &haproxyLB{proc: testproc.StartT(t, "haproxy", nil, bin, "-db", "-f", cfg)}
	eventually(t, 10*time.Second, func() error {
		if err := lb.proc.Alive(); err != nil {
			return err
		}
		resp, err := http.Get("http://" + httpAddr + "/modules/sha256/" + strings.Repeat("0", 64))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
			return fmt.Errorf("no replica in rotation yet")
		}
		return nil
	})
	return lb
}
