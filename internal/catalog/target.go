package catalog

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// parseMatch reads match[]. A plugin applies to traffic matching any
// entry, so one entry without ports means every port.
//
// Every wasmxds listener is the server side of its downstream connections,
// which is what Istio calls SERVER (inbound) traffic; there is no CLIENT
// (outbound, sidecar-to-upstream) listener to attach to, so mode CLIENT is
// rejected rather than silently widened.
//
// hosts and paths (wasmxds.dev/v1alpha1 only: Istio's match has neither)
// limit the plugin to some routes; targetsAt is the first such field, for
// the caller to refuse under Istio's apiVersion.
func parseMatch(spec *fields) (ports []uint32, refs []ref, targets []Target, targetsAt *yaml.Node) {
	items, _ := spec.seq("match")
	anyPort := len(items) == 0
	for i, it := range items {
		mf := spec.p.mapping(it, "spec.match["+strconv.Itoa(i)+"]")
		if mode, n := mf.enum("mode", "UNDEFINED", "CLIENT", "SERVER", "CLIENT_AND_SERVER"); mode == "CLIENT" {
			spec.p.add(n, "%s: mode CLIENT (outbound traffic) is not supported: wasmxds listeners only serve "+
				"downstream (SERVER) traffic; use SERVER or CLIENT_AND_SERVER, or omit mode", mf.sub("mode"))
		}
		var tg Target
		tg.Ports, refs = parseMatchPorts(mf, refs)
		anyPort = anyPort || len(tg.Ports) == 0
		tg.Hosts = parseTargetHosts(mf)
		tg.Paths = parseTargetPaths(mf)
		for _, key := range []string{"hosts", "paths"} {
			if mf.has(key) && targetsAt == nil {
				targetsAt = mf.line(key)
			}
		}
		targets = append(targets, tg)
		mf.finish()
	}
	for _, tg := range targets {
		ports = append(ports, tg.Ports...)
	}
	if targetsAt == nil {
		targets = nil
	}
	if anyPort {
		return nil, nil, targets, targetsAt
	}
	slices.Sort(ports)
	return slices.Compact(ports), refs, targets, targetsAt
}

func parseMatchPorts(mf *fields, refs []ref) ([]uint32, []ref) {
	pitems, _ := mf.seq("ports")
	var ports []uint32
	for j, pit := range pitems {
		pf := mf.p.mapping(pit, mf.sub("ports["+strconv.Itoa(j)+"]"))
		if port := requiredPort(pf, "number"); port != 0 {
			ports = append(ports, port)
			refs = append(refs, ref{value: strconv.Itoa(int(port)), path: pf.sub("number"), line: pf.line("number").Line})
		}
		pf.finish()
	}
	slices.Sort(ports)
	return slices.Compact(ports), refs
}

// parseTargetHosts reads match[].hosts: domains as a listener's hosts
// spell them.
func parseTargetHosts(mf *fields) []string {
	items, _ := mf.seq("hosts")
	var out []string
	for j, it := range items {
		if d, ok := parseDomain(mf.p, mf.sub("hosts["+strconv.Itoa(j)+"]"), it); ok {
			out = append(out, d)
		}
	}
	return out
}

// parseTargetPaths reads match[].paths: each a prefix or an exact path.
func parseTargetPaths(mf *fields) []PathMatch {
	items, _ := mf.seq("paths")
	var out []PathMatch
	for j, it := range items {
		pf := mf.p.mapping(it, mf.sub("paths["+strconv.Itoa(j)+"]"))
		prefix, exact := parsePathMatch(pf, "exact", it)
		pf.finish()
		out = append(out, PathMatch{Prefix: prefix, Exact: exact})
	}
	return out
}

// PathRelation is how the requests a route takes relate to a plugin path.
type PathRelation int

