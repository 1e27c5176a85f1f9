package catalog

import (
	"net"
	"regexp"
	"strconv"

	"gopkg.in/yaml.v3"
)

// The API versions this package reads.
const (
	APIVersion      = "wasmxds.dev/v1alpha1"
	IstioAPIVersion = "extensions.istio.io/v1alpha1"
	// The older ways to put Wasm filters on Envoy, each read for its one
	// kind: wasme's FilterDeployment, Alibaba Cloud ASM's
	// ASMFilterDeployment and Istio's EnvoyFilter.
	WasmeAPIVersion           = "wasme.io/v1"
	ASMAPIVersion             = "istio.alibabacloud.com/v1beta1"
	IstioNetworkingAPIVersion = "networking.istio.io/v1alpha3"
)

// Spec kinds. Both API versions' WasmPlugins share KindWasmPlugin.
const (
	KindListener   = "Listener"
	KindCluster    = "Cluster"
	KindWasmPlugin = "WasmPlugin"
	// The other kinds that become plugins. Every plugin kind shares one
	// set of names.
	KindTrafficExtension    = "TrafficExtension"
	KindFilterDeployment    = "FilterDeployment"
	KindASMFilterDeployment = "ASMFilterDeployment"
	KindEnvoyFilter         = "EnvoyFilter"
)

// pluginKinds maps the apiVersion and kind of every document that becomes a
// plugin, besides WasmPlugin, to its parser.
var pluginKinds = map[[2]string]func(spec *fields, dir string) (*Plugin, pluginParse){
	{IstioAPIVersion, KindTrafficExtension}:      parseTrafficExtension,
	{WasmeAPIVersion, KindFilterDeployment}:      parseFilterDeployment,
	{ASMAPIVersion, KindASMFilterDeployment}:     parseASMFilterDeployment,
	{IstioNetworkingAPIVersion, KindEnvoyFilter}: parseEnvoyFilter,
}

// nameRE is a DNS-1123 subdomain, as Kubernetes requires of object names.
// Keeping to it means every name is also a valid Envoy resource name and can
// never collide with names the control plane generates (which use '_').
var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// labelRE is a DNS-1123 label, the rule for Kubernetes namespaces.
var labelRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// hostRE accepts DNS names as resolvers do (letters, digits, '-', '_').
var hostRE = regexp.MustCompile(`^[A-Za-z0-9_]([-A-Za-z0-9_]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([-A-Za-z0-9_]*[A-Za-z0-9_])?)*\.?$`)

// docKey identifies a document: every plugin kind has kind WasmPlugin here,
// since plugins of all kinds share one set of names.
type docKey struct{ kind, name string }

// ref is a value inside a document that other documents must agree with,
// kept with its line for cross-document errors.
type ref struct {
	value string
	path  string
	line  int
}

// document is one valid spec document.
type document struct {
	key      docKey
	kind     string // the document's own kind, for messages
	source   Source
	listener *Listener
	cluster  *Cluster
	plugin   *Plugin
	access   *NodeAccess
	routes   []ref    // listener: cluster references
	tls      []tlsRef // listener: certificates
	ports    []ref    // plugin: match ports
	// targetsAt is a plugin's first match[].hosts or paths, which
	// Istio's apiVersion does not have.
	targetsAt *yaml.Node
}

// keyKind is the kind under which a document's name must be unique.
func keyKind(kind string) string {
	switch kind {
	case KindTrafficExtension, KindFilterDeployment, KindASMFilterDeployment, KindEnvoyFilter:
		return KindWasmPlugin
	}
	return kind
}

// parseDocument decodes one document. It returns nil when the document had
// errors (reported to p): a document is either wholly valid or not applied.
func parseDocument(p *problems, root *yaml.Node, dir string) *document {
	before := len(p.errs)
	doc := decodeDocument(p, root, dir)
	if len(p.errs) > before {
		return nil
	}
	return doc
}

