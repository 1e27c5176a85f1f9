package catalog

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
)

// specDocPath is the spec reference, the one description of what this
// package accepts.
var specDocPath = filepath.Join("..", "..", "docs", "spec.md")

// docExample is one ```yaml block of the spec reference.
type docExample struct {
	line int // of the opening fence
	text string
}

// specDocExamples returns every ```yaml block of docs/spec.md.
func specDocExamples(t *testing.T) []docExample {
	t.Helper()
	b, err := os.ReadFile(specDocPath)
	if err != nil {
		t.Fatal(err)
	}
	var out []docExample
	var cur *docExample
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(line, "```yaml"):
			cur = &docExample{line: n}
		case cur != nil && strings.HasPrefix(line, "```"):
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		}
	}
	if cur != nil {
		t.Fatalf("%s:%d: unterminated yaml block", specDocPath, cur.line)
	}
	return out
}

// TestSpecDocExamplesLoad loads every YAML example of the spec reference as
// a spec file of its own: each must load with no error, and every document
// in it must be one the catalog took (none skipped as a non-spec).
func TestSpecDocExamplesLoad(t *testing.T) {
	examples := specDocExamples(t)
	if len(examples) < 10 {
		t.Fatalf("%s has %d yaml examples; the reference shows every kind", specDocPath, len(examples))
	}
	kinds := map[string]bool{}
	for _, ex := range examples {
		st := loadExample(t, ex)
		for _, e := range st.Errors {
			t.Errorf("%s:%d: example line %d: %s", specDocPath, ex.line, e.Line, e.Message)
		}
		docs := 1 + strings.Count(ex.text, "\n---\n")
		if got := len(st.Listeners) + len(st.Clusters) + len(st.Plugins) + len(st.NodeAccess); got != docs && len(st.Errors) == 0 {
			t.Errorf("%s:%d: example has %d documents, the catalog took %d", specDocPath, ex.line, docs, got)
		}
		for _, m := range regexp.MustCompile(`(?m)^kind: (\w+)`).FindAllStringSubmatch(ex.text, -1) {
			kinds[m[1]] = true
		}
	}
	for _, k := range []string{"Listener", "Cluster", "WasmPlugin", "TrafficExtension", "NodeAccess",
		"FilterDeployment", "ASMFilterDeployment", "EnvoyFilter"} {
		if !kinds[k] {
			t.Errorf("%s has no example of kind %s", specDocPath, k)
		}
	}
}

func loadExample(t *testing.T, ex docExample) *State {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "example.yaml"), []byte(ex.text), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := Load(dir)
	if err != nil {
		t.Fatalf("%s:%d: %v", specDocPath, ex.line, err)
	}
	return st
}

// userKeyed are mappings whose keys are the user's (label names, variable
// names), not fields of the spec.
var userKeyed = []string{"matchLabels", "labels", "annotations", "key_values", "keyValues"}

// TestSpecDocNamesEveryField records every field the decoders ask for while
// loading the golden valid and invalid cases and the reference's own
// examples, and checks that the spec reference names each of them: a field
// the parser accepts cannot go undocumented.
func TestSpecDocNamesEveryField(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]string{} // field → one path it was seen at
	record := func(path, key string) {
		last := path[strings.LastIndex(path, ".")+1:]
		if i := strings.IndexByte(last, '['); i >= 0 {
			last = last[:i]
		}
		if slices.Contains(userKeyed, last) {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if _, ok := seen[key]; !ok {
			seen[key] = strings.TrimPrefix(path+"."+key, ".")
		}
	}
	fieldSeen.Store(&record)
	defer fieldSeen.Store(nil)

	for _, root := range []string{filepath.Join("testdata", "valid"), filepath.Join("testdata", "invalid")} {
		if _, err := Load(root); err != nil {
			t.Fatal(err)
		}
	}
	for _, ex := range specDocExamples(t) {
		loadExample(t, ex)
	}
	fieldSeen.Store(nil)

	doc, err := os.ReadFile(specDocPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) < 50 {
		t.Fatalf("only %d fields recorded; is fieldSeen still called by the decoders?", len(seen))
	}
	named := func(word string) bool {
		return regexp.MustCompile(`(^|[^A-Za-z0-9_])` + regexp.QuoteMeta(word) + `($|[^A-Za-z0-9_])`).Match(doc)
	}
	var missing []string
	for key, path := range seen {
		// Envoy's fields are read in both spellings; the reference may
		// name either.
		if !named(key) && !named(snakeCase(key)) && !named(camelCase(key)) {
			missing = append(missing, fmt.Sprintf("%s (at %s)", key, path))
		}
	}
	slices.Sort(missing)
	for _, m := range missing {
		t.Errorf("%s does not name the field %s", specDocPath, m)
	}
}

// snakeCase spells a lowerCamel field name as protobuf's snake_case.
func snakeCase(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// camelCase spells a snake_case field name as protobuf's lowerCamel JSON.
func camelCase(s string) string {
	parts := strings.Split(s, "_")
	for i := 1; i < len(parts); i++ {
		if parts[i] != "" {
			parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
		}
	}
	return strings.Join(parts, "")
}

func TestFieldSpellings(t *testing.T) {
	for camel, snake := range map[string]string{"vmConfig": "vm_config", "typeUrl": "type_url", "sha256": "sha256"} {
		if got := snakeCase(camel); got != snake {
			t.Errorf("snakeCase(%q) = %q, want %q", camel, got, snake)
		}
		if got := camelCase(snake); got != camel {
			t.Errorf("camelCase(%q) = %q, want %q", snake, got, camel)
		}
	}
}
