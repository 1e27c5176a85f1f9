package xds

// Nodes that come to a server already running configs: from another
// replica, or back after a restart before its first Update (held.go).

import (
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/wasmxds/wasmxds/internal/xdstest"
)

// awaitModuleBAsASwap waits until the node holds plugin p's module b (see
// deliveryInput), and checks it came as a swap: a node that runs the
// plugin must be asked to NACK a module it has not cached.
func awaitModuleBAsASwap(t *testing.T, c *xdstest.Client) {
	t.Helper()
	c.Await(t, "module b from B", func(s xdstest.State) bool { return strings.Contains(heldURL(t, s), strings.Repeat("b", 64)) })
	if !heldNackOnMiss(t, c.State()) {
		t.Errorf("B sent the node its next module as a first module (no nack_on_code_cache_miss)")
	}
}

// heldNackOnMiss is whether plugin p's config the fake Envoy holds asks
// Envoy to NACK a module it has not cached.
func heldNackOnMiss(t *testing.T, s xdstest.State) bool {
	t.Helper()
	a := s.Type(resource.ExtensionConfigType).Resource(FilterNamePrefix + "p")
	ext := &corev3.TypedExtensionConfig{}
	w := &wasmfilterv3.Wasm{}
	if a == nil || a.UnmarshalTo(ext) != nil || ext.GetTypedConfig().UnmarshalTo(w) != nil {
		return false
	}
	return w.GetConfig().GetVmConfig().GetNackOnCodeCacheMiss()
}

// onReplicaA starts replicas A (with module a for plugin p) and B (with no
// Input yet) and a node on A that resumes on B when A goes, once it holds
// module a.
func onReplicaA(t *testing.T, nodeID string, delta bool) (a, b *Server, c *xdstest.Client) {
	t.Helper()
	a, addrA, _ := startServerTranslating(t, ServerOptions{}, Translate)
	b, addrB, _ := startServerTranslating(t, ServerOptions{}, Translate)
	a.Update(deliveryInput("a"))
	c = xdstest.Start(t, addrA, xdstest.Options{NodeID: nodeID, Delta: delta,
		Resume: &xdstest.Resume{Addrs: []string{addrA, addrB}, Backoff: 10 * time.Millisecond}})
	c.Await(t, "module a from A", func(s xdstest.State) bool { return strings.Contains(heldURL(t, s), strings.Repeat("a", 64)) })
	// Every type held too: a response still on its way would otherwise
	// arrive after the test took what the node holds.
	c.Await(t, "the whole configuration from A", xdstest.Complete)
	return a, b, c
}

// A node that moves to another replica already runs the plugin there: its
// next module is a swap Envoy must confirm (nack_on_code_cache_miss), not
// a first module fetched in the background, although this replica never
// saw the node run it.
func TestNodeFromAnotherReplicaGetsSwaps(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			a, b, c := onReplicaA(t, "mover", m.delta)
			b.Update(deliveryInput("a"))
			if heldNackOnMiss(t, c.State()) {
				t.Fatalf("a first module was sent as a swap")
			}
			// B resolved the next module first; the node moves to it.
			b.Update(deliveryInput("b"))
			a.Close()
			awaitModuleBAsASwap(t, c)
		})
	}
}

// A node that moves to a replica serving the same input is sent nothing
// new (identical versions), and its next module there is still a swap.
func TestMovedNodeKeepsItsConfigAndSwapsLater(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			a, b, c := onReplicaA(t, "mover", m.delta)
			b.Update(deliveryInput("a"))
			settle(t, a, c) // all A sends it
			held, seen := c.State(), len(c.Responses())
			before := held.Type(resource.ExtensionConfigType)
			a.Close()
			waitStatus(t, b, "mover", func(n NodeStatus) bool { return n.Types[resource.ListenerType].Acked != "" || m.delta })
			settle(t, b, c) // what B would send on the new stream
			sentOnlyHeld(t, c, held, seen)
			if after := c.State().Type(resource.ExtensionConfigType); after.Version != before.Version && !m.delta {
				t.Errorf("moving to B changed the extension config version %s → %s", before.Version, after.Version)
			} else if heldNackOnMiss(t, c.State()) {
				t.Errorf("moving to B changed the extension config (now a swap of the module it runs)")
			}
			b.Update(deliveryInput("b"))
			awaitModuleBAsASwap(t, c)
		})
	}
}

// A node that reaches a server before its first Update (a restart) and
// runs what that Update builds is sent nothing new for its plugins.
func TestNodeBeforeFirstUpdateKeepsItsConfig(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			a, b, c := onReplicaA(t, "early", m.delta)
			settle(t, a, c) // all A sends it
			held, seen := c.State(), len(c.Responses())
			before := held.Type(resource.ExtensionConfigType)
			responses := map[string]int{}
			for _, typeURL := range []string{resource.ClusterType, resource.ListenerType, resource.ExtensionConfigType} {
				responses[typeURL] = c.State().Type(typeURL).Responses
			}
			a.Close()
			// The node reaches B, which has no Input yet, and reports
			// what it runs.
			waitFor(t, "the node's report on B", func() bool {
				b.mu.Lock()
				defer b.mu.Unlock()
				g := b.groups[nodeGroupKey("early", nil)]
				return g != nil && len(g.pendingHeld) > 0
			})
			b.Update(deliveryInput("a"))
			if !m.delta {
				// A state-of-the-world node is answered on its new stream
				// for every type, though it already holds the versions.
				for typeURL, n := range responses {
					c.Await(t, "an answer from B for "+typeURL, func(s xdstest.State) bool { return s.Type(typeURL).Responses > n })
				}
			}
			settle(t, b, c) // anything else B would send
			sentOnlyHeld(t, c, held, seen)
			after := c.State().Type(resource.ExtensionConfigType)
			if (!m.delta && after.Version != before.Version) || heldNackOnMiss(t, c.State()) {
				t.Errorf("B changed the extension config of a node running what it builds: %s → %s (nack on miss %v)",
					before.Version, after.Version, heldNackOnMiss(t, c.State()))
			}
			b.Update(deliveryInput("b"))
			awaitModuleBAsASwap(t, c)
		})
	}
}

// sentOnlyHeld checks that every response the client got after its first
// seen ones carries the version of its type the client held (in held):
// the server it moved to sent it nothing new, not even for a while.
func sentOnlyHeld(t *testing.T, c *xdstest.Client, held xdstest.State, seen int) {
	t.Helper()
	for _, r := range c.Responses()[seen:] {
		if want := held.Type(r.TypeURL).Version; r.Version != want {
			t.Errorf("after the move the node was sent %s version %s, it held %s", typeLabel(r.TypeURL), r.Version, want)
		}
	}
}