// Path relations.
const (
	// PathDisjoint: no request of the route is on the path.
	PathDisjoint PathRelation = iota
	// PathWithin: every request of the route is on the path.
	PathWithin
	// PathNarrower: some requests of the route are on the path, which a
	// route of its own can take before this one.
	PathNarrower
)

// Relation compares the requests of route r (by its path or prefix, which
// Envoy matches as plain strings) with the path pm.
func Relation(r Route, pm PathMatch) PathRelation {
	switch {
	case r.Path != "" && pm.Exact != "":
		return relationIf(r.Path == pm.Exact, PathWithin)
	case r.Path != "":
		return relationIf(strings.HasPrefix(r.Path, pm.Prefix), PathWithin)
	case pm.Exact != "":
		return relationIf(strings.HasPrefix(pm.Exact, r.Prefix), PathNarrower)
	case strings.HasPrefix(r.Prefix, pm.Prefix):
		return PathWithin
	default:
		return relationIf(strings.HasPrefix(pm.Prefix, r.Prefix), PathNarrower)
	}
}

func relationIf(ok bool, rel PathRelation) PathRelation {
	if ok {
		return rel
	}
	return PathDisjoint
}

// OnRoute says how the plugin applies to route r of a host with the given
// domains on a listener port: to all of its requests, or only to those of
// the narrower paths (more specific first, as routes of their own must be
// ordered), or to none.
func (p Plugin) OnRoute(port uint32, domains []string, r Route) (all bool, narrower []PathMatch) {
	if len(p.Targets) == 0 {
		return len(p.Ports) == 0 || slices.Contains(p.Ports, port), nil
	}
	for _, tg := range p.Targets {
		if !tg.selectsHost(port, domains) {
			continue
		}
		if len(tg.Paths) == 0 {
			return true, nil
		}
		for _, pm := range tg.Paths {
			switch Relation(r, pm) {
			case PathWithin:
				return true, nil
			case PathNarrower:
				narrower = append(narrower, pm)
			}
		}
	}
	SortPaths(narrower)
	return false, slices.Compact(narrower)
}

func (tg Target) selectsHost(port uint32, domains []string) bool {
	if len(tg.Ports) > 0 && !slices.Contains(tg.Ports, port) {
		return false
	}
	return len(tg.Hosts) == 0 || slices.ContainsFunc(tg.Hosts, func(h string) bool { return slices.Contains(domains, h) })
}

// SortPaths orders paths most specific first: exact paths, then prefixes
// longest first, so that routes made of them in this order each take the
// requests meant for them.
func SortPaths(paths []PathMatch) {
	slices.SortFunc(paths, func(a, b PathMatch) int {
		return cmp.Or(cmp.Compare(boolInt(b.Exact != ""), boolInt(a.Exact != "")), cmp.Compare(len(b.Prefix), len(a.Prefix)),
			cmp.Compare(a.Exact, b.Exact), cmp.Compare(a.Prefix, b.Prefix))
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// OnListener reports whether the plugin applies to any route of l (any at
// all for a plugin not limited to hosts and paths, on l's port).
//
// HTTP plugins join HTTP listeners and NETWORK plugins TCP listeners.
func (p Plugin) OnListener(l Listener) bool {
	if len(p.Ports) > 0 && !slices.Contains(p.Ports, l.Port) {
		return false
	}
	if (p.Type == PluginNetwork) != (l.Protocol == ProtocolTCP) {
		return false
	}
	if len(p.Targets) == 0 {
		return true
	}
	for _, h := range ListenerHosts(l) {
		for _, r := range h.Routes {
			if all, narrower := p.OnRoute(l.Port, h.Domains, r); all || len(narrower) > 0 {
				return true
			}
		}
	}
	return false
}

// ListenerHosts is every virtual host of l, the top-level routes first as
// the host "*".
func ListenerHosts(l Listener) []VirtualHost {
	if len(l.Routes) == 0 {
		return l.Hosts
	}
	return append([]VirtualHost{{Domains: []string{catchAllDomain}, Routes: l.Routes}}, l.Hosts...)
}
