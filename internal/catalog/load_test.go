package catalog

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// writeFiles creates files (slash paths → content) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for rel, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func mustLoad(t *testing.T, dir string) *State {
	t.Helper()
	st, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// The two manifests come from Istio users' bug reports; they must load as
// written and give exactly this IR.
func TestIstioUserManifestsLoadUnchanged(t *testing.T) {
	st := mustLoad(t, filepath.Join("testdata", "valid"))
	byName := map[string]Plugin{}
	for _, p := range st.Plugins {
		byName[p.Name] = p
	}
	want := []Plugin{{
		Name:         "gowasm",
		Source:       Source{File: "istio-httpbin.yaml", Line: 1},
		APIVersion:   IstioAPIVersion,
		Selector:     map[string]string{"app": "httpbin"},
		URL:          "oci://registry.cn-hangzhou.aliyuncs.com/hallywang/gowasm:20230530181612",
		PullPolicy:   PullIfNotPresent,
		Config:       `{"listconfig":["abc","def"],"testConfig":"abcddeeeee"}`,
		Phase:        PhaseUnspecified,
		FailStrategy: FailClose,
	}, {
		Name:         "header-logger",
		Source:       Source{File: "istio-productpage.yaml", Line: 1},
		APIVersion:   IstioAPIVersion,
		Selector:     map[string]string{"app": "productpage"},
		URL:          "file:///etc/wasm/header-logger/istio_wasm_demo.wasm",
		PullPolicy:   PullIfNotPresent,
		Config:       `{"log_level":"info"}`,
		Phase:        PhaseAuthz,
		FailStrategy: FailClose,
	}}
	for _, w := range want {
		if got := byName[w.Name]; !reflect.DeepEqual(got, w) {
			t.Errorf("plugin %s:\n got %+v\nwant %+v", w.Name, got, w)
		}
	}
}

func TestWholeValidDirectoryLoadsWithoutErrors(t *testing.T) {
	st := mustLoad(t, filepath.Join("testdata", "valid"))
	if len(st.Errors) != 0 {
		t.Fatalf("errors: %v", st.Errors)
	}
	// Hidden files and ConfigMap internals are not loaded a second time.
	for _, c := range st.Clusters {
		if strings.Contains(c.Source.File, "..") || strings.Contains(c.Source.File, "/.") {
			t.Errorf("cluster %s loaded from hidden path %s", c.Name, c.Source.File)
		}
	}
}

func TestPluginsSortByPhaseThenPriorityThenName(t *testing.T) {
	dir := t.TempDir()
	plugin := func(name, extra string) string {
		return "apiVersion: wasmxds.dev/v1alpha1\nkind: WasmPlugin\nmetadata: {name: " + name +
			"}\nspec:\n  url: oci://r.local/x:v1\n" + extra + "---\n"
	}
	writeFiles(t, dir, map[string]string{"p.yaml": plugin("z-none", "") + plugin("b-stats", "  phase: STATS\n") +
		plugin("a-stats", "  phase: STATS\n") + plugin("c-stats-hi", "  phase: STATS\n  priority: 5\n") +
		plugin("y-authz", "  phase: AUTHZ\n  priority: -1\n") + plugin("x-authn", "  phase: AUTHN\n")})
	var names []string
	for _, p := range mustLoad(t, dir).Plugins {
		names = append(names, p.Name)
	}
	want := []string{"x-authn", "y-authz", "c-stats-hi", "a-stats", "b-stats", "z-none"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("order %v, want %v", names, want)
	}
}

func TestBadDocumentDoesNotBlockOthers(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"a.yaml": "apiVersion: wasmxds.dev/v1alpha1\nkind: Cluster\nmetadata: {name: good}\nspec: {endpoints: [\"a:1\"]}\n" +
			"---\napiVersion: wasmxds.dev/v1alpha1\nkind: Cluster\nmetadata: {name: bad}\nspec: {endpoints: [\"a\"]}\n",
	})
	st := mustLoad(t, dir)
	if len(st.Clusters) != 1 || st.Clusters[0].Name != "good" {
		t.Errorf("clusters %+v, want only good", st.Clusters)
	}
	if len(st.Errors) != 1 || st.Errors[0].Line != 9 {
		t.Errorf("errors %v, want one at line 9", st.Errors)
	}
}

func TestLoadIsDeterministic(t *testing.T) {
	a := mustLoad(t, filepath.Join("testdata", "valid"))
	b := mustLoad(t, filepath.Join("testdata", "valid"))
	if !reflect.DeepEqual(a, b) {
		t.Error("two loads of the same directory differ")
	}
}

func TestLoadMissingDirectoryFails(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Error("Load of a missing directory succeeded")
	}
}

func TestSymlinkLoopIsNotFollowedForever(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"sub/c.yaml": "apiVersion: wasmxds.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c}\nspec: {endpoints: [\"a:1\"]}\n"})
	if err := os.Symlink("..", filepath.Join(dir, "sub", "loop")); err != nil {
		t.Fatal(err)
	}
	st := mustLoad(t, dir)
	if len(st.Clusters) != 1 || len(st.Errors) != 0 {
		t.Errorf("got %d clusters, errors %v; want the cluster once", len(st.Clusters), st.Errors)
	}
}
