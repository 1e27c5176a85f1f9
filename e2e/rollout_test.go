package e2e

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wasmxds/wasmxds/internal/controlplane"
)

// rolloutStatus is a plugin's rollout and node counts in /debug/status.
type rolloutStatus struct {
	Name    string `json:"name"`
	SHA256  string `json:"sha256"`
	Rollout *struct {
		State  string `json:"state"`
		SHA256 string `json:"sha256"`
		Halted *struct {
			Node    string `json:"node"`
			Reason  string `json:"reason"`
			Replica string `json:"replica"`
		} `json:"halted"`
	} `json:"rollout"`
	Modules []moduleCount `json:"modules"`
}

// moduleCount is how many nodes run one module of a plugin.
type moduleCount struct {
	SHA256  string `json:"sha256"`
	Rollout bool   `json:"rollout"`
	Running int    `json:"running"`
}

func pluginRollout(s *server, name string) (rolloutStatus, error) {
	var st struct {
		Plugins []rolloutStatus `json:"plugins"`
	}
	if err := s.get("/debug/status", &st); err != nil {
		return rolloutStatus{}, err
	}
	for _, p := range st.Plugins {
		if p.Name == name {
			return p, nil
		}
	}
	return rolloutStatus{}, fmt.Errorf("plugin %s not in /debug/status", name)
}

// rolloutNodes returns n node ids of which a 50% rollout of plugin chooses
// exactly half, so that "the right share" is a count.
func rolloutNodes(plugin string, n int) (ids []string, chosen map[string]bool) {
	chosen = map[string]bool{}
	var in, out []string
	for i := 0; len(in) < n/2 || len(out) < n-n/2; i++ {
		id := fmt.Sprintf("fleet-%d", i)
		if controlplane.RolloutChosen(id, plugin, 50) {
			in = append(in, id)
		} else {
			out = append(out, id)
		}
	}
	in, out = in[:n/2], out[:n-n/2]
	for _, id := range in {
		chosen[id] = true
	}
	return append(in, out...), chosen
}

// TestProgressiveRollout runs four real Envoys, each with a listener of its
// own, and one plugin selecting all of them (with LDS delivery: only that
// the rollout is refused as unsupported and changes nothing). A rollout of v01 at 50% reaches
// exactly the two nodes the hash chooses, and status counts them. A module
// whose VM refuses to start, rolled out next under steady traffic, is
// refused by the chosen nodes: the rollout halts by itself, status and the
// metric say so and name the node, every node goes back to the plugin's
// url, and no request fails anywhere.
func TestProgressiveRollout(t *testing.T) {
	requireFull(t)
	for _, delivery := range []string{"ecds", "lds"} {
		t.Run(delivery, func(t *testing.T) { progressiveRollout(t, delivery) })
	}
}

