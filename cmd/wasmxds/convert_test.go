package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/wasmxds/wasmxds/internal/catalog"
	"github.com/wasmxds/wasmxds/internal/xds"
)

// convertCases are the manifests of the older kinds in the catalog's valid
// cases, one file (or directory, for a module beside the manifest) each.
var convertCases = []string{
	"filter-deployment.yaml",
	"asm-filter-deployment.yaml",
	"envoyfilter-typed.yaml",
	"envoyfilter-local/envoyfilter.yaml",
	"traffic-extension-wasm.yaml",
}

// routeSpecs give every converted plugin listeners to join, on the ports
// the cases match.
const routeSpecs = `apiVersion: wasmxds.dev/v1alpha1
kind: Cluster
metadata: {name: backend}
spec: {endpoints: ["127.0.0.1:8080"]}
---
apiVersion: wasmxds.dev/v1alpha1
kind: Listener
metadata: {name: l10000}
spec: {port: 10000, routes: [{match: {prefix: /}, cluster: backend}]}
---
apiVersion: wasmxds.dev/v1alpha1
kind: Listener
metadata: {name: l9080}
spec: {port: 9080, routes: [{match: {prefix: /}, cluster: backend}]}
---
apiVersion: wasmxds.dev/v1alpha1
kind: Listener
metadata: {name: l8080}
spec: {port: 8080, routes: [{match: {prefix: /}, cluster: backend}]}
`

// TestConvertRoundTrips converts each older manifest to WasmPlugins and
// checks that the output validates and translates, for every node its
// plugins select, to the very Envoy configuration the original does.
func TestConvertRoundTrips(t *testing.T) {
	for _, c := range convertCases {
		t.Run(c, func(t *testing.T) {
			src := filepath.Join("..", "..", "internal", "catalog", "testdata", "valid", c)
			orig := specDir(t, src)
			var out, errOut bytes.Buffer
			if err := runConvert(&out, &errOut, []string{src}); err != nil {
				t.Fatal(err)
			}
			if errOut.Len() != 0 || strings.Contains(out.String(), "# refused:") {
				t.Fatalf("valid manifest had refusals: %s\n%s", errOut.String(), out.String())
			}
			conv := t.TempDir()
			writeFile(t, filepath.Join(conv, "plugins.yaml"), out.String())
			writeFile(t, filepath.Join(conv, "routes.yaml"), routeSpecs)
			a, b := loadClean(t, orig), loadClean(t, conv)
			if strings.Contains(out.String(), "kind: FilterDeployment") || strings.Contains(out.String(), "kind: EnvoyFilter") {
				t.Fatalf("output still holds an older kind:\n%s", out.String())
			}
			if len(a.Plugins) == 0 || len(a.Plugins) != len(b.Plugins) {
				t.Fatalf("%d plugins from the original, %d converted", len(a.Plugins), len(b.Plugins))
			}
			for _, p := range a.Plugins {
				sameTranslation(t, a, b, p.Selector, out.String())
			}
		})
	}
}

// specDir copies a case (its file, and the directory's other files for a
// case in a directory) next to the route specs.
func specDir(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	srcDir := filepath.Dir(src)
	files := []string{src}
	if filepath.Base(srcDir) != "valid" {
		entries, err := os.ReadDir(srcDir)
		if err != nil {
			t.Fatal(err)
		}
		files = files[:0]
		for _, e := range entries {
			files = append(files, filepath.Join(srcDir, e.Name()))
		}
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, filepath.Base(f)), string(b))
	}
	writeFile(t, filepath.Join(dir, "routes.yaml"), routeSpecs)
	return dir
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func loadClean(t *testing.T, dir string) *catalog.State {
	t.Helper()
	st, err := catalog.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Errors) != 0 {
		t.Fatalf("%s does not validate: %v", dir, st.Errors)
	}
	return st
}

// sameTranslation translates both states for a node with the given labels,
// every plugin's module resolved alike, and compares the resources.
func sameTranslation(t *testing.T, a, b *catalog.State, labels map[string]string, converted string) {
	t.Helper()
	input := func(st *catalog.State) xds.Input {
		in := xds.Input{State: st, ModuleServerURL: "http://127.0.0.1:18080", Delivery: xds.DeliveryECDS,
			Modules: map[string]xds.PluginModule{}}
		const sum = "4ce18eaadd362c66f7d5cfcab76dc76658017e192cebb604c7c044eb4cfac15f"
		for _, p := range st.Plugins {
			in.Modules[p.Name] = xds.PluginModule{Module: &xds.Module{SHA256: sum, URL: "http://127.0.0.1:18080/modules/sha256/" + sum}}
		}
		return in
	}
	ra, pa := xds.Translate(input(a), labels)
	rb, pb := xds.Translate(input(b), labels)
	if len(pa)+len(pb) != 0 {
		t.Fatalf("translation problems: %v %v", pa, pb)
	}
	if len(ra.Listeners) == 0 || len(ra.Extensions) == 0 {
		t.Fatalf("labels %v: no listener or filter to compare", labels)
	}
	for _, pair := range [][2][]proto.Message{
		{msgs(ra.Listeners), msgs(rb.Listeners)}, {msgs(ra.Routes), msgs(rb.Routes)},
		{msgs(ra.Clusters), msgs(rb.Clusters)}, {msgs(ra.Extensions), msgs(rb.Extensions)},
	} {
		if len(pair[0]) != len(pair[1]) {
			t.Fatalf("labels %v: %d resources from the original, %d converted", labels, len(pair[0]), len(pair[1]))
		}
		for i := range pair[0] {
			if !proto.Equal(pair[0][i], pair[1][i]) {
				t.Errorf("labels %v: resource differs after conversion:\n%v\n---\n%v\nconverted:\n%s", labels, pair[0][i], pair[1][i], converted)
			}
		}
	}
}

func msgs[T proto.Message](s []T) []proto.Message {
	out := make([]proto.Message, len(s))
	for i, m := range s {
		out[i] = m
	}
	return out
}
