package catalog

import (
	"bytes"
	"encoding/json"
	"testing"

	"gopkg.in/yaml.v3"
)

// referenceConfig is pluginConfig the straightforward way: yaml.v3 decodes
// the mapping, encoding/json writes it. ok is false when either refuses.
func referenceConfig(n *yaml.Node) (string, bool) {
	var v any
	if err := n.Decode(&v); err != nil {
		return "", false
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", false
	}
	return string(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))), true
}

// FuzzPluginConfigMatchesYAMLDecode checks that pluginConfig's JSON is what
// decoding with yaml.v3 and encoding with encoding/json gives, whenever
// those accept the input: the encoder that replaced them for speed must not
// change a byte a filter receives.
func FuzzPluginConfigMatchesYAMLDecode(f *testing.F) {
	for _, seed := range []string{
		"{header: x-wasm, value: hello}",
		"{zeta: {b: 2, a: [1, 2.5, true, null]}, alpha: \"<html> & friends\", mid: 7}",
		"{ints: [0x1F, 0o17, 017, 1_000, -3, 9223372036854775807, 18446744073709551615, 1e3, 10.0]}",
		"{floats: [0.1, -2.5e-3, 1e300, .5], big: 123456789012345678901234567890}",
		"{s: [yes, no, on, off, 'true', \"1\", ~, null, '', 2024-06-01, 2024-06-01T10:00:00Z]}",
		"{bin: !!binary aGVsbG8=, str: !!str 12, tagged: !custom value}",
		"{unicode: \"h\\u00e9llo \\U0001F600\", ctl: \"a\\tb\\x01\", quote: '\"'}",
		"base: &base {a: 1, b: [x, y]}\nuse: *base\nmerged: {<<: *base, b: override, c: 3}\n",
		"a: &a {x: 1}\nb: &b {x: 2, y: 2}\nc: {<<: [*a, *b], z: 3}\nd: {<<: {x: 9}}\n",
		"nested: &n {<<: {deep: 1}, own: 2}\nouter: {<<: *n}\n",
		"{empty: {}, list: [], nulls: [~, null, Null]}",
		"{a: {b: {c: {d: {e: [[[[1]]]]}}}}}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var doc yaml.Node
		if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
			return
		}
		want, ok := referenceConfig(doc.Content[0])
		if !ok || len(want) > MaxPluginConfigBytes {
			return
		}
		got, err := encodePluginConfig(doc.Content[0])
		if err != nil {
			t.Fatalf("%q: error %q, yaml.v3 + encoding/json give %s", data, err.msg, want)
		}
		if got != want {
			t.Fatalf("%q:\n got %s\nwant %s", data, got, want)
		}
	})
}
