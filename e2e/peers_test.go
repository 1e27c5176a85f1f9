package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wasmxds/wasmxds/internal/controlplane"
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

// peerFleet is three replicas that name each other as peers, on one spec
// directory (an edit reaches them all at once), behind HAProxy, and one
// Envoy on each replica.
type peerFleet struct {
	specDir  string
	replicas []*server
	ids      []string
	lb       *haproxyLB
	envoys   []*envoy
}

// newPeerFleet starts the replicas on the base and plugin specs, then one
// Envoy per node, each with its own environment (env[node], KEY=VALUE).
func newPeerFleet(t *testing.T, haproxy string, base, plugin string, nodes []string, env map[string][]string) *peerFleet {
	t.Helper()
	f := &peerFleet{specDir: filepath.Join(t.TempDir(), "specs")}
	if err := os.MkdirAll(f.specDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFileAtomic(t, filepath.Join(f.specDir, baseSpecFile), base)
	writeFileAtomic(t, filepath.Join(f.specDir, pluginFile), plugin)
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
		f.replicas = append(f.replicas, startServerWith(t, serverOptions{configDir: f.specDir, args: args},
			func(s *server) { s.adminAddr = admins[i] }))
	}
	// Each Envoy must stay on its replica while replicas pull modules on a
	// busy host: only a replica down for a while loses its Envoys.
	f.lb = startHAProxyChecking(t, haproxy, lbXDS, lbHTTP, f.replicas, failSlow)
	lbServer := &server{xdsAddr: lbXDS}
	// One at a time: HAProxy's round robin then puts each on another replica.
	for _, id := range nodes {
		e := newEnvoy(t, lbServer, id, map[string]string{"app": id})
		e.env = env[id]
		e.start()
		f.envoys = append(f.envoys, e)
		eventually(t, applyTimeout, func() error {
			if f.replicaOf(id) < 0 {
				return fmt.Errorf("envoy %s on no replica", id)
			}
			return nil
		})
	}
	return f
}

