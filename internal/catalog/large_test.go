package catalog

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// parseLimit bounds how long parsing a spec file of a few MB may take. It is
// a liveness bound, far above the expected figure (see BenchmarkParse*):
// parsing that grows with the square of the keys takes minutes here.
const parseLimit = 10 * time.Second

// configSpec is a WasmPlugin whose pluginConfig has keys entries, each
// written as `    key_0000001: "<value>"`.
func configSpec(name string, keys int, value string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: wasmxds.dev/v1alpha1\nkind: WasmPlugin\nmetadata: {name: %s}\n"+
		"spec:\n  url: oci://registry.local/filters/%s:v1\n  pluginConfig:\n", name, name)
	for i := range keys {
		fmt.Fprintf(&b, "    key_%07d: %q\n", i, value)
	}
	return []byte(b.String())
}

// parseTimed parses data as file rel, failing the test when it takes longer
// than parseLimit.
func parseTimed(t *testing.T, rel string, data []byte) parsedFile {
	t.Helper()
	start := time.Now()
	pf := parseFile(rel, "/specs", data)
	if d := time.Since(start); d > parseLimit {
		t.Fatalf("parsing %d bytes took %v, want well under %v", len(data), d, parseLimit)
	}
	return pf
}

// A pluginConfig just under the size cap, with as many keys as fit, parses
// in time proportional to its size and reaches the filter whole.
func TestManyPluginConfigKeysParseInLinearTime(t *testing.T) {
	const keys = 49_000 // `"key_0000000":"0123",` is 21 bytes: 1.03 MB of JSON, 1.18 MB of YAML
	data := configSpec("many", keys, "0123")
	pf := parseTimed(t, "many.yaml", data)
	if len(pf.errs) != 0 || len(pf.docs) != 1 {
		t.Fatalf("errors %v, documents %d; want one valid document", pf.errs, len(pf.docs))
	}
	var cfg map[string]string
	if err := json.Unmarshal([]byte(pf.docs[0].plugin.Config), &cfg); err != nil {
		t.Fatalf("config is not JSON: %v", err)
	}
	if len(cfg) != keys || cfg["key_0048999"] != "0123" {
		t.Errorf("config has %d keys (key_0048999 = %q), want %d", len(cfg), cfg["key_0048999"], keys)
	}
}

// The case from the field: a 7.9 MB spec with 138k pluginConfig keys is
// refused at its pluginConfig key, quickly.
func TestOversizedPluginConfigIsReportedAtItsKey(t *testing.T) {
	data := configSpec("huge", 138_000, strings.Repeat("v", 38))
	if len(data) < 7_800_000 || len(data) > maxSpecSize {
		t.Fatalf("test spec is %d bytes, want about 7.9 MB and under the file size cap", len(data))
	}
	pf := parseTimed(t, "huge.yaml", data)
	want := SpecError{File: "huge.yaml", Line: 6, Message: fmt.Sprintf(
		"spec.pluginConfig: larger than %d KiB as JSON; a filter's config must stay small (put bulk data in the module)",
		MaxPluginConfigBytes>>10)}
	if len(pf.errs) != 1 || pf.errs[0] != want {
		t.Errorf("errors %v, want only %v", pf.errs, want)
	}
}

// Duplicate keys inside pluginConfig are an error at the second one, as
// they are anywhere else in a spec.
func TestDuplicatePluginConfigKeyIsReportedAtTheDuplicate(t *testing.T) {
	data := []byte("apiVersion: wasmxds.dev/v1alpha1\nkind: WasmPlugin\nmetadata: {name: dup}\n" +
		"spec:\n  url: oci://registry.local/x:v1\n  pluginConfig:\n    a: 1\n    nested: {b: 1, b: 2}\n")
	pf := parseFile("dup.yaml", "/specs", data)
	want := []SpecError{{File: "dup.yaml", Line: 8, Message: `spec.pluginConfig: duplicate key "b" (first at line 8)`}}
	if fmt.Sprint(pf.errs) != fmt.Sprint(want) {
		t.Errorf("errors %v, want %v", pf.errs, want)
	}
}

