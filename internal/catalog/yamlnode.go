package catalog

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"

	"gopkg.in/yaml.v3"
)

// problems collects the errors found in one file. Every error carries the
// line of the node it is about so users can jump straight to it.
type problems struct {
	file  string
	errs  []SpecError
	warns []SpecError // valid but moot or probably unintended; never exclude a document
}

// warn records a warning at n.
func (p *problems) warn(n *yaml.Node, format string, args ...any) {
	line := 1
	if n != nil && n.Line > 0 {
		line = n.Line
	}
	p.warns = append(p.warns, SpecError{File: p.file, Line: line, Message: fmt.Sprintf(format, args...)})
}

func (p *problems) add(n *yaml.Node, format string, args ...any) {
	line := 1
	if n != nil && n.Line > 0 {
		line = n.Line
	}
	p.addLine(line, fmt.Sprintf(format, args...))
}

func (p *problems) addLine(line int, msg string) {
	p.errs = append(p.errs, SpecError{File: p.file, Line: line, Message: msg})
}

// resolve follows YAML aliases so that anchors behave as if the anchored
// content were written in place.
func resolve(n *yaml.Node) *yaml.Node {
	for depth := 0; n != nil && n.Kind == yaml.AliasNode && depth < 16; depth++ {
		n = n.Alias
	}
	return n
}

// isNull reports whether a value is absent for our purposes: Kubernetes
// treats `key:` and `key: null` like a missing key, and so do we.
func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// fields is a strict view of one YAML mapping: every key must be consumed by
// the decoder, and finish reports the rest as unknown fields.
type fields struct {
	p      *problems
	node   *yaml.Node
	path   string
	keys   map[string]*yaml.Node
	values map[string]*yaml.Node
	order  []string
	used   map[string]bool
}

// mapping opens n as a mapping for strict decoding. When n is not a mapping
// it reports that once and returns an empty view, so callers need no special
// case and produce no follow-up noise.
func (p *problems) mapping(n *yaml.Node, path string) *fields {
	f := &fields{p: p, node: n, path: path, keys: map[string]*yaml.Node{},
		values: map[string]*yaml.Node{}, used: map[string]bool{}}
	n = resolve(n)
	if isNull(n) {
		return f
	}
	if n.Kind != yaml.MappingNode {
		p.add(n, "%s: must be a mapping", path)
		return f
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k == nil || k.Kind != yaml.ScalarNode {
			p.add(n.Content[i], "%s: keys must be strings", path)
			continue
		}
		if k.Tag == "!!merge" {
			p.add(k, "%s: YAML merge keys (<<) are not supported; write the fields out", path)
			continue
		}
		if prev, dup := f.keys[k.Value]; dup {
			p.add(k, "%s: duplicate field %q (first at line %d)", path, k.Value, prev.Line)
			continue
		}
		f.keys[k.Value], f.values[k.Value] = k, v
		f.order = append(f.order, k.Value)
	}
	return f
}

func (f *fields) sub(key string) string {
	if f.path == "" {
		return key
	}
	return f.path + "." + key
}

// isMap reports whether the view is over an actual mapping.
func (f *fields) isMap() bool {
	n := resolve(f.node)
	return n != nil && n.Kind == yaml.MappingNode
}

// missing reports whether key is absent or null; a value of the wrong type
// is not missing (it was reported as such).
func (f *fields) missing(key string) bool {
	return isNull(f.values[key])
}

// use marks key as known to the decoder, so that finish does not report it.
func (f *fields) use(key string) {
	f.used[key] = true
	if seen := fieldSeen.Load(); seen != nil {
		(*seen)(f.path, key)
	}
}

// fieldSeen, when set (by tests), is told every field a decoder asks for,
// present or not: the fields the parser knows, which the spec reference
// must name.
var fieldSeen atomic.Pointer[func(path, key string)]

// value returns the resolved value of key, or nil when it is absent or null.
func (f *fields) value(key string) *yaml.Node {
	f.use(key)
	v := resolve(f.values[key])
	if isNull(v) {
		return nil
	}
	return v
}

