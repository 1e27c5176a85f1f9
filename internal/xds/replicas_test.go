package xds

import (
	"sync"
	"testing"
	"time"

	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/wasmxds/wasmxds/internal/xdstest"
)

// Two replicas with the same input; replica A then resolves a new module
// for plugin-a and goes away. Both nodes move to replica B: the one that
// runs the new module reports an extension config version B never built,
// and B hears of it; the other one's versions are B's own.
func TestMovedNodeReportsVersionReplicaNeverBuilt(t *testing.T) {
	var mu sync.Mutex
	heard := map[string]string{} // node → type
	a, addrA, _ := startServerTranslating(t, ServerOptions{}, moduleTranslate)
	b, addrB, _ := startServerTranslating(t, ServerOptions{OnUnknownVersion: func(node, typeURL, _ string) {
		mu.Lock()
		defer mu.Unlock()
		heard[node] = typeURL
	}}, moduleTranslate)
	in := testInput(8080, DeliveryECDS)
	a.Update(in)
	b.Update(in)
	clients := map[string]*xdstest.Client{}
	for node, app := range map[string]string{"ahead": "a", "same": "b"} {
		clients[node] = xdstest.Start(t, addrA, xdstest.Options{NodeID: node, Labels: map[string]string{"app": app},
			Resume: &xdstest.Resume{Addrs: []string{addrA, addrB}, Backoff: 10 * time.Millisecond}})
		clients[node].Await(t, "config from A", xdstest.Complete)
	}
	old := clients["ahead"].State().Type(resource.ExtensionConfigType).Version

	newer := testInput(8080, DeliveryECDS)
	newer.Modules = map[string]PluginModule{"plugin-a": {Module: &Module{SHA256: "bb", URL: "http://127.0.0.1:1/modules/sha256/bb"}},
		"plugin-b": in.Modules["plugin-b"]}
	a.Update(newer)
	clients["ahead"].Await(t, "the new module from A", func(s xdstest.State) bool {
		return s.Type(resource.ExtensionConfigType).Version != old
	})
	seen := map[string]int{}
	for node, c := range clients {
		seen[node] = c.State().Type(resource.ExtensionConfigType).Responses
	}

	a.Close()
	for node, c := range clients {
		// B answers the resumed stream's extension config request, which it
		// checked first.
		c.Await(t, "an answer from B", func(s xdstest.State) bool {
			return s.Type(resource.ExtensionConfigType).Responses > seen[node]
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if len(heard) != 1 || heard["ahead"] != resource.ExtensionConfigType {
		t.Errorf("B heard of unknown versions from %v, want only node ahead's extension configs", heard)
	}
}

// moduleTranslate is fakeTranslate whose extension configs differ with
// their plugin's module, as real ones do.
func moduleTranslate(in Input, labels map[string]string) (*Resources, []Problem) {
	res, problems := fakeTranslate(in, labels)
	for _, e := range res.Extensions {
		if m := in.Modules[e.Name].Module; m != nil && m.SHA256 != "aa" {
			e.TypedConfig = fxAny(&routerv3.Router{SuppressEnvoyHeaders: true})
		}
	}
	return res, problems
}
