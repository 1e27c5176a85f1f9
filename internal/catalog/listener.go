package catalog

import (
	"net"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// catchAllDomain is the domain of a listener's top-level routes.
const catchAllDomain = "*"

// listenerRefs are what assemble checks of a listener against other
// documents and the host.
type listenerRefs struct {
	clusters []ref    // the clusters its routes (or, TCP, the listener) send to
	tls      []tlsRef // its certificates
}

func parseListener(spec *fields) (*Listener, listenerRefs) {
	p := spec.p
	l := &Listener{Selector: parseSelector(spec), Address: "0.0.0.0"}
	if addr, n := spec.str("address"); n != nil {
		ip := net.ParseIP(addr)
		if ip == nil {
			p.add(n, "spec.address: %q is not an IP address", addr)
		} else {
			l.Address = ip.String()
		}
	}
	l.Port = requiredPort(spec, "port")
	var refs listenerRefs
	if proto, _ := spec.enum("protocol", "HTTP", "TCP"); proto == "TCP" {
		l.Protocol = ProtocolTCP
		refs.clusters = parseTCPListener(spec, l)
		return l, refs
	}
	if spec.has("cluster") {
		p.add(spec.line("cluster"), "spec.cluster: only a TCP listener (protocol: TCP) sends to one cluster; "+
			"an HTTP listener sends each route to its cluster")
	}
	spec.use("cluster")
	l.TLS = parseTLS(spec, &refs.tls)
	routes, rrefs := parseRoutes(spec, "spec.routes", spec.has("hosts"))
	l.Routes, refs.clusters = routes, rrefs
	l.Hosts = parseHosts(spec, len(routes) > 0, &refs)
	return l, refs
}

// parseTCPListener reads the fields of a TCP listener, which has one
// cluster and no routes.
func parseTCPListener(spec *fields, l *Listener) []ref {
	for _, key := range []string{"routes", "hosts", "tls"} {
		if spec.has(key) {
			spec.p.add(spec.line(key), "spec.%s: not allowed with protocol TCP (a TCP listener sends every connection to spec.cluster)", key)
		}
		spec.use(key)
	}
	cluster, cn := spec.str("cluster")
	switch {
	case cn == nil && !spec.missing("cluster"):
		return nil // not a string; already reported
	case cn == nil || cluster == "":
		spec.p.add(orNode(cn, spec.line("cluster")), "spec.cluster: missing (a TCP listener needs the cluster its connections go to)")
		return nil
	}
	l.Cluster = cluster
	return []ref{{value: cluster, path: "spec.cluster", line: cn.Line}}
}

// parseRoutes reads a list of routes. Unless optional, the list must have
// at least one route.
func parseRoutes(f *fields, path string, optional bool) ([]Route, []ref) {
	p := f.p
	key := path[strings.LastIndexByte(path, '.')+1:]
	items, seqNode := f.seq(key)
	if len(items) == 0 && emptyList(seqNode) && !optional {
		need := "a listener needs at least one route (in routes or hosts)"
		if f.path != "spec" {
			need = "a host needs at least one route"
		}
		p.add(orNode(seqNode, f.line(key)), "%s: %s", path, need)
	}
	var routes []Route
	var refs []ref
	for i, it := range items {
		r, cref := parseRoute(p.mapping(it, path+"["+strconv.Itoa(i)+"]"))
		routes = append(routes, r)
		if cref.line > 0 {
			refs = append(refs, cref)
		}
	}
	return routes, refs
}

// parseHosts reads spec.hosts: virtual hosts whose domains are unique
// across the listener. With catchAll (top-level routes), "*" is taken.
func parseHosts(spec *fields, catchAll bool, refs *listenerRefs) []VirtualHost {
	items, _ := spec.seq("hosts")
	seen := map[string]int{}
	if catchAll {
		seen[catchAllDomain] = spec.line("routes").Line
	}
	var hosts []VirtualHost
	serverNames := map[string]int{}
	for i, it := range items {
		path := "spec.hosts[" + strconv.Itoa(i) + "]"
		hf := spec.p.mapping(it, path)
		vh := VirtualHost{Domains: parseDomains(hf, seen)}
		var rrefs []ref
		vh.Routes, rrefs = parseRoutes(hf, path+".routes", false)
		if vh.TLS = parseTLS(hf, &refs.tls); vh.TLS != nil {
			checkServerNames(hf, vh, serverNames)
		}
		hf.finish()
		hosts = append(hosts, vh)
		refs.clusters = append(refs.clusters, rrefs...)
	}
	return hosts
}

// parseDomains reads a host's domains, recording each in seen (domain →
// line) so that no two hosts of a listener claim one domain: Envoy would
// reject the whole route configuration.
func parseDomains(hf *fields, seen map[string]int) []string {
	items, seqNode := hf.seq("domains")
	if len(items) == 0 && emptyList(seqNode) {
		hf.p.add(orNode(seqNode, hf.line("domains")), "%s: a host needs at least one domain", hf.sub("domains"))
	}
	var out []string
	for j, it := range items {
		path := hf.sub("domains[" + strconv.Itoa(j) + "]")
		d, ok := parseDomain(hf.p, path, it)
		if !ok {
			continue
		}
		if first, dup := seen[d]; dup {
			what := "line " + strconv.Itoa(first)
			if d == catchAllDomain {
				what += ", the top-level routes"
			}
			hf.p.add(it, "%s: domain %q is already served (%s); each domain belongs to one host", path, d, what)
			continue
		}
		seen[d] = it.Line
		out = append(out, d)
	}
	return out
}

// parseDomain reads the list item it at path as a domain, lower-cased,
// reporting it when it is not a string or not a valid domain.
func parseDomain(p *problems, path string, it *yaml.Node) (string, bool) {
	if it.Kind != yaml.ScalarNode {
		p.add(it, "%s: must be a string", path)
		return "", false
	}
	d := strings.ToLower(it.Value)
	if msg := checkDomain(d); msg != "" {
		p.add(it, "%s: %q %s", path, it.Value, msg)
		return "", false
	}
	return d, true
}

// checkDomain applies Envoy's rules for virtual host domains: a host name
// with an optional :port or :*, where the name may be "*" alone or carry
// one wildcard at its start (*.example.com) or end (example.*).
func checkDomain(d string) string {
	name, port := splitDomainPort(d)
	if n, err := strconv.ParseUint(port, 10, 16); port != "" && port != "*" && (err != nil || n == 0) {
		return "has an invalid port (want 1-65535 or *)"
	}
	switch {
	case name == catchAllDomain:
		return ""
	case strings.Count(name, "*") > 1:
		return "has more than one wildcard"
	case strings.HasPrefix(name, "*"):
		name = strings.TrimPrefix(strings.TrimPrefix(name[1:], "."), "-")
	case strings.HasSuffix(name, "*"):
		name = strings.TrimSuffix(name[:len(name)-1], ".")
	case strings.Contains(name, "*"):
		return "has a wildcard inside (allowed only as the first or last character)"
	}
	if ip := strings.TrimSuffix(strings.TrimPrefix(name, "["), "]"); net.ParseIP(ip) != nil {
		return ""
	}
	if name == "" || len(name) > 253 || !hostRE.MatchString(name) {
		return "is not a host name"
	}
	return ""
}

// splitDomainPort splits "host:port", "[v6]:port" and "host"; port is ""
// when absent.
func splitDomainPort(d string) (name, port string) {
	if strings.HasPrefix(d, "[") {
		if i := strings.Index(d, "]"); i >= 0 {
			name, rest := d[:i+1], d[i+1:]
			if rest == "" {
				return name, ""
			}
			if p, ok := strings.CutPrefix(rest, ":"); ok {
				return name, p
			}
		}
		return d, ""
	}
	if i := strings.LastIndexByte(d, ':'); i >= 0 {
		return d[:i], d[i+1:]
	}
	return d, ""
}
