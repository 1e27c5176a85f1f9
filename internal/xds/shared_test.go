package xds

import (
	"strings"
	"sync"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/wasmxds/wasmxds/internal/xdstest"
)

// modulesSeen records every module URL a client was sent for plugin p.
type modulesSeen struct {
	mu   sync.Mutex
	urls []string
}

func (m *modulesSeen) record(_ *xdstest.Client, r *xdstest.Response, resources []*anypb.Any) {
	if r.TypeURL != resource.ExtensionConfigType {
		return
	}
	for _, a := range resources {
		ext := &corev3.TypedExtensionConfig{}
		w := &wasmfilterv3.Wasm{}
		if a.UnmarshalTo(ext) != nil || ext.GetName() != FilterNamePrefix+"p" || ext.GetTypedConfig().UnmarshalTo(w) != nil {
			continue
		}
		m.mu.Lock()
		m.urls = append(m.urls, w.GetConfig().GetVmConfig().GetCode().GetRemote().GetHttpUri().GetUri())
		m.mu.Unlock()
	}
}

func (m *modulesSeen) saw(sha string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, u := range m.urls {
		if strings.Contains(u, sha) {
			return true
		}
	}
	return false
}

// A module a node refused on replica A, carried to replica B as A's
// LabelSetRefusals, is held back by B from its nodes of that label set: a
// node already running it goes back to the last good module, a node that
// connects later is never sent it, and a node of another label set keeps
// it. B takes the refusal only once it serves the module itself, and only
// once.
func TestRefusalsCarriedToAnotherReplica(t *testing.T) {
	a, addrA, _ := startServerTranslating(t, ServerOptions{}, Translate)
	b, addrB, _ := startServerTranslating(t, ServerOptions{}, Translate)
	modA, modB := strings.Repeat("a", 64), strings.Repeat("b", 64)
	holds := func(sha string) func(xdstest.State) bool {
		return func(s xdstest.State) bool { return strings.Contains(heldURL(t, s), sha) }
	}
	web, other := map[string]string{"app": "web"}, map[string]string{"app": "other"}
	a.Update(deliveryInput("a"))
	b.Update(deliveryInput("a"))

	rej := &xdstest.Rejecter{}
	refuser := xdstest.Start(t, addrA, xdstest.Options{NodeID: "a-web", Labels: web, NACK: rej.Decide})
	early := xdstest.Start(t, addrB, xdstest.Options{NodeID: "b-web", Labels: web})
	elsewhere := xdstest.Start(t, addrB, xdstest.Options{NodeID: "b-other", Labels: other})
	for _, c := range []*xdstest.Client{refuser, early, elsewhere} {
		c.Await(t, "module a", holds(modA))
	}
	rej.RejectNextN(resource.ExtensionConfigType, envoyCreateFailure, 1+failAfterDownload)
	a.ModuleServed(modB, "127.0.0.1:40000")
	a.Update(deliveryInput("b"))
	stepStatus(t, a, "a-web", func(n NodeStatus) bool { return pluginState(n).State == PluginFailed })
	refused := a.LabelSetRefusals()
	if got := refused[GroupKey(web)]["p"]; len(refused) != 1 || len(got) != 1 || got[0] != modB {
		t.Fatalf("A's label set refusals = %v, want module b of p for %s", refused, GroupKey(web))
	}

	if n := b.AddRefusals(refused); n != 0 {
		t.Errorf("B took %d refusals of a module it does not serve, want 0", n)
	}
	b.ModuleServed(modB, "127.0.0.1:40001")
	b.Update(deliveryInput("b"))
	for _, c := range []*xdstest.Client{early, elsewhere} {
		c.Await(t, "module b from B", holds(modB))
	}
	if n := b.AddRefusals(refused); n != 1 {
		t.Errorf("B took %d refusals of the module it now serves, want 1", n)
	}
	if n := b.AddRefusals(refused); n != 0 {
		t.Errorf("B took the same refusal again (%d new)", n)
	}
	early.Await(t, "module a again, from B", holds(modA))

	var seen modulesSeen
	late := xdstest.Start(t, addrB, xdstest.Options{NodeID: "b-web-late", Labels: web, OnResponse: seen.record})
	late.Await(t, "module a", holds(modA))
	if seen.saw(modB) {
		t.Errorf("a node of the refusing label set that connected to B later was sent module b: %v", seen.urls)
	}
	if got := heldURL(t, elsewhere.State()); !strings.Contains(got, modB) {
		t.Errorf("a node of another label set holds %s, want module b", got)
	}
	if got := b.LabelSetRefusals(); len(got[GroupKey(web)]["p"]) != 1 || len(got) != 1 {
		t.Errorf("B's label set refusals = %v, want A's, which B publishes in turn", got)
	}
}
