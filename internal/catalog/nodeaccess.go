package catalog

import (
	"net/url"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// KindNodeAccess grants node identities (from client certificates) the
// labels and node ids they may claim.
const KindNodeAccess = "NodeAccess"

// NodeAccess is one NodeAccess document: the identities matching any of
// Principals may claim the Labels (every label a node claims must be granted
// by some NodeAccess matching its identity) and, when NodeIDs is set, only
// node ids matching one of those patterns.
type NodeAccess struct {
	Name   string
	Source Source
	// Principals are identities: exact, or a prefix ending in '*'.
	Principals []string
	// Labels granted: a node may claim key=value for each entry.
	Labels map[string]string
	// NodeIDs are node.id patterns (exact, or a prefix ending in '*'); empty
	// allows any id.
	NodeIDs []string
}

// MatchPattern reports whether pattern (exact, or a prefix ending in '*')
// matches s.
func MatchPattern(pattern, s string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(s, prefix)
	}
	return pattern == s
}

func parseNodeAccess(spec *fields) *NodeAccess {
	a := &NodeAccess{}
	a.Principals = patterns(spec, "principals", true)
	a.Labels = spec.stringMap("labels")
	a.NodeIDs = patterns(spec, "nodeIDs", false)
	return a
}

// patterns reads a list of exact-or-prefix* patterns.
func patterns(spec *fields, key string, required bool) []string {
	p := spec.p
	items, seqNode := spec.seq(key)
	if required && len(items) == 0 && emptyList(seqNode) {
		p.add(orNode(seqNode, spec.line(key)), "spec.%s: at least one principal (exact, or a prefix ending in *)", key)
	}
	var out []string
	for i, it := range items {
		path := "spec." + key + "[" + strconv.Itoa(i) + "]"
		if it.Kind != yaml.ScalarNode || it.Value == "" {
			p.add(it, "%s: must be a non-empty string", path)
			continue
		}
		v := it.Value
		if i := strings.Index(v, "*"); i >= 0 && i != len(v)-1 {
			p.add(it, "%s: %q: '*' may only end a pattern (a prefix match)", path, v)
			continue
		}
		if key == "principals" && strings.Contains(v, "://") {
			if _, err := url.Parse(strings.TrimSuffix(v, "*")); err != nil {
				p.add(it, "%s: %q is not a valid URI: %v", path, v, err)
				continue
			}
		}
		out = append(out, v)
	}
	return out
}
