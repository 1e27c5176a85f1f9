package catalog

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary bytes through parsing and assembly. Beyond not
// panicking, what comes out must be usable: every error points at a line,
// and every plugin has a normalised url and JSON config.
func FuzzParse(f *testing.F) {
	f.Add([]byte("apiVersion: wasmxds.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c}\nspec: {endpoints: [\"a:1\"]}\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Add([]byte("---\n---\nkind: WasmPlugin\n"))
	f.Add([]byte("apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: p}\nspec: {url: oci://r/p:v1, pluginConfig: A}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pf := parseFile("fuzz.yaml", "/fuzz", data)
		docs := make([]bornDoc, len(pf.docs))
		for i, d := range pf.docs {
			if d.key.name == "" || d.source.Line < 1 {
				t.Fatalf("document without name or line: %+v", d)
			}
			docs[i] = bornDoc{doc: d}
		}
		st := assemble(map[string]*fileState{"fuzz.yaml": {errs: pf.errs, inForce: docs}}, nil)
		for _, e := range append(st.Errors, st.Warnings...) {
			if e.File != "fuzz.yaml" || e.Line < 1 || e.Message == "" {
				t.Fatalf("unusable error %#v", e)
			}
		}
		for _, p := range st.Plugins {
			// A string pluginConfig is kept as written, but only where the
			// spec allows one: wasmxds.dev documents and the older
			// manifests' StringValue (see Plugin.Config).
			stringAllowed := p.APIVersion == APIVersion || (p.Kind != "" && p.Kind != "TrafficExtension")
			if p.Config != "" && !json.Valid([]byte(p.Config)) && !stringAllowed {
				t.Fatalf("plugin %s (%s %s) config is not JSON: %q", p.Name, p.APIVersion, p.Kind, p.Config)
			}
			if !strings.HasPrefix(p.URL, "oci://") && !strings.HasPrefix(p.URL, "http://") &&
				!strings.HasPrefix(p.URL, "https://") && !strings.HasPrefix(p.URL, "file:///") {
				t.Fatalf("plugin %s url not normalised: %q", p.Name, p.URL)
			}
		}
		sniffForeign("fuzz.json", data)
	})
}
