package catalog

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// maxSecretRefs bounds a plugin's secretRefs.
const maxSecretRefs = 64

// SecretRef fills one value of a plugin's configuration with the content of
// a file. The catalog never reads the file: the value reaches only the
// translation input, never the IR, status or logs.
type SecretRef struct {
	// Path names the value: keys from the pluginConfig root, as written
	// dot-separated in the spec. Missing objects on the way are created.
	Path []string
	// File is the absolute path of the file holding the value (its content,
	// one trailing newline removed, becomes a JSON string).
	File string
	// Line is the secretRefs entry's line in Plugin.Source.File, for errors.
	Line int
}

// parseSecretRefs reads secretRefs: [{path, file}]. A relative file is
// relative to the spec's directory. Paths must be distinct, none inside
// another, and must not run through a value of pluginConfig that is not an
// object.
func parseSecretRefs(spec *fields, config, dir string) []SecretRef {
	items, n := spec.seq("secretRefs")
	if len(items) > maxSecretRefs {
		spec.p.add(n, "spec.secretRefs: %d entries (limit %d)", len(items), maxSecretRefs)
		return nil
	}
	var cfg map[string]any
	if config != "" {
		_ = json.Unmarshal([]byte(config), &cfg) // the catalog's own encoding
	}
	var refs []SecretRef
	for i, it := range items {
		rf := spec.p.mapping(it, "spec.secretRefs["+strconv.Itoa(i)+"]")
		r, ok := parseSecretRef(rf, cfg, dir)
		rf.finish()
		if !ok {
			continue
		}
		if j := slices.IndexFunc(refs, func(o SecretRef) bool { return nested(o.Path, r.Path) }); j >= 0 {
			spec.p.add(rf.line("path"), "%s: %q overlaps the path of the entry at line %d",
				rf.sub("path"), strings.Join(r.Path, "."), refs[j].Line)
			continue
		}
		refs = append(refs, r)
	}
	return refs
}

func parseSecretRef(rf *fields, cfg map[string]any, dir string) (SecretRef, bool) {
	path, pn := rf.str("path")
	file, fn := rf.str("file")
	switch {
	case pn == nil || path == "":
		rf.p.add(orNode(pn, rf.line("path")), "%s: missing (a dot-separated key path in pluginConfig)", rf.sub("path"))
		return SecretRef{}, false
	case fn == nil || file == "":
		rf.p.add(orNode(fn, rf.line("file")), "%s: missing (the file holding the value)", rf.sub("file"))
		return SecretRef{}, false
	}
	keys := strings.Split(path, ".")
	if slices.Contains(keys, "") {
		rf.p.add(pn, "%s: %q has an empty key", rf.sub("path"), path)
		return SecretRef{}, false
	}
	if at, ok := throughScalar(cfg, keys); ok {
		rf.p.add(pn, "%s: pluginConfig.%s is not an object, so %q cannot be set inside it", rf.sub("path"), at, path)
		return SecretRef{}, false
	}
	if !filepath.IsAbs(file) {
		file = filepath.Join(dir, file)
	}
	return SecretRef{Path: keys, File: filepath.Clean(file), Line: rf.node.Line}, true
}

// throughScalar reports the first proper prefix of keys naming a value of
// cfg that is not an object.
func throughScalar(cfg map[string]any, keys []string) (string, bool) {
	cur := cfg
	for i, k := range keys[:len(keys)-1] {
		v, ok := cur[k]
		if !ok {
			return "", false
		}
		if cur, ok = v.(map[string]any); !ok {
			return strings.Join(keys[:i+1], "."), true
		}
	}
	return "", false
}

// nested reports whether one path equals the other or lies inside it.
func nested(a, b []string) bool {
	n := min(len(a), len(b))
	return slices.Equal(a[:n], b[:n])
}
