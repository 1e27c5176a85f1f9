package catalog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// MaxPluginConfigBytes caps a WasmPlugin's pluginConfig, measured as the
// compact JSON the filter receives. Envoy copies the config into every
// filter instance and the control plane into every listener or ECDS
// resource that carries the plugin, so a config of many megabytes is a
// mistake (bulk data belongs in the module); the cap also bounds what
// YAML aliases can expand to.
const MaxPluginConfigBytes = 1 << 20

// maxPluginConfigNodes bounds the YAML nodes visited while encoding a
// pluginConfig, aliases and merges expanded. Any JSON within
// MaxPluginConfigBytes has fewer values than bytes; the bound stops
// aliases of empty mappings from costing time without producing output.
const maxPluginConfigNodes = MaxPluginConfigBytes

// configError is a problem in a pluginConfig, at node; atKey reports it at
// the pluginConfig key instead.
type configError struct {
	node  *yaml.Node
	atKey bool
	msg   string
}

// configEncoder writes a YAML mapping as compact JSON with sorted keys, in
// time proportional to its size. (yaml.v3's Node.Decode checks mapping keys
// for duplicates pairwise, which takes minutes for 100k keys.)
type configEncoder struct {
	buf       bytes.Buffer
	enc       *json.Encoder
	nodes     int
	expanding map[*yaml.Node]bool // anchors being expanded, to refuse cycles
}

// configEntry is one key of a mapping, merges applied.
type configEntry struct {
	key     string
	keyNode *yaml.Node
	value   *yaml.Node
}

// encodePluginConfig renders n (a mapping) as compact JSON: keys sorted,
// HTML characters not escaped, the values yaml.v3 would decode.
func encodePluginConfig(n *yaml.Node) (string, *configError) {
	e := &configEncoder{expanding: map[*yaml.Node]bool{}}
	e.enc = json.NewEncoder(&e.buf)
	e.enc.SetEscapeHTML(false)
	if err := e.value(n); err != nil {
		return "", err
	}
	if err := e.spend(0); err != nil { // the last value may have crossed the cap
		return "", err
	}
	return e.buf.String(), nil
}

// spend counts nodes visited and stops the encoding once the output or
// the work exceeds its bound.
func (e *configEncoder) spend(nodes int) *configError {
	e.nodes += nodes
	switch {
	case e.buf.Len() > MaxPluginConfigBytes:
		return &configError{atKey: true, msg: fmt.Sprintf(
			"larger than %d KiB as JSON; a filter's config must stay small (put bulk data in the module)",
			MaxPluginConfigBytes>>10)}
	case e.nodes > maxPluginConfigNodes:
		return &configError{atKey: true, msg: fmt.Sprintf(
			"more than %d values once aliases and merges are expanded", maxPluginConfigNodes)}
	}
	return nil
}

func (e *configEncoder) value(n *yaml.Node) *configError {
	if err := e.spend(1); err != nil {
		return err
	}
	switch n.Kind {
	case yaml.AliasNode:
		return e.alias(n, e.value)
	case yaml.MappingNode:
		return e.mapping(n)
	case yaml.SequenceNode:
		return e.sequence(n)
	case yaml.ScalarNode:
		return e.scalar(n)
	}
	return &configError{node: n, msg: "unexpected YAML node"}
}

// alias expands an alias through fn, refusing an anchor that contains itself.
func (e *configEncoder) alias(n *yaml.Node, fn func(*yaml.Node) *configError) *configError {
	target := n.Alias
	if target == nil || e.expanding[target] {
		return &configError{node: n, msg: fmt.Sprintf("anchor %q contains itself", n.Value)}
	}
	e.expanding[target] = true
	defer delete(e.expanding, target)
	return fn(target)
}

func (e *configEncoder) sequence(n *yaml.Node) *configError {
	e.buf.WriteByte('[')
	for i, item := range n.Content {
		if i > 0 {
			e.buf.WriteByte(',')
		}
		if err := e.value(item); err != nil {
			return err
		}
	}
	e.buf.WriteByte(']')
	return nil
}

func (e *configEncoder) mapping(n *yaml.Node) *configError {
	entries, err := e.entries(n, false)
	if err != nil {
		return err
	}
	slices.SortFunc(entries, func(a, b configEntry) int { return strings.Compare(a.key, b.key) })
	e.buf.WriteByte('{')
	for i, en := range entries {
		if i > 0 {
			e.buf.WriteByte(',')
		}
		if err := e.encode(en.key, en.keyNode); err != nil {
			return err
		}
		e.buf.WriteByte(':')
		if err := e.value(en.value); err != nil {
			return err
		}
	}
	e.buf.WriteByte('}')
	return nil
}