// BenchmarkParseLargePluginConfig measures spec parse throughput (MB/s of
// YAML) on a 1 MB WasmPlugin whose pluginConfig holds 20k keys.
func BenchmarkParseLargePluginConfig(b *testing.B) {
	data := configSpec("bench", 20_000, strings.Repeat("v", 28))
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if pf := parseFile("bench.yaml", "/specs", data); len(pf.errs) != 0 {
			b.Fatal(pf.errs)
		}
	}
}

// BenchmarkParseManyDocuments measures spec parse throughput on a 260 KB
// file of 2,100 small Listener, Cluster and WasmPlugin documents, where
// yaml.v3's own parser takes about 60% of the time.
func BenchmarkParseManyDocuments(b *testing.B) {
	var sb strings.Builder
	for i := range 700 {
		fmt.Fprintf(&sb, "%s---\n%s---\n", clusterYAML(fmt.Sprintf("c%d", i), fmt.Sprintf("c%d.internal:80", i)),
			pluginYAML(fmt.Sprintf("p%d", i), fmt.Sprintf("oci://registry.local/p%d:v1", i)))
		fmt.Fprintf(&sb, "apiVersion: wasmxds.dev/v1alpha1\nkind: Listener\nmetadata: {name: l%d}\n"+
			"spec:\n  port: %d\n  routes:\n  - match: {prefix: /}\n    cluster: c%d\n---\n", i, 10000+i, i)
	}
	data := []byte(sb.String())
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if pf := parseFile("many.yaml", "/specs", data); len(pf.errs) != 0 {
			b.Fatal(pf.errs[0])
		}
	}
}

// bombSpec is a WasmPlugin whose pluginConfig expands anchors ten times
// over at each of nine levels, with lists or with merge keys.
func bombSpec(merge bool) []byte {
	var b strings.Builder
	b.WriteString("apiVersion: wasmxds.dev/v1alpha1\nkind: WasmPlugin\nmetadata: {name: bomb}\n" +
		"spec:\n  url: oci://registry.local/x:v1\n  pluginConfig:\n    l0: &l0 {x: 1}\n")
	for i := 1; i < 10; i++ {
		refs := strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 10), ", ")
		if merge {
			fmt.Fprintf(&b, "    l%d: &l%d {<<: [%s]}\n", i, i, refs)
		} else {
			fmt.Fprintf(&b, "    l%d: &l%d [%s]\n", i, i, refs)
		}
	}
	return []byte(b.String())
}

// Anchors that expand to billions of values are refused at the
// pluginConfig key, quickly, whether they expand through lists or merges.
func TestPluginConfigAliasBombIsRefused(t *testing.T) {
	for _, merge := range []bool{false, true} {
		pf := parseTimed(t, "bomb.yaml", bombSpec(merge))
		if len(pf.errs) != 1 || pf.errs[0].Line != 6 || !strings.HasPrefix(pf.errs[0].Message, "spec.pluginConfig: ") {
			t.Errorf("merge=%v: errors %v, want one at the pluginConfig key (line 6)", merge, pf.errs)
		}
	}
}

// The cap counts every byte: a config whose last value crosses it is refused.
func TestPluginConfigOneByteOverTheCapIsRefused(t *testing.T) {
	// {"k":"…"} is 8 bytes around the value.
	for _, size := range []int{MaxPluginConfigBytes - 8, MaxPluginConfigBytes - 7} {
		data := []byte("apiVersion: wasmxds.dev/v1alpha1\nkind: WasmPlugin\nmetadata: {name: edge}\n" +
			"spec:\n  url: oci://registry.local/x:v1\n  pluginConfig: {k: " + strings.Repeat("v", size) + "}\n")
		pf := parseFile("edge.yaml", "/specs", data)
		if over := size+8 > MaxPluginConfigBytes; over != (len(pf.errs) == 1) {
			t.Errorf("config of %d bytes: errors %v", size+8, pf.errs)
		}
	}
}
