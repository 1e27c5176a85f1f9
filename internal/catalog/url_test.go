package catalog

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmxds/wasmxds/internal/modref/modreftest"
)

// A spec's url reaches the IR in the canonical spelling the fetcher pulls
// (the shared modreftest table), relative file: urls resolved against the
// spec file's directory.
func TestPluginURLIsCanonical(t *testing.T) {
	dir := t.TempDir()
	examples := append([]modreftest.Example{
		{In: "file:filters/a.wasm", Want: "file://" + filepath.Join(dir, "team", "filters", "a.wasm")},
		{In: "file:../a.wasm", Want: "file://" + filepath.Join(dir, "a.wasm")},
	}, modreftest.Examples...)
	var b strings.Builder
	for i, c := range examples {
		fmt.Fprintf(&b, "---\napiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\n"+
			"metadata: {name: p%d}\nspec: {url: %q}\n", i, c.In)
	}
	writeFiles(t, dir, map[string]string{"team/plugins.yaml": b.String()})
	st := mustLoad(t, dir)
	if len(st.Errors) != 0 {
		t.Fatalf("errors: %v", st.Errors)
	}
	urls := map[string]string{}
	for _, p := range st.Plugins {
		urls[p.Name] = p.URL
	}
	for i, c := range examples {
		if got := urls[fmt.Sprintf("p%d", i)]; got != c.Want {
			t.Errorf("url %q: IR URL %q; want %q", c.In, got, c.Want)
		}
	}
}

// A sha256 pin is accepted in any case, with or without sha256:, and the IR
// holds the lowercase hex the fetcher compares.
func TestPluginSHA256IsCanonical(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	pins := []string{modreftest.Hex, strings.ToUpper(modreftest.Hex), "sha256:" + modreftest.Hex, "SHA256:" + strings.ToUpper(modreftest.Hex)}
	for i, pin := range pins {
		fmt.Fprintf(&b, "---\napiVersion: wasmxds.dev/v1alpha1\nkind: WasmPlugin\n"+
			"metadata: {name: p%d}\nspec: {url: \"r.io/f@sha256:%s\", sha256: %q}\n", i, strings.ToUpper(modreftest.Hex), pin)
	}
	writeFiles(t, dir, map[string]string{"pins.yaml": b.String()})
	st := mustLoad(t, dir)
	if len(st.Errors) != 0 || len(st.Plugins) != len(pins) {
		t.Fatalf("errors %v, %d plugins; want none and %d", st.Errors, len(st.Plugins), len(pins))
	}
	for _, p := range st.Plugins {
		if p.SHA256 != modreftest.Hex || p.URL != "oci://r.io/f@sha256:"+modreftest.Hex {
			t.Errorf("%s: URL %q SHA256 %q; want the lowercase digest in both", p.Name, p.URL, p.SHA256)
		}
	}
}
