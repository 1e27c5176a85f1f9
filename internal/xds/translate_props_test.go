package xds

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wasmxds/wasmxds/internal/catalog"
)

func allResources(res *Resources) []proto.Message {
	var all []proto.Message
	all = append(all, toMessages(res.Listeners)...)
	all = append(all, toMessages(res.Routes)...)
	all = append(all, toMessages(res.Clusters)...)
	return append(all, toMessages(res.Extensions)...)
}

// bigInput has many map-valued fields (env vars, selectors), which is where
// a non-deterministic marshal would show.
func bigInput(delivery Delivery) Input {
	st := &catalog.State{Clusters: []catalog.Cluster{{Name: "web", Endpoints: []catalog.Endpoint{{Host: "10.0.0.1", Port: 80}}}}}
	mods := map[string]PluginModule{}
	for i := range 20 {
		p := catalog.Plugin{Name: fmt.Sprintf("p%02d", i), Selector: map[string]string{"app": "web"}, Config: `{"i":1}`}
		for j := range 10 {
			p.Env = append(p.Env, catalog.EnvVar{Name: fmt.Sprintf("K%d", j), Value: fmt.Sprint(j)})
		}
		st.Plugins = append(st.Plugins, p)
		sum := fmt.Sprintf("%064x", i+1)
		mods[p.Name] = PluginModule{Module: &Module{SHA256: sum, URL: "http://127.0.0.1:18080/modules/sha256/" + sum}}
	}
	for i := range 5 {
		st.Listeners = append(st.Listeners, catalog.Listener{
			Name: fmt.Sprintf("l%d", i), Port: uint32(10000 + i),
			Routes: []catalog.Route{{Prefix: "/", Cluster: "web"}},
		})
	}
	return Input{State: st, Modules: mods, ModuleServerURL: "http://127.0.0.1:18080", Delivery: delivery}
}

// Versions are content hashes: two translations of equal input (as in two
// wasmxds replicas) must hash alike, including the bytes inside Any fields.
func TestTranslateIsDeterministic(t *testing.T) {
	for _, d := range []Delivery{DeliveryLDS, DeliveryECDS} {
		labels := map[string]string{"app": "web"}
		res, _ := Translate(bigInput(d), labels)
		want := ResourceHash(allResources(res)...)
		for range 20 {
			res, _ := Translate(bigInput(d), labels)
			if got := ResourceHash(allResources(res)...); got != want {
				t.Fatalf("%s: translation of equal input hashed %s, then %s", d, want, got)
			}
		}
	}
}

func TestTranslateLeavesInputAlone(t *testing.T) {
	in, labels := loadGolden(t, "testdata/in/ordering.yaml")
	before, _ := loadGolden(t, "testdata/in/ordering.yaml")
	Translate(in, labels)
	if !reflect.DeepEqual(in, before) {
		t.Fatal("Translate modified its input")
	}
}

func TestResourceHash(t *testing.T) {
	a, b := wrapperspb.String("a"), wrapperspb.String("b")
	if ResourceHash(a, b) != ResourceHash(wrapperspb.String("a"), wrapperspb.String("b")) {
		t.Error("equal messages hash differently")
	}
	if ResourceHash(a, b) == ResourceHash(b, a) {
		t.Error("order does not change the hash")
	}
	// An empty message encodes to no bytes: only the length prefix tells
	// these apart.
	if ResourceHash(a) == ResourceHash(a, &emptypb.Empty{}) {
		t.Error("an extra empty message does not change the hash")
	}
}

