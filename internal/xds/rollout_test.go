package xds

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/wasmxds/wasmxds/internal/xdstest"
)

// The bucket is part of the contract between replicas and across upgrades:
// a changed hash would move nodes between modules when a replica is
// upgraded (the control plane's choice of buckets is pinned with it, in
// controlplane). These values pin it.
func TestRolloutBucketsArePinned(t *testing.T) {
	// Computed apart from this code, with Python:
	//   int.from_bytes(hashlib.sha256(id.encode()).digest()[:8], "big") % 100
	pinned := map[string]int{"envoy-1": 67, "edge-eu-7": 33, "sidecar.default.pod-3": 74}
	for id, want := range pinned {
		if got := NodeBucket(id); got != want {
			t.Errorf("NodeBucket(%q) = %d, want %d: the rollout hash changed, so upgraded replicas "+
				"would choose other nodes than the rest of the fleet", id, got, want)
		}
	}
}

func TestBucketsHoldWhatIsAdded(t *testing.T) {
	var b Buckets
	for _, n := range []int{0, 63, 64, 99, -1, 100} {
		b.Add(n)
	}
	for n := -1; n <= 100; n++ {
		want := n == 0 || n == 63 || n == 64 || n == 99
		if b.Has(n) != want {
			t.Errorf("Has(%d) = %v, want %v", n, b.Has(n), want)
		}
	}
}

// below is the set of buckets under n: a rollout reaching n% of the fleet.
func below(n int) Buckets {
	var b Buckets
	for i := range n {
		b.Add(i)
	}
	return b
}

// chosenBelow reports whether a node is in a rollout to below(n).
func chosenBelow(nodeID string, n int) bool { return NodeBucket(nodeID) < n }

// rolloutInput is deliveryInput("a") with plugin p rolling module b out
// to the buckets under pct.
func rolloutInput(pct int) Input {
	in := deliveryInput("a")
	b := strings.Repeat("b", 64)
	in.Rollouts = map[string]Rollout{"p": {Module: &Module{SHA256: b, URL: "http://127.0.0.1:1/modules/sha256/" + b}, Buckets: below(pct)}}
	return in
}

// nodesBothSides returns node ids of which some a rollout to the buckets
// under 50 chooses and some it does not.
func nodesBothSides(t *testing.T, n int) []string {
	t.Helper()
	ids := make([]string, n)
	chosen := 0
	for i := range ids {
		ids[i] = fmt.Sprintf("node-%d", i)
		if chosenBelow(ids[i], 50) {
			chosen++
		}
	}
	if chosen == 0 || chosen == n {
		t.Fatalf("test nodes all on one side of a 50%% rollout (%d of %d chosen)", chosen, n)
	}
	return ids
}

// Nodes of one label set get the rollout module exactly when the rollout
// takes their bucket; a rollout withdrawn (halted) sends them back.
func TestRolloutSendsModuleToChosenNodesOnly(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			srv, addr, _ := startServerTranslating(t, ServerOptions{}, Translate)
			srv.Update(rolloutInput(50))
			ids := nodesBothSides(t, 8)
			clients := map[string]*xdstest.Client{}
			for _, id := range ids {
				clients[id] = xdstest.Start(t, addr, xdstest.Options{NodeID: id, Delta: m.delta})
			}
			for id, c := range clients {
				want := strings.Repeat("a", 64)
				if chosenBelow(id, 50) {
					want = strings.Repeat("b", 64)
				}
				c.Await(t, "module "+want[:8], func(s xdstest.State) bool { return strings.Contains(heldURL(t, s), want) })
			}
			srv.Update(deliveryInput("a"))
			for _, c := range clients {
				c.Await(t, "module a back", func(s xdstest.State) bool {
					return strings.Contains(heldURL(t, s), strings.Repeat("a", 64))
				})
			}
		})
	}
}