// decodeDocument decodes one document as far as it can, reporting problems
// to p; it returns nil only when the document is not a mapping or its
// apiVersion and kind are not read here.
func decodeDocument(p *problems, root *yaml.Node, dir string) *document {
	if root = resolve(root); root.Kind != yaml.MappingNode {
		p.add(root, "document must be a mapping with apiVersion, kind, metadata and spec")
		return nil
	}
	top := p.mapping(root, "")
	doc := &document{source: Source{File: p.file, Line: firstLine(root)}}
	apiVersion, kind, ok := checkKind(p, top)
	if !ok {
		return nil
	}
	doc.key = docKey{kind: keyKind(kind), name: parseMetadata(p, top)}
	doc.kind = kind
	spec := top.value("spec")
	if spec == nil {
		p.add(top.line("spec"), "missing spec")
	} else {
		if sf := p.mapping(spec, "spec"); sf.isMap() {
			parseSpec(p, doc, sf, dir, apiVersion)
		}
	}
	if doc.plugin != nil {
		doc.plugin.APIVersion = apiVersion
		if kind != KindWasmPlugin {
			doc.plugin.Kind = kind
		}
		if apiVersion == IstioAPIVersion && doc.targetsAt != nil {
			p.add(doc.targetsAt, "spec.match: hosts and paths are not in %s; use apiVersion %s to limit a plugin to hosts and paths",
				IstioAPIVersion, APIVersion)
		}
	}
	top.ignore("status") // written by Kubernetes, meaningless in a file
	top.finish()
	return doc
}

func firstLine(root *yaml.Node) int {
	root = resolve(root)
	if root != nil && root.Kind == yaml.MappingNode && len(root.Content) > 0 {
		return root.Content[0].Line
	}
	if root != nil && root.Line > 0 {
		return root.Line
	}
	return 1
}

func parseSpec(p *problems, doc *document, spec *fields, dir, apiVersion string) {
	src, name := doc.source, doc.key.name
	switch doc.kind {
	case KindListener:
		var refs listenerRefs
		doc.listener, refs = parseListener(spec)
		doc.routes, doc.tls = refs.clusters, refs.tls
		doc.listener.Name, doc.listener.Source = name, src
	case KindCluster:
		doc.cluster = parseCluster(spec)
		doc.cluster.Name, doc.cluster.Source = name, src
	case KindWasmPlugin:
		var pp pluginParse
		doc.plugin, pp = parsePlugin(spec, dir)
		doc.plugin.Name, doc.plugin.Source = name, src
		doc.ports, doc.targetsAt = pp.ports, pp.targetsAt
		if apiVersion != APIVersion {
			refuseNative(p, pp.native, apiVersion)
		}
	case KindNodeAccess:
		doc.access = parseNodeAccess(spec)
		doc.access.Name, doc.access.Source = name, src
	default:
		pl, pp := pluginKinds[[2]string{apiVersion, doc.kind}](spec, dir)
		pl.Name, pl.Source = name, src
		doc.plugin, doc.ports, doc.targetsAt = pl, pp.ports, pp.targetsAt
		refuseNative(p, pp.native, apiVersion)
	}
	spec.finish()
}

// refuseNative reports fields that only wasmxds.dev/v1alpha1 has.
func refuseNative(p *problems, native []nativeField, apiVersion string) {
	for _, f := range native {
		p.add(f.at, "%s is not in %s; use apiVersion %s for it", f.what, apiVersion, APIVersion)
	}
}

// checkKind validates apiVersion and kind. On failure the rest of the
// document is not decoded: its fields would only add noise.
func checkKind(p *problems, top *fields) (apiVersion, kind string, ok bool) {
	apiVersion, avNode := top.str("apiVersion")
	kind, kindNode := top.str("kind")
	switch {
	case (avNode == nil && !top.missing("apiVersion")) || (kindNode == nil && !top.missing("kind")):
		// not a string; already reported
	case avNode == nil:
		p.add(top.node, "missing apiVersion (want %s or %s)", APIVersion, IstioAPIVersion)
	case kindNode == nil:
		p.add(top.node, "missing kind (want Listener, Cluster, WasmPlugin or NodeAccess)")
	case apiVersion == APIVersion && (kind == KindListener || kind == KindCluster || kind == KindWasmPlugin || kind == KindNodeAccess):
		return apiVersion, kind, true
	case apiVersion == IstioAPIVersion && kind == KindWasmPlugin, pluginKinds[[2]string{apiVersion, kind}] != nil:
		return apiVersion, kind, true
	case apiVersion == APIVersion:
		p.add(kindNode, "unknown kind %q for %s (want Listener, Cluster, WasmPlugin or NodeAccess)", kind, apiVersion)
	case apiVersion == IstioAPIVersion:
		p.add(kindNode, "kind %q of %s is not supported (only WasmPlugin and TrafficExtension are)", kind, apiVersion)
	case otherKind(apiVersion) != "":
		p.add(kindNode, "kind %q of %s is not supported (only %s is)", kind, apiVersion, otherKind(apiVersion))
	default:
		p.add(avNode, "unknown apiVersion %q (want %s or %s)", apiVersion, APIVersion, IstioAPIVersion)
	}
	return "", "", false
}

