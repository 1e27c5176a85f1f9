package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// peerUnreachableAfter is how long a replica goes unheard before its peers
// call it unreachable (serve's fixed 30 s), plus polling slack.
const peerUnreachableAfter = 40 * time.Second

// fleetStatus is the part of /debug/status (or `wasmxds status --json`)
// about the replicas and where each node is.
type fleetStatus struct {
	Replicas []replicaEntry `json:"replicas"`
	Nodes    []struct {
		ID          string `json:"id"`
		Replica     string `json:"replica"`
		Unreachable bool   `json:"unreachable"`
	} `json:"nodes"`
	Plugins []rolloutStatus `json:"plugins"`
}

// replicaEntry is one replica in the status document.
type replicaEntry struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	State   string `json:"state"`
	Ready   bool   `json:"ready"`
	Nodes   int    `json:"nodes"`
}

// peerFleet is three replicas that name each other as peers, each with its
// own spec directory (as pods see a ConfigMap edit at different moments),
// behind HAProxy, and one Envoy on each replica.
type peerFleet struct {
	replicas []*server
	ids      []string
	lb       *haproxyLB
	envoys   []*envoy
	ports    map[string]int // node id → its listener port
}

func newPeerFleet(t *testing.T, haproxy string, base, plugin string, nodes []string) *peerFleet {
	t.Helper()
	f := &peerFleet{ports: map[string]int{}}
	lbXDS, lbHTTP := fmt.Sprintf("127.0.0.1:%d", freePort(t)), fmt.Sprintf("127.0.0.1:%d", freePort(t))
	admins := []string{}
	for range 3 {
		admins = append(admins, fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	}
	for i := range 3 {
		id := fmt.Sprintf("replica-%d", i+1)
		args := []string{"--advertise-url", "http://" + lbHTTP, "--replica-id", id}
		for j, a := range admins {
			if j != i {
				args = append(args, "--peer", a)
			}
		}
		f.ids = append(f.ids, id)
		f.replicas = append(f.replicas, startServerWith(t, serverOptions{args: args}, func(s *server) {
			s.adminAddr = admins[i]
			s.writeSpec(baseSpecFile, base)
			s.writeSpec(pluginFile, plugin)
		}))
	}
	f.lb = startHAProxy(t, haproxy, lbXDS, lbHTTP, f.replicas)
	lbServer := &server{xdsAddr: lbXDS}
	// One at a time: HAProxy's round robin then puts each on another replica.
	for _, id := range nodes {
		f.envoys = append(f.envoys, startEnvoy(t, lbServer, id, map[string]string{"app": id}))
		eventually(t, applyTimeout, func() error {
			if f.replicaOf(id) < 0 {
				return fmt.Errorf("envoy %s on no replica", id)
			}
			return nil
		})
	}
	return f
}

// replicaOf is the index of the replica holding a node's stream, as that
// replica reports it, -1 if none.
func (f *peerFleet) replicaOf(nodeID string) int {
	for i, s := range f.replicas {
		var st fleetStatus
		if s.proc.Alive() != nil || s.get("/debug/status", &st) != nil {
			continue
		}
		for _, n := range st.Nodes {
			if n.ID == nodeID && n.Replica == f.ids[i] && !n.Unreachable {
				return i
			}
		}
	}
	return -1
}

// cliStatus runs `wasmxds status --json` against a replica.
func cliStatus(s *server) (fleetStatus, error) {
	var st fleetStatus
	out, err := exec.Command(tools.wasmxds, "status", "--json", "--server", "http://"+s.adminAddr).Output()
	if err != nil {
		return st, fmt.Errorf("wasmxds status: %w", err)
	}
	return st, json.Unmarshal(out, &st)
}

// haltedBy polls until s reports the plugin's rollout halted by node on
// replica.
func haltedBy(s *server, plugin, node, replica string) func() error {
	return func() error {
		st, err := pluginRollout(s, plugin)
		if err != nil {
			return err
		}
		if ro := st.Rollout; ro == nil || ro.State != "halted" || ro.Halted == nil || ro.Halted.Node != node ||
			ro.Halted.Replica != replica {
			return fmt.Errorf("rollout %+v, want halted by %s on %s", ro, node, replica)
		}
		return nil
	}
}

// TestReplicasActAsOne runs three `wasmxds serve` replicas that name each
// other as peers behind HAProxy, with a real Envoy on each. `wasmxds status
// --json` from any replica lists every Envoy with its replica. A rollout
// whose module fails to start reaches replica 1 first and is refused by its
// Envoy; replicas 2 and 3, given the same edit, apply the halt they heard
// from replica 1 instead of sending their Envoys the module, and every
// Envoy keeps the main module with no failed request. A replica killed with
// SIGKILL shows as unreachable on the others, and restarted with an empty
// cache it reports the halt it learnt from its peers.
func TestReplicasActAsOne(t *testing.T) {
	requireFull(t)
	t.Parallel()
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatalf("haproxy not found (run `make deps`, or apt-get install haproxy): %v", err)
	}
	mods := smallSwapModules(t, "filters/peers", 1)
	bad := filepath.Join(repoRoot(), "e2e/testdata/vm-start-fails.wasm")
	if _, err := shared.registry.pushWasmxds(nil, bad, "filters/peers:broken"); err != nil {
		t.Fatal(err)
	}
	nodes := []string{"peer-a", "peer-b", "peer-c"}
	up := startUpstream(t)
	ports := map[string]int{}
	var base []string
	for _, id := range nodes {
		ports[id] = freePort(t)
		base = append(base, listenerSpec(id, id, ports[id], "peers-upstream"))
	}
	base = append(base, clusterSpec("peers-upstream", up))
	p := plugin{name: "canary", url: oci(mods[0].ref)}
	started := time.Now()
	f := newPeerFleet(t, haproxy, docs(base...), p.spec(), nodes)
	on := map[int]string{} // replica → its Envoy
	for _, id := range nodes {
		on[f.replicaOf(id)] = id
		eventually(t, applyTimeout, steady(steadyReplies, expectEcho(ports[id], "x-swap", "v00")))
	}
	if len(on) != 3 {
		t.Fatalf("Envoys on replicas %v, want one on each", on)
	}
	f.assertFleetView(t, nodes)

	loads := map[string]*load{}
	for _, id := range nodes {
		loads[id] = startLoad(t, ports[id])
		t.Cleanup(loads[id].stop)
	}
	time.Sleep(300 * time.Millisecond) // traffic from before the edit
	// A replica's first 10 s count as warm-up: a module it starts resolving
	// then (the rollout's) makes it not ready, and HAProxy would move its
	// Envoy away. Edit after them.
	time.Sleep(time.Until(started.Add(11 * time.Second)))

	// Every node is chosen; replica 1 sees the edit first.
	p.rollout = map[string]any{"url": oci("filters/peers:broken"), "percent": 100}
	first, refuser := 0, on[0]
	f.replicas[first].writeSpec(pluginFile, p.spec())
	eventually(t, 30*time.Second, haltedBy(f.replicas[first], "canary", refuser, f.ids[first]))
	start := time.Now()
	for _, i := range []int{1, 2} {
		f.replicas[i].writeSpec(pluginFile, p.spec())
	}
	for _, i := range []int{1, 2} {
		eventually(t, 30*time.Second, haltedBy(f.replicas[i], "canary", refuser, f.ids[first]))
	}
	t.Logf("replicas 2 and 3 halted by replica 1's Envoy %s %v after their spec edit", refuser,
		time.Since(start).Round(time.Millisecond))
	for _, id := range nodes {
		eventually(t, applyTimeout, steady(steadyReplies, expectEcho(ports[id], "x-swap", "v00")))
	}
	time.Sleep(300 * time.Millisecond)
	for _, id := range nodes {
		loads[id].stop()
		loads[id].assertNoFailures(t)
	}

	f.killAndRestart(t, 2, refuser, f.ids[first])
}