// A chosen node that refuses the rollout module is reported with the
// module, so that the control plane can halt the rollout; the other nodes
// never see the module.
func TestRefusedRolloutModuleIsReported(t *testing.T) {
	type failure struct{ node, plugin, sha string }
	var mu sync.Mutex
	var failures []failure
	srv, addr, _ := startServerTranslating(t, ServerOptions{OnModuleRefused: func(node, plugin, sha, _ string) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, failure{node, plugin, sha})
	}}, Translate)
	srv.Update(deliveryInput("a"))
	ids := nodesBothSides(t, 6)
	clients := map[string]*xdstest.Client{}
	var chosen string
	for _, id := range ids {
		rej := &xdstest.Rejecter{}
		if chosenBelow(id, 50) && chosen == "" {
			chosen = id
		}
		opts := xdstest.Options{NodeID: id, NACK: rej.Decide}
		clients[id] = xdstest.Start(t, addr, opts)
		clients[id].Await(t, "module a", func(s xdstest.State) bool { return strings.Contains(heldURL(t, s), strings.Repeat("a", 64)) })
		if id == chosen {
			rej.RejectNextN(resource.ExtensionConfigType, "Unable to create Wasm plugin p", 1+failAfterDownload)
		}
	}
	b := strings.Repeat("b", 64)
	srv.ModuleServed(b, "127.0.0.1:40000")
	srv.Update(rolloutInput(50))
	stepUntil(t, srv, "the refusal to be reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(failures) > 0
	})
	mu.Lock()
	if len(failures) != 1 || failures[0] != (failure{chosen, "p", b}) {
		t.Errorf("failures = %+v, want only %s refusing p's module %s", failures, chosen, b[:8])
	}
	mu.Unlock()
	for id, c := range clients {
		if !chosenBelow(id, 50) && strings.Contains(heldURL(t, c.State()), b) {
			t.Errorf("%s was not chosen and got the rollout module", id)
		}
	}
}

// A NACK of the extension config itself (not a module that failed to
// load) that names the plugin is reported for the module it carried.
func TestRejectedExtensionConfigIsReported(t *testing.T) {
	type failure struct{ node, plugin, sha, reason string }
	var mu sync.Mutex
	var failures []failure
	srv, addr, _ := startServerTranslating(t, ServerOptions{OnModuleRefused: func(node, plugin, sha, reason string) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, failure{node, plugin, sha, reason})
	}}, Translate)
	srv.Update(deliveryInput("a"))
	rej := &xdstest.Rejecter{}
	c := xdstest.Start(t, addr, xdstest.Options{NodeID: "n", NACK: rej.Decide})
	c.Await(t, "module a", func(s xdstest.State) bool { return strings.Contains(heldURL(t, s), strings.Repeat("a", 64)) })
	msg := "Error updating extension config wasmxds.p: proto constraint validation failed"
	rej.RejectNext(resource.ExtensionConfigType, msg)
	srv.Update(deliveryInput("b"))
	waitFor(t, "the rejection to be reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(failures) > 0
	})
	mu.Lock()
	defer mu.Unlock()
	if f := failures[0]; len(failures) != 1 || f.node != "n" || f.plugin != "p" || f.sha != strings.Repeat("b", 64) ||
		!strings.Contains(f.reason, msg) {
		t.Errorf("failures = %+v, want n rejecting p's module b with Envoy's message", failures)
	}
}

// idsInOtherBuckets returns n node ids in n different rollout buckets.
func idsInOtherBuckets(n int) []string {
	seen := map[int]bool{}
	var ids []string
	for i := 0; len(ids) < n; i++ {
		id := fmt.Sprintf("sib-%d", i)
		if b := NodeBucket(id); !seen[b] {
			seen[b] = true
			ids = append(ids, id)
		}
	}
	return ids
}