// writeSpec replaces a spec file of the directory every replica reads.
func (f *peerFleet) writeSpec(t *testing.T, name, content string) {
	t.Helper()
	writeFileAtomic(t, filepath.Join(f.specDir, name), content)
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
// other as peers, on one spec directory, behind HAProxy, with a real Envoy
// on each. `wasmxds status --json` from any replica lists every Envoy with
// its replica. The plugin's main module sets a request header; its rollout
// module (fail-on-header) marks responses with its VM id and refuses to
// start in an Envoy started with FAIL_START=1, passed to the VM with
// vmConfig.env valueFrom HOST: only the Envoy that replica R holds has it.
// The rollout first chooses the two other Envoys, which run its module;
// raised to 100% it reaches R's Envoy, which refuses the module. The
// replicas other than R learn the halt from R's peer state: their Envoys
// go back to the main module, and every status names R's node and R. No
// request fails on any Envoy throughout. A replica killed with SIGKILL
// shows as unreachable on the others, and restarted with an empty cache it
// reports the halt it learnt from its peers.
func TestReplicasActAsOne(t *testing.T) {
	requireFull(t)
	t.Parallel()
	haproxy := lookHAProxy(t)
	mods := smallSwapModules(t, "filters/peers", 1)
	const failStart = "filters/peers:fail-start"
	if _, err := shared.registry.pushWasmxds(nil, filterPath("fail-on-header"), failStart); err != nil {
		t.Fatal(err)
	}
	nodes := []string{"peer-a", "peer-b", "peer-c"}
	refuser, first := reachedLast(t, "canary", nodes)
	// Started first, the refuser's Envoy is on replica-1 (HAProxy's round
	// robin starts there); the test holds wherever it is.
	nodes = append([]string{refuser}, slices.DeleteFunc(nodes, func(id string) bool { return id == refuser })...)
	up := startUpstream(t)
	ports := map[string]int{}
	var base []string
	for _, id := range nodes {
		ports[id] = freePort(t)
		base = append(base, listenerSpec(id, id, ports[id], "peers-upstream"))
	}
	base = append(base, clusterSpec("peers-upstream", up))
	p := plugin{name: "canary", url: oci(mods[0].ref), env: []map[string]any{{"name": "FAIL_START", "valueFrom": "HOST"}}}
	started := time.Now()
	f := newPeerFleet(t, haproxy, docs(base...), p.spec(), nodes, map[string][]string{refuser: {"FAIL_START=1"}})
	on := map[int]string{} // replica → its Envoy
	for _, id := range nodes {
		on[f.replicaOf(id)] = id
		eventually(t, applyTimeout, steady(steadyReplies, expectModule(ports[id], runsMain)))
	}
	if len(on) != 3 {
		t.Fatalf("Envoys on replicas %v, want one on each", on)
	}
	r := f.replicaOf(refuser)
	t.Logf("%s (FAIL_START=1) is on %s", refuser, f.ids[r])
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

	// The rollout chooses every Envoy but the refuser's: they run its
	// module, and every replica reports it active.
	p.rollout = map[string]any{"url": oci(failStart), "percent": first}
	f.writeSpec(t, pluginFile, p.spec())
	rolloutSHA := fileSHA256(t, filterPath("fail-on-header"))
	for i, s := range f.replicas {
		eventually(t, 30*time.Second, func() error {
			st, err := pluginRollout(s, "canary")
			if err != nil {
				return err
			}
			if ro := st.Rollout; ro == nil || ro.State != "active" || ro.SHA256 != rolloutSHA || st.SHA256 == rolloutSHA {
				return fmt.Errorf("%s: plugin %s with rollout %+v, want active with module %.12s, another than the main one",
					f.ids[i], st.SHA256, ro, rolloutSHA)
			}
			return nil
		})
	}
	for _, id := range nodes {
		want := runsRollout
		if id == refuser {
			want = runsMain
		}
		eventually(t, applyTimeout, steady(steadyReplies, expectModule(ports[id], want)))
	}
	t.Logf("at %d%%, every Envoy but %s runs the rollout module", first, refuser)

	// At 100% the rollout reaches the refuser's Envoy, which cannot start
	// the module: every replica halts, naming it and its replica, and
	// every Envoy goes back to the main module.
	f.assertPlacement(t, on)
	p.rollout["percent"] = 100
	edit := time.Now()
	f.writeSpec(t, pluginFile, p.spec())
	eventually(t, 60*time.Second, func() error {
		if i := f.replicaOf(refuser); i != r {
			t.Fatalf("%s moved from %s to replica %d before it refused the module", refuser, f.ids[r], i+1)
		}
		return haltedBy(f.replicas[r], "canary", refuser, f.ids[r])()
	})
	halted := time.Now()
	t.Logf("%s halted the rollout, refused by %s, %v after the edit", f.ids[r], refuser, halted.Sub(edit).Round(time.Millisecond))
	for i, s := range f.replicas {
		if i != r {
			eventually(t, 30*time.Second, haltedBy(s, "canary", refuser, f.ids[r]))
			t.Logf("%s reports the halt learnt from %s %v later", f.ids[i], f.ids[r], time.Since(halted).Round(time.Millisecond))
		}
	}
	for _, id := range nodes {
		eventually(t, applyTimeout, steady(steadyReplies, expectModule(ports[id], runsMain)))
		if id != refuser {
			t.Logf("%s runs the main module again %v after %s halted", id, time.Since(halted).Round(time.Millisecond), f.ids[r])
		}
	}
	f.assertPlacement(t, on)
	time.Sleep(300 * time.Millisecond)
	for _, id := range nodes {
		loads[id].stop()
		loads[id].assertNoFailures(t)
		loads[id].assertModules(t, id, id != refuser)
	}

	f.killAndRestart(t, (r+1)%3, refuser, f.ids[r])
}

// assertPlacement fails the test unless each Envoy is still on the
// replica on names: what replicas learn from each other is told apart from
// what they see themselves only while Envoys stay put.
func (f *peerFleet) assertPlacement(t *testing.T, on map[int]string) {
	t.Helper()
	for i, id := range on {
		if j := f.replicaOf(id); j != i {
			t.Fatalf("%s moved from %s to replica %d", id, f.ids[i], j+1)
		}
	}
}

// reachedLast returns the node a rollout of plugin reaches last as its
// percent grows, and the highest percent that leaves only it out.
func reachedLast(t *testing.T, plugin string, nodes []string) (string, int) {
	t.Helper()
	at := map[string]int{} // the lowest percent choosing the node
	for _, id := range nodes {
		for pct := 1; pct <= 100; pct++ {
			if controlplane.RolloutChosen(id, plugin, pct) {
				at[id] = pct
				break
			}
		}
	}
	byAt := slices.SortedFunc(slices.Values(nodes), func(a, b string) int { return at[a] - at[b] })
	last, before := byAt[len(byAt)-1], byAt[len(byAt)-2]
	if at[last] == at[before] {
		t.Fatalf("%s and %s share a rollout bucket of %s (%v): name the nodes otherwise", last, before, plugin, at)
	}
	return last, at[last] - 1
}

// runsMain and runsRollout tell which of the plugin's modules served a
// reply: the main one sets request header x-swap (echoed by the upstream),
// the rollout one (fail-on-header) marks the response with its VM's id.
func runsMain(r reply) bool {
	return r.status == http.StatusOK && r.header.Get("x-echo-x-swap") == "v00" && r.header.Get("x-vm-id") == ""
}

func runsRollout(r reply) bool {
	return r.status == http.StatusOK && r.header.Get("x-echo-x-swap") == "" && len(r.header.Get("x-vm-id")) == 16
}

// expectModule polls until a reply through port is one is.
func expectModule(port int, is func(reply) bool) func() error {
	return func() error {
		r, err := get(port, "/")
		if err != nil {
			return err
		}
		if !is(r) {
			return fmt.Errorf("status %d, headers %v: not the module expected", r.status, r.header)
		}
		return nil
	}
}

// assertModules checks that every reply of the load through node's
// listener came from the main or the rollout module, and that the rollout
// module served some (when rollout) or none of them.
func (l *load) assertModules(t *testing.T, node string, rollout bool) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for name, samples := range l.samples {
		main, ro := 0, 0
		for _, s := range samples {
			switch {
			case s.err != nil:
			case runsMain(s.r):
				main++
			case runsRollout(s.r):
				ro++
			default:
				t.Errorf("%s, %s client: a reply from neither module: %d %v", node, name, s.r.status, s.r.header)
			}
		}
		t.Logf("%s, %s client: %d replies from the main module, %d from the rollout module", node, name, main, ro)
		if rollout != (ro > 0) {
			t.Errorf("%s, %s client: %d replies from the rollout module, want some: %v", node, name, ro, rollout)
		}
	}
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
