package xds

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/wasmxds/wasmxds/internal/catalog"
)

// PluginListeners names the listeners whose filter chain carries each
// plugin for a node: translation puts the plugin exactly there.
func TestPluginListenersFollowTranslation(t *testing.T) {
	st := &catalog.State{
		Listeners: []catalog.Listener{
			{Name: "web", Port: 8080, Routes: []catalog.Route{{Prefix: "/", Cluster: "c"}}},
			{Name: "admin", Port: 9090, Selector: map[string]string{"role": "admin"}, Routes: []catalog.Route{{Prefix: "/", Cluster: "c"}}},
			{Name: "raw", Port: 7070, Protocol: catalog.ProtocolTCP, Cluster: "c"},
		},
		Clusters: []catalog.Cluster{{Name: "c", Endpoints: []catalog.Endpoint{{Host: "127.0.0.1", Port: 1}}}},
		Plugins: []catalog.Plugin{
			{Name: "everywhere", URL: "oci://r/a:v1"},
			{Name: "web-only", URL: "oci://r/b:v1", Ports: []uint32{8080}},
			{Name: "other-nodes", URL: "oci://r/c:v1", Selector: map[string]string{"app": "other"}},
		},
	}
	got := PluginListeners(st, map[string]string{"role": "admin"})
	want := map[string][]string{"everywhere": {"web", "admin"}, "web-only": {"web"}}
	if !maps.EqualFunc(got, want, slices.Equal[[]string]) {
		t.Fatalf("PluginListeners = %v, want %v", got, want)
	}
	res, problems := Translate(Input{State: st, Delivery: DeliveryECDS, ModuleServerURL: "http://127.0.0.1:1",
		Modules: map[string]PluginModule{"everywhere": {Module: &Module{SHA256: strings.Repeat("a", 64), URL: "http://127.0.0.1:1/m"}},
			"web-only": {Module: &Module{SHA256: strings.Repeat("b", 64), URL: "http://127.0.0.1:1/m"}}}}, map[string]string{"role": "admin"})
	if len(problems) > 0 || len(res.Listeners) != 3 {
		t.Fatalf("translation: %d listeners, problems %v", len(res.Listeners), problems)
	}
	carried := map[string][]string{}
	for _, l := range res.Listeners {
		if l.Name == "raw" {
			continue // TCP: no HTTP filters
		}
		for _, name := range filterNames(t, l) {
			if p, ok := EcdsPluginName(name); ok {
				carried[p] = append(carried[p], l.Name)
			}
		}
	}
	for p := range carried {
		slices.Sort(carried[p])
	}
	for p := range want {
		slices.Sort(want[p])
	}
	if !maps.EqualFunc(carried, want, slices.Equal[[]string]) {
		t.Errorf("translation put plugins on %v, PluginListeners says %v", carried, want)
	}
}