// pluginVM returns the vm_id and code sha256 of a plugin's filter in the
// first listener.
func pluginVM(t *testing.T, in Input, plugin string) (vmID, sha string) {
	t.Helper()
	res, problems := Translate(in, map[string]string{"app": "web"})
	if len(problems) > 0 {
		t.Fatalf("problems: %v", problems)
	}
	hcm, err := listenerHCM(res.Listeners[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range hcm.HttpFilters {
		if f.Name == FilterNamePrefix+plugin {
			vm := unpackWasm(f.GetTypedConfig()).GetConfig().GetVmConfig()
			return vm.GetVmId(), vm.GetCode().GetRemote().GetSha256()
		}
	}
	t.Fatalf("no filter for %s in %v", plugin, filterNames(t, res.Listeners[0]))
	return "", ""
}

// Envoy reuses a running VM when vm_id and code are unchanged: a config-only
// edit must keep the id, an env edit must change it (env is read at VM
// start), and a new module changes the code.
func TestVMIdentity(t *testing.T) {
	in := bigInput(DeliveryLDS)
	id, sha := pluginVM(t, in, "p03")

	in = bigInput(DeliveryLDS)
	p := &in.State.Plugins[3]
	p.Config, p.RootID, p.FailStrategy = `{"i":2}`, "other-root", catalog.FailOpen
	if got, _ := pluginVM(t, in, "p03"); got != id {
		t.Errorf("config-only edit changed vm_id %s → %s", id, got)
	}

	in = bigInput(DeliveryLDS)
	p = &in.State.Plugins[3]
	p.Env[0], p.Env[1] = p.Env[1], p.Env[0]
	if got, _ := pluginVM(t, in, "p03"); got != id {
		t.Errorf("reordering env changed vm_id %s → %s", id, got)
	}
	in.State.Plugins[3].Env[0].Value = "changed"
	if got, _ := pluginVM(t, in, "p03"); got == id {
		t.Errorf("env edit kept vm_id %s", id)
	}

	in = bigInput(DeliveryLDS)
	newSum := strings.Repeat("9e", 32)
	in.Modules["p03"] = PluginModule{Module: &Module{SHA256: newSum, URL: "http://127.0.0.1:18080/modules/sha256/" + newSum}}
	if gotID, gotSha := pluginVM(t, in, "p03"); gotID == id || gotSha == sha {
		t.Errorf("module change must start a new VM: vm_id %s → %s, sha256 %s → %s", id, gotID, sha, gotSha)
	}
}

// Both delivery modes must give Envoy the same filter config, except that
// ECDS asks Envoy to NACK a module it has not cached instead of warming.
func TestDeliveryModesCarrySameFilterConfig(t *testing.T) {
	labels := map[string]string{"app": "web"}
	lds, _ := Translate(bigInput(DeliveryLDS), labels)
	ecds, _ := Translate(bigInput(DeliveryECDS), labels)
	hcm, err := listenerHCM(lds.Listeners[0])
	if err != nil {
		t.Fatal(err)
	}
	inline := map[string]*wasmfilterv3.Wasm{}
	for _, f := range hcm.HttpFilters {
		w := &wasmfilterv3.Wasm{}
		if f.GetTypedConfig().UnmarshalTo(w) == nil {
			inline[f.Name] = w
		}
	}
	if len(ecds.Extensions) != 20 {
		t.Fatalf("want one extension config per plugin shared by all listeners, got %d", len(ecds.Extensions))
	}
	for _, e := range ecds.Extensions {
		w := &wasmfilterv3.Wasm{}
		if err := e.TypedConfig.UnmarshalTo(w); err != nil {
			t.Fatal(err)
		}
		if !w.Config.GetVmConfig().NackOnCodeCacheMiss {
			t.Errorf("%s: ECDS config does not NACK on a code cache miss", e.Name)
		}
		if inline[e.Name].GetConfig().GetVmConfig().GetNackOnCodeCacheMiss() {
			t.Errorf("%s: inline config NACKs on a code cache miss", e.Name)
		}
		w.Config.GetVmConfig().NackOnCodeCacheMiss = false
		if !proto.Equal(w, inline[e.Name]) {
			t.Errorf("%s: ECDS config differs from inline config", e.Name)
		}
	}
}

// With ECDS a new module or a pluginConfig edit changes only the plugin's
// extension config: listeners stay byte for byte the same, so Envoy drains
// no connection.
func TestECDSModuleSwapLeavesListenersAlone(t *testing.T) {
	labels := map[string]string{"app": "web"}
	before, _ := Translate(bigInput(DeliveryECDS), labels)
	in := bigInput(DeliveryECDS)
	newSum := strings.Repeat("9e", 32)
	in.Modules["p03"] = PluginModule{Module: &Module{SHA256: newSum, URL: "http://127.0.0.1:18080/modules/sha256/" + newSum}}
	in.State.Plugins[4].Config = `{"edited":true}`
	after, _ := Translate(in, labels)
	if ResourceHash(toMessages(before.Listeners)...) != ResourceHash(toMessages(after.Listeners)...) {
		t.Error("a module swap and a pluginConfig edit changed the listeners")
	}
	changed := 0
	for i := range before.Extensions {
		if before.Extensions[i].Name != after.Extensions[i].Name {
			t.Fatalf("extension names changed: %s → %s", before.Extensions[i].Name, after.Extensions[i].Name)
		}
		if !proto.Equal(before.Extensions[i], after.Extensions[i]) {
			changed++
		}
	}
	if changed != 2 {
		t.Errorf("%d extension configs changed, want 2 (p03 and p04)", changed)
	}
}

// A route whose cluster cannot be served answers 503 in place, instead of
// disappearing and letting a broader route catch its requests.
func TestRouteToUnservableClusterAnswers503(t *testing.T) {
	in := bigInput(DeliveryLDS)
	in.State.Listeners[0].Routes = []catalog.Route{{Prefix: "/api/", Cluster: "nope"}, {Prefix: "/", Cluster: "web"}}
	res, _ := Translate(in, map[string]string{"app": "web"})
	routes := res.Routes[0].VirtualHosts[0].Routes
	if len(routes) != 2 {
		t.Fatalf("want 2 routes, got %d", len(routes))
	}
	if dr, ok := routes[0].Action.(*routev3.Route_DirectResponse); !ok || dr.DirectResponse.Status != 503 {
		t.Errorf("route to missing cluster: %v", routes[0].Action)
	}
	for _, c := range res.Clusters {
		if c.Name == "nope" {
			t.Error("missing cluster shipped")
		}
	}
}

// BenchmarkTranslate measures one node group's translation: 5 listeners, 20
// plugins with 10 env vars each.
func BenchmarkTranslate(b *testing.B) {
	for _, d := range []Delivery{DeliveryLDS, DeliveryECDS} {
		b.Run(string(d), func(b *testing.B) {
			in, labels := bigInput(d), map[string]string{"app": "web"}
			b.ReportAllocs()
			for b.Loop() {
				Translate(in, labels)
			}
		})
	}
}

// Filters-only: a node no Listener spec selects still gets, with ECDS, the
// extension config of every plugin selecting it and the module cluster, so
// its own listeners can name wasmxds.<plugin>; with LDS there is nothing to
// put a filter in.
func TestFiltersOnlyNodeGetsExtensionsAndModuleCluster(t *testing.T) {
	in := bigInput(DeliveryECDS)
	in.State.Listeners = nil
	in.State.Plugins[7].Selector = map[string]string{"app": "other"}
	res, _ := Translate(in, map[string]string{"app": "web"})
	if len(res.Listeners) != 0 || len(res.Routes) != 0 {
		t.Fatalf("listeners or routes for a node no listener selects: %d, %d", len(res.Listeners), len(res.Routes))
	}
	if len(res.Extensions) != 19 || slices.ContainsFunc(res.Extensions, func(e *corev3.TypedExtensionConfig) bool {
		return e.Name == FilterNamePrefix+"p07"
	}) {
		t.Errorf("want the 19 plugins selecting the node, got %d", len(res.Extensions))
	}
	if len(res.Clusters) != 1 || res.Clusters[0].Name != ModuleClusterName {
		t.Errorf("want only the module cluster, got %v", res.Clusters)
	}
	lds, _ := Translate(func() Input { in.Delivery = DeliveryLDS; return in }(), map[string]string{"app": "web"})
	if len(lds.Extensions) != 0 {
		t.Errorf("LDS served %d extension configs", len(lds.Extensions))
	}
}