func progressiveRollout(t *testing.T, delivery string) {
	mods := smallSwapModules(t, "filters/rollout-"+delivery, 2)
	bad := filepath.Join(repoRoot(), "e2e/testdata/vm-start-fails.wasm")
	if _, err := shared.registry.pushWasmxds(nil, bad, "filters/rollout-"+delivery+":broken"); err != nil {
		t.Fatal(err)
	}
	ids, chosen := rolloutNodes("canary", 4)
	up := startUpstream(t)
	ports := map[string]int{}
	p := plugin{name: "canary", url: oci(mods[0].ref)}
	srv := startServerWith(t, serverOptions{delivery: delivery}, func(s *server) {
		var base []string
		for _, id := range ids {
			ports[id] = freePort(t)
			base = append(base, listenerSpec(id, id, ports[id], "fleet-upstream"))
		}
		s.writeSpec(baseSpecFile, docs(append(base, clusterSpec("fleet-upstream", up))...))
		s.writeSpec(pluginFile, p.spec())
	})
	for _, id := range ids {
		startEnvoy(t, srv, id, map[string]string{"app": id})
	}
	expectAll := func(what string, want func(id string) string) {
		t.Helper()
		for _, id := range ids {
			eventually(t, applyTimeout, steady(steadyReplies, expectEcho(ports[id], "x-swap", want(id))))
		}
	}
	expectAll("v00 everywhere", func(string) string { return "v00" })

	// v01 to half the fleet: the nodes the hash chooses, and only those.
	p.rollout = map[string]any{"url": oci(mods[1].ref), "percent": 50}
	srv.writeSpec(pluginFile, p.spec())
	if delivery == "lds" {
		// Envoy accepts a listener whose module then fails to start, so
		// nothing could halt a rollout: it is not applied, and says why.
		eventually(t, applyTimeout, func() error {
			st, err := pluginRollout(srv, "canary")
			if err != nil {
				return err
			}
			if st.Rollout == nil || st.Rollout.State != "unsupported" {
				return fmt.Errorf("rollout %+v, want unsupported with LDS delivery", st.Rollout)
			}
			return nil
		})
		time.Sleep(time.Second) // what a push would have changed by now
		expectAll("v00 everywhere", func(string) string { return "v00" })
		return
	}
	expectAll("v01 on the chosen half", func(id string) string {
		if chosen[id] {
			return "v01"
		}
		return "v00"
	})
	eventually(t, applyTimeout, func() error {
		st, err := pluginRollout(srv, "canary")
		if err != nil {
			return err
		}
		if st.Rollout == nil || st.Rollout.State != "active" {
			return fmt.Errorf("rollout %+v, want active", st.Rollout)
		}
		running := map[bool]int{}
		for _, m := range st.Modules {
			running[m.Rollout] += m.Running
		}
		if running[true] != 2 || running[false] != 2 {
			return fmt.Errorf("nodes running the rollout / main module: %d / %d, want 2 / 2 (%+v)",
				running[true], running[false], st.Modules)
		}
		return nil
	})

	// A module that fails to start in Envoy, rolled out under traffic.
	loads := map[string]*load{}
	for _, id := range ids {
		loads[id] = startLoad(t, ports[id])
		t.Cleanup(loads[id].stop)
	}
	time.Sleep(300 * time.Millisecond) // traffic from before the edit
	start := time.Now()
	p.rollout = map[string]any{"url": oci("filters/rollout-" + delivery + ":broken"), "percent": 50}
	srv.writeSpec(pluginFile, p.spec())
	var halted rolloutStatus
	eventually(t, 30*time.Second, func() error {
		st, err := pluginRollout(srv, "canary")
		if err != nil {
			return err
		}
		if st.Rollout == nil || st.Rollout.State != "halted" || st.Rollout.Halted == nil {
			var nacks []string
			if full, err := debugStatus(srv); err == nil {
				for _, n := range full.Nodes {
					if n.LastNack != nil {
						nacks = append(nacks, n.ID+": "+n.LastNack.Error)
					}
				}
			}
			return fmt.Errorf("rollout %+v, want halted; NACKs: %q", st.Rollout, nacks)
		}
		halted = st
		return nil
	})
	t.Logf("halted %s after the edit: node %s: %s", time.Since(start).Round(time.Millisecond),
		halted.Rollout.Halted.Node, halted.Rollout.Halted.Reason)
	if !chosen[halted.Rollout.Halted.Node] {
		t.Errorf("halted by %s, which the rollout did not choose", halted.Rollout.Halted.Node)
	}
	if want := fileSHA256(t, bad); halted.Rollout.SHA256 != want {
		t.Errorf("halted rollout module %s, want the broken one %s", halted.Rollout.SHA256, want)
	}
	eventually(t, 10*time.Second, func() error {
		return metricAtLeast(srv, `wasmxds_rollout_state{plugin="canary",state="halted"}`, 1)
	})
	// Chosen nodes go back to the plugin's url.
	expectAll("v00 everywhere after the halt", func(string) string { return "v00" })
	time.Sleep(300 * time.Millisecond)
	for _, id := range ids {
		loads[id].stop()
	}
	for _, id := range ids {
		loads[id].assertNoFailures(t)
		if chosen[id] {
			continue
		}
		// The nodes that kept v00 never ran anything else.
		for name := range loadClients {
			c := loads[id].summary(name, 0, start, func(r reply) bool { return r.header.Get("x-echo-x-swap") == "v00" })
			if c.consecutiveNew != c.requests {
				t.Errorf("%s (not chosen), %s client: %d of %d requests showed v00", id, name, c.consecutiveNew, c.requests)
			}
		}
	}
	eventually(t, 10*time.Second, func() error {
		st, err := pluginRollout(srv, "canary")
		if err != nil {
			return err
		}
		if i := slices.IndexFunc(st.Modules, func(m moduleCount) bool { return m.SHA256 == st.SHA256 }); i < 0 ||
			st.Modules[i].Running != len(ids) {
			plugins := map[string]map[string]nodePlugin{}
			for _, id := range ids {
				plugins[id], _ = nodePlugins(srv, id)
			}
			return fmt.Errorf("after the halt, modules %+v, want all %d nodes running %s; nodes: %+v",
				st.Modules, len(ids), st.SHA256, plugins)
		}
		return nil
	})
	if !strings.Contains(halted.Rollout.Halted.Reason, "VM") {
		t.Errorf("halt reason %q does not say the VM failed", halted.Rollout.Halted.Reason)
	}
}