// otherKind is the one kind read under one of the older ways' apiVersions,
// and empty for any other apiVersion.
func otherKind(apiVersion string) string {
	for k := range pluginKinds {
		if k[0] == apiVersion && apiVersion != IstioAPIVersion {
			return k[1]
		}
	}
	return ""
}

// parseMetadata returns metadata.name. Kubernetes bookkeeping fields that a
// `kubectl get -o yaml` dump contains are accepted and carry no meaning.
func parseMetadata(p *problems, top *fields) string {
	v := top.value("metadata")
	if v == nil {
		p.add(top.line("metadata"), "missing metadata.name")
		return ""
	}
	m := p.mapping(v, "metadata")
	name, nameNode := m.str("name")
	switch {
	case nameNode == nil && !m.missing("name"):
		// not a string; already reported
	case nameNode == nil || name == "":
		p.add(m.line("name"), "missing metadata.name")
	case len(name) > 253 || !nameRE.MatchString(name):
		p.add(nameNode, "metadata.name: %q is not a valid name: use lowercase letters, digits, '-' and '.', "+
			"starting and ending with a letter or digit, at most 253 characters", name)
	}
	if ns, n := m.str("namespace"); n != nil && (len(ns) > 63 || !labelRE.MatchString(ns)) {
		p.add(n, "metadata.namespace: %q is not a valid namespace", ns)
	}
	m.stringMap("labels")
	m.stringMap("annotations")
	m.reject("generateName", "names must be fixed; set metadata.name")
	m.ignore("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink")
	m.finish()
	return name
}

// parseSelector reads selector.matchLabels.
func parseSelector(spec *fields) map[string]string {
	v := spec.value("selector")
	if v == nil {
		return nil
	}
	sel := spec.p.mapping(v, spec.sub("selector"))
	labels := sel.stringMap("matchLabels")
	sel.finish()
	return labels
}

// emptyList reports whether a list field is absent or empty, as opposed to
// not being a list at all (which was already reported).
func emptyList(n *yaml.Node) bool {
	return n == nil || n.Kind == yaml.SequenceNode
}

func orNode(a, b *yaml.Node) *yaml.Node {
	if a != nil {
		return a
	}
	return b
}

// requiredPort reads a mandatory TCP port.
func requiredPort(f *fields, key string) uint32 {
	n, node, ok := f.integer(key, 1, 65535)
	if node == nil {
		f.p.add(f.line(key), "%s: missing (a port 1-65535)", f.sub(key))
	}
	if !ok {
		return 0
	}
	return uint32(n)
}

func parseCluster(spec *fields) *Cluster {
	p := spec.p
	c := &Cluster{}
	items, seqNode := spec.seq("endpoints")
	if len(items) == 0 && emptyList(seqNode) {
		p.add(orNode(seqNode, spec.line("endpoints")), "spec.endpoints: a cluster needs at least one host:port endpoint")
	}
	for i, it := range items {
		path := "spec.endpoints[" + strconv.Itoa(i) + "]"
		if it.Kind != yaml.ScalarNode {
			p.add(it, "%s: must be a \"host:port\" string", path)
			continue
		}
		ep, err := parseEndpoint(it.Value)
		if err != "" {
			p.add(it, "%s: %q %s", path, it.Value, err)
			continue
		}
		c.Endpoints = append(c.Endpoints, ep)
	}
	return c
}

func parseEndpoint(s string) (Endpoint, string) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return Endpoint{}, "is not host:port"
	}
	if net.ParseIP(host) == nil && (len(host) > 253 || !hostRE.MatchString(host)) {
		return Endpoint{}, "has an invalid host (want an IP address or a DNS name)"
	}
	n, err := strconv.ParseUint(port, 10, 32)
	if err != nil || n < 1 || n > 65535 {
		return Endpoint{}, "has an invalid port (want 1-65535)"
	}
	return Endpoint{Host: host, Port: uint32(n)}, ""
}
