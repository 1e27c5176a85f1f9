package catalog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// parsedFile is what one file contributes.
type parsedFile struct {
	docs    []*document
	errs    []SpecError
	warns   []SpecError
	notSpec string // why the file was skipped as not a spec file; empty otherwise
}

func isYAMLName(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	return ext == ".yaml" || ext == ".yml"
}

// parseFile parses a YAML file. rel names it in errors; dir is its absolute
// directory, against which relative file: urls resolve.
//
// A file is a spec file when any of its documents has apiVersion or kind; an
// Envoy bootstrap or a compose file next to the specs is skipped instead.
func parseFile(rel, dir string, data []byte) parsedFile {
	roots, syntaxErr := decodeAll(data)
	if !anySpec(roots) && (syntaxErr == nil || !foreignSpecRE.Match(data)) {
		reason := "no document has apiVersion or kind"
		if syntaxErr != nil {
			reason = "invalid YAML without spec markers: " + syntaxErr.Error()
		}
		return parsedFile{notSpec: reason}
	}
	p := &problems{file: rel}
	var docs []*document
	for _, root := range roots {
		if isNull(root) {
			continue // an empty document, e.g. after a trailing ---
		}
		if d := parseDocument(p, root, dir); d != nil {
			docs = append(docs, d)
		}
	}
	if syntaxErr != nil {
		line, msg := syntaxLine(syntaxErr)
		p.addLine(line, "invalid YAML: "+msg)
	}
	return parsedFile{docs: docs, errs: p.errs, warns: p.warns}
}

// decodeAll reads every document of a stream, stopping at the first syntax
// error (yaml.v3 cannot resynchronise after one).
func decodeAll(data []byte) (roots []*yaml.Node, err error) {
	defer func() {
		// A parser bug on hostile input must cost one file, not the server.
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: parser failure: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				return roots, nil
			}
			return roots, err
		}
		if len(doc.Content) > 0 {
			roots = append(roots, doc.Content[0])
		}
	}
}

func anySpec(roots []*yaml.Node) bool {
	for _, r := range roots {
		r = resolve(r)
		if r == nil || r.Kind != yaml.MappingNode {
			continue
		}
		for i := 0; i+1 < len(r.Content); i += 2 {
			if k := r.Content[i]; k.Kind == yaml.ScalarNode && (k.Value == "apiVersion" || k.Value == "kind") {
				return true
			}
		}
	}
	return false
}

var syntaxLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func syntaxLine(err error) (int, string) {
	msg := err.Error()
	if m := syntaxLineRE.FindStringSubmatch(msg); m != nil {
		if n, convErr := strconv.Atoi(m[1]); convErr == nil {
			return n, m[2]
		}
	}
	return 1, strings.TrimPrefix(msg, "yaml: ")
}

// foreignSpecRE finds an apiVersion of ours in YAML or JSON text.
var foreignSpecRE = regexp.MustCompile(`apiVersion["']?\s*:\s*["']?(wasmxds\.dev/|extensions\.istio\.io/|wasme\.io/|istio\.alibabacloud\.com/)`)

// quotesSpecs are extensions of documentation and source files, which may
// quote a spec as an example without meaning it to apply.
var quotesSpecs = map[string]bool{".md": true, ".markdown": true, ".rst": true, ".adoc": true,
	".html": true, ".go": true}

// sniffForeign reports a file that is not loaded (wrong extension) although
// it holds a spec: a renamed or backup copy that the user may think applies.
func sniffForeign(rel string, data []byte) []SpecError {
	if quotesSpecs[strings.ToLower(filepath.Ext(rel))] {
		return nil
	}
	if bytes.IndexByte(data[:min(len(data), 8192)], 0) >= 0 {
		return nil // binary, e.g. a .wasm module kept next to its spec
	}
	loc := foreignSpecRE.FindIndex(data)
	if loc == nil {
		return nil
	}
	line := 1 + bytes.Count(data[:loc[0]], []byte("\n"))
	return []SpecError{{File: rel, Line: line,
		Message: "looks like a spec but is not a .yaml/.yml file, so it is not loaded; rename it or move it out of the config directory"}}
}