// A module one node refused is refused for its whole label set, whatever
// the nodes' rollout buckets: the other nodes go back to the last good
// module, and a node that connects later never gets the refused one.
func TestRefusalReachesTheWholeLabelSet(t *testing.T) {
	srv, addr, _ := startServerTranslating(t, ServerOptions{}, Translate)
	srv.Update(deliveryInput("a"))
	ids := idsInOtherBuckets(3)
	a, b := strings.Repeat("a", 64), strings.Repeat("b", 64)
	rej := &xdstest.Rejecter{}
	refuser := xdstest.Start(t, addr, xdstest.Options{NodeID: ids[0], NACK: rej.Decide})
	other := xdstest.Start(t, addr, xdstest.Options{NodeID: ids[1]})
	for _, c := range []*xdstest.Client{refuser, other} {
		c.Await(t, "module a", func(s xdstest.State) bool { return strings.Contains(heldURL(t, s), a) })
	}
	rej.RejectNextN(resource.ExtensionConfigType, envoyCreateFailure, 1+failAfterDownload)
	srv.ModuleServed(b, "127.0.0.1:40000")
	srv.Update(deliveryInput("b"))
	stepStatus(t, srv, ids[0], func(n NodeStatus) bool { return pluginState(n).State == PluginFailed })
	other.Await(t, "module a again", func(s xdstest.State) bool { return strings.Contains(heldURL(t, s), a) })
	late := xdstest.Start(t, addr, xdstest.Options{NodeID: ids[2]})
	late.Await(t, "a config", func(s xdstest.State) bool { return heldURL(t, s) != "" })
	if got := heldURL(t, late.State()); !strings.Contains(got, a) {
		t.Errorf("a node connecting after the refusal got %s, want the last good module a", got)
	}
}

// A node the rollout chooses that never ran the plugin is sent the main
// module first and the rollout module as a swap, which Envoy confirms
// before applying it.
func TestFreshChosenNodeStartsOnTheMainModule(t *testing.T) {
	srv, addr, _ := startServerTranslating(t, ServerOptions{}, Translate)
	srv.Update(rolloutInput(100))
	var mu sync.Mutex
	var versions []string
	c := xdstest.Start(t, addr, xdstest.Options{NodeID: "fresh", NACK: func(r *xdstest.Response) error {
		if r.TypeURL == resource.ExtensionConfigType {
			mu.Lock()
			versions = append(versions, r.Version)
			mu.Unlock()
		}
		return nil
	}})
	b := strings.Repeat("b", 64)
	c.Await(t, "the rollout module", func(s xdstest.State) bool { return strings.Contains(heldURL(t, s), b) })
	mu.Lock()
	first := versions[0]
	mu.Unlock()
	srv.mu.Lock()
	g := srv.groups[nodeGroupKey("fresh", nil)]
	sha := g.ecds[first]["p"].sha
	srv.mu.Unlock()
	if sha != strings.Repeat("a", 64) {
		t.Errorf("the first extension config carried module %.8s, want the main module a", sha)
	}
}

// Envoy's NACK text is redacted before it is kept or reported.
func TestNackDetailIsRedacted(t *testing.T) {
	var mu sync.Mutex
	var reasons []string
	srv, addr, _ := startServerTranslating(t, ServerOptions{
		Redact: func(s string) string { return strings.ReplaceAll(s, "hunter2", "[redacted]") },
		OnModuleRefused: func(_, _, _, reason string) {
			mu.Lock()
			defer mu.Unlock()
			reasons = append(reasons, reason)
		}}, Translate)
	srv.Update(deliveryInput("a"))
	rej := &xdstest.Rejecter{}
	c := xdstest.Start(t, addr, xdstest.Options{NodeID: "n", NACK: rej.Decide})
	c.Await(t, "module a", func(s xdstest.State) bool { return heldURL(t, s) != "" })
	rej.RejectNext(resource.ExtensionConfigType, `wasmxds.p: bad config {"token":"hunter2"}`)
	srv.Update(deliveryInput("b"))
	n := waitStatus(t, srv, "n", func(n NodeStatus) bool { return n.LastNack != nil })
	if strings.Contains(n.LastNack.Error, "hunter2") || !strings.Contains(n.LastNack.Error, "[redacted]") {
		t.Errorf("last NACK kept %q", n.LastNack.Error)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reasons) != 1 || strings.Contains(reasons[0], "hunter2") {
		t.Errorf("reported reasons %q", reasons)
	}
}