// entries lists a mapping's keys. As in yaml.v3, keys written in the mapping
// win over merged (<<) ones, and an earlier merged mapping over a later one.
// merging says n is merged into another mapping.
func (e *configEncoder) entries(n *yaml.Node, merging bool) ([]configEntry, *configError) {
	entries := make([]configEntry, 0, len(n.Content)/2)
	index := make(map[string]int, len(n.Content)/2)
	var merge *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if isMergeKey(k) {
			if merge != nil {
				return nil, &configError{node: k, msg: fmt.Sprintf("duplicate key \"<<\" (first at line %d)", merge.Line)}
			}
			merge = k
			continue
		}
		key, keep, err := e.entryKey(k, merging)
		if err != nil {
			return nil, err
		}
		if !keep {
			continue
		}
		if j, dup := index[key]; dup {
			return nil, &configError{node: k, msg: fmt.Sprintf("duplicate key %q (first at line %d)", key, entries[j].keyNode.Line)}
		}
		index[key] = len(entries)
		entries = append(entries, configEntry{key: key, keyNode: k, value: v})
	}
	if merge == nil {
		return entries, nil
	}
	merged, err := e.merged(mergeValue(n, merge))
	if err != nil {
		return nil, err
	}
	for _, m := range merged {
		if _, ok := index[m.key]; !ok {
			index[m.key] = len(entries)
			entries = append(entries, m)
		}
	}
	return entries, nil
}

func mergeValue(n, mergeKey *yaml.Node) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i] == mergeKey {
			return n.Content[i+1]
		}
	}
	return nil
}

// merged lists the entries a merge value (a mapping, an alias of one, or a
// list of those) brings, in order; a key may come more than once.
func (e *configEncoder) merged(v *yaml.Node) ([]configEntry, *configError) {
	sources := []*yaml.Node{v}
	if v.Kind == yaml.SequenceNode {
		sources = v.Content
	}
	var out []configEntry
	for _, src := range sources {
		if err := e.spend(1); err != nil {
			return nil, err
		}
		var entries []configEntry
		collect := func(m *yaml.Node) *configError {
			if m.Kind != yaml.MappingNode {
				return &configError{node: m, msg: "a merge (<<) takes a mapping or a list of mappings"}
			}
			var err *configError
			entries, err = e.entries(m, true)
			return err
		}
		var err *configError
		if src.Kind == yaml.AliasNode {
			err = e.alias(src, collect)
		} else {
			err = collect(src)
		}
		if err != nil {
			return nil, err
		}
		if err := e.spend(len(entries)); err != nil {
			return nil, err
		}
		out = append(out, entries...)
	}
	return out, nil
}

// mergedKey is a key of a merged mapping. yaml.v3 decodes those into the
// string-keyed map of the mapping they merge into, which takes any scalar
// as its text (1 becomes "1") and drops a null key.
func mergedKey(k *yaml.Node) (key string, keep bool, err *configError) {
	n := k
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind != yaml.ScalarNode {
		return "", false, &configError{node: k, msg: "cannot be expressed as JSON: keys must be strings"}
	}
	switch n.ShortTag() {
	case "!!null":
		return "", false, nil
	case "!!binary":
		var s string
		if err := n.Decode(&s); err != nil {
			return "", false, &configError{node: k, msg: err.Error()}
		}
		return s, true, nil
	}
	return n.Value, true, nil
}

func isMergeKey(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.Value == "<<" && (k.Tag == "" || k.Tag == "!" || k.ShortTag() == "!!merge")
}

func (e *configEncoder) entryKey(k *yaml.Node, merging bool) (string, bool, *configError) {
	if merging {
		return mergedKey(k)
	}
	key, err := e.key(k)
	return key, err == nil, err
}

// key returns a mapping key, which JSON requires to be a string.
func (e *configEncoder) key(k *yaml.Node) (string, *configError) {
	n := k
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" {
		return n.Value, nil
	}
	var v any
	if n.Kind == yaml.ScalarNode && n.Decode(&v) == nil {
		if s, ok := v.(string); ok {
			return s, nil
		}
		return "", &configError{node: k, msg: fmt.Sprintf("cannot be expressed as JSON: key %v is not a string", v)}
	}
	return "", &configError{node: k, msg: "cannot be expressed as JSON: keys must be strings"}
}

// scalar writes a scalar as the value yaml.v3 decodes it to.
func (e *configEncoder) scalar(n *yaml.Node) *configError {
	switch n.ShortTag() {
	case "!!str":
		return e.encode(n.Value, n)
	case "!!null":
		e.buf.WriteString("null")
		return nil
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return &configError{node: n, msg: err.Error()}
	}
	if f, ok := v.(float64); ok && (math.IsInf(f, 0) || math.IsNaN(f)) {
		return &configError{node: n, msg: fmt.Sprintf("cannot be expressed as JSON: %v is not a JSON number", f)}
	}
	return e.encode(v, n)
}

// encode appends v as JSON, without the newline json.Encoder adds.
func (e *configEncoder) encode(v any, n *yaml.Node) *configError {
	if s, ok := v.(string); ok && plainJSON(s) {
		e.buf.WriteByte('"') // the common case, at a fraction of Encode's cost
		e.buf.WriteString(s)
		e.buf.WriteByte('"')
		return nil
	}
	if err := e.enc.Encode(v); err != nil {
		return &configError{node: n, msg: fmt.Sprintf("cannot be expressed as JSON: %v", err)}
	}
	e.buf.Truncate(e.buf.Len() - 1)
	return nil
}

// plainJSON reports whether s is printable ASCII that JSON writes unescaped.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