// assertFleetView checks that `wasmxds status --json` from every replica
// lists every Envoy with the replica holding its stream.
func (f *peerFleet) assertFleetView(t *testing.T, nodes []string) {
	t.Helper()
	want := map[string]string{}
	for _, id := range nodes {
		want[id] = f.ids[f.replicaOf(id)]
	}
	for i, s := range f.replicas {
		eventually(t, 10*time.Second, func() error {
			st, err := cliStatus(s)
			if err != nil {
				return err
			}
			got := map[string]string{}
			for _, n := range st.Nodes {
				got[n.ID] = n.Replica
			}
			if fmt.Sprint(got) != fmt.Sprint(want) || len(st.Replicas) != 3 {
				return fmt.Errorf("%s lists nodes %v and %d replicas, want %v and 3", f.ids[i], got, len(st.Replicas), want)
			}
			return nil
		})
	}
	t.Logf("every replica lists every Envoy with its replica: %v", want)
}

// killAndRestart kills replica i with SIGKILL, waits until the others call
// it unreachable, then restarts it with an empty cache (a new pod) and
// waits until it reports the halt it learnt from its peers.
func (f *peerFleet) killAndRestart(t *testing.T, i int, node, replica string) {
	t.Helper()
	gone := f.replicas[i]
	gone.proc.Kill()
	killed := time.Now()
	for j, s := range f.replicas {
		if j == i {
			continue
		}
		eventually(t, peerUnreachableAfter, func() error {
			st, err := cliStatus(s)
			if err != nil {
				return err
			}
			k := slices.IndexFunc(st.Replicas, func(r replicaEntry) bool { return r.ID == f.ids[i] })
			if k < 0 || st.Replicas[k].State != "unreachable" || st.Replicas[k].Ready {
				return fmt.Errorf("%s sees replicas %+v, want %s unreachable", f.ids[j], st.Replicas, f.ids[i])
			}
			return nil
		})
	}
	t.Logf("the others call %s unreachable %v after SIGKILL", f.ids[i], time.Since(killed).Round(time.Second))
	if err := os.RemoveAll(gone.cacheDir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(gone.cacheDir, 0o755); err != nil {
		t.Fatal(err)
	}
	gone.start()
	eventually(t, 30*time.Second, haltedBy(gone, "canary", node, replica))
	if b, err := os.ReadFile(filepath.Join(gone.cacheDir, "plugins.json")); err != nil || !strings.Contains(string(b), node) {
		t.Errorf("the restarted replica did not keep the learnt halt in its state file: %v\n%s", err, b)
	}
}