// str returns a scalar as its literal text. Any scalar is accepted so that
// `value: 8080` means the string "8080", as the user wrote it.
func (f *fields) str(key string) (string, *yaml.Node) {
	v := f.value(key)
	if v == nil {
		return "", nil
	}
	if v.Kind != yaml.ScalarNode {
		f.p.add(v, "%s: must be a string", f.sub(key))
		return "", nil
	}
	return v.Value, v
}

// integer returns an integer field, checking it lies within [lo, hi].
func (f *fields) integer(key string, lo, hi int64) (int64, *yaml.Node, bool) {
	v := f.value(key)
	if v == nil {
		return 0, nil, false
	}
	n, err := scalarInt(v)
	if err != nil {
		f.p.add(v, "%s: must be an integer", f.sub(key))
		return 0, v, false
	}
	if n < lo || n > hi {
		f.p.add(v, "%s: %d is out of range %d-%d", f.sub(key), n, lo, hi)
		return n, v, false
	}
	return n, v, true
}

func scalarInt(v *yaml.Node) (int64, error) {
	if v.Kind != yaml.ScalarNode || (v.Tag != "!!int" && v.Tag != "!!float") {
		return 0, fmt.Errorf("not an integer")
	}
	s := strings.ReplaceAll(v.Value, "_", "")
	if n, err := strconv.ParseInt(s, 0, 64); err == nil {
		return n, nil
	}
	// 1e3 and 10.0 are integers to YAML users even if not to strconv.
	fl, err := strconv.ParseFloat(s, 64)
	if err != nil || fl != math.Trunc(fl) || math.Abs(fl) > 1<<53 {
		return 0, fmt.Errorf("not an integer")
	}
	return int64(fl), nil
}

// seq returns the items of a sequence field.
func (f *fields) seq(key string) ([]*yaml.Node, *yaml.Node) {
	v := f.value(key)
	if v == nil {
		return nil, nil
	}
	if v.Kind != yaml.SequenceNode {
		f.p.add(v, "%s: must be a list", f.sub(key))
		return nil, v
	}
	items := make([]*yaml.Node, len(v.Content))
	for i, it := range v.Content {
		items[i] = resolve(it)
	}
	return items, v
}

// stringMap returns a mapping of scalars, e.g. labels.
func (f *fields) stringMap(key string) map[string]string {
	v := f.value(key)
	if v == nil {
		return nil
	}
	m := f.p.mapping(v, f.sub(key))
	if len(m.order) == 0 {
		return nil
	}
	out := make(map[string]string, len(m.order))
	for _, k := range m.order {
		val, _ := m.str(k)
		out[k] = val
	}
	return out
}

// reject marks key as known but unsupported, reporting why if it is set.
func (f *fields) reject(key, why string) {
	if _, ok := f.keys[key]; !ok {
		return
	}
	f.use(key)
	f.p.add(f.keys[key], "%s: not supported: %s", f.sub(key), why)
}

// ignore marks keys that are accepted and deliberately carry no meaning here.
func (f *fields) ignore(keys ...string) {
	for _, k := range keys {
		f.use(k)
	}
}

// either reads a field that Envoy's and Istio's JSON mapping of a protobuf
// message accepts in two spellings (lowerCamel and snake_case) and returns
// the key used; setting both is an error.
func (f *fields) either(camel, snake string) string {
	switch {
	case f.has(camel) && f.has(snake):
		f.p.add(f.keys[snake], "%s: set both %s and %s; they are one field", f.sub(snake), camel, snake)
		f.use(snake)
		return camel
	case f.has(snake):
		return snake
	}
	return camel
}

// has reports whether key is present (even when null).
func (f *fields) has(key string) bool {
	_, ok := f.keys[key]
	return ok
}

// line is the line of key, or of the mapping when key is absent.
func (f *fields) line(key string) *yaml.Node {
	if k, ok := f.keys[key]; ok {
		return k
	}
	return f.node
}

// finish reports every key no decoder asked for.
func (f *fields) finish() {
	for _, k := range f.order {
		if !f.used[k] {
			where := f.path
			if where == "" {
				where = "document"
			}
			f.p.add(f.keys[k], "unknown field %q in %s", k, where)
		}
	}
}
