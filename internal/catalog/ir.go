package catalog

import (
	"fmt"
	"time"
)

// State is the desired state read from a config directory. Slices are sorted
// deterministically so that equal inputs give equal States.
type State struct {
	// Listeners sorted by name.
	Listeners []Listener
	// Clusters sorted by name.
	Clusters []Cluster
	// Plugins sorted by phase (AUTHN, AUTHZ, STATS, unspecified), then
	// priority descending, then name.
	Plugins []Plugin
	// NodeAccess sorted by name: what identities may claim, when nodes
	// authenticate with client certificates.
	NodeAccess []NodeAccess
	// Errors lists every problem found, sorted by file and line. A file with
	// errors keeps contributing its last good documents (see Watch).
	Errors []SpecError
	// Warnings lists things that are valid but probably not what the user
	// meant (e.g. a plugin match port no listener uses), sorted like Errors.
	// They never exclude a document.
	Warnings []SpecError
}

// Source is where a document came from.
type Source struct {
	File string // path relative to the config directory
	Line int    // 1-based line of the document's first key
}

// String formats the source as file:line.
func (s Source) String() string { return fmt.Sprintf("%s:%d", s.File, s.Line) }

// SpecError is one problem in a spec file, reported as "file:line: message".
type SpecError struct {
	File    string
	Line    int
	Message string
}

// Error implements error.
func (e SpecError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Message) }

// Listener is a listener pushed to the Envoys its selector matches: HTTP
// (routes grouped by host) or TCP (every connection to one cluster).
type Listener struct {
	Name     string
	Source   Source
	Selector map[string]string // empty matches every node
	Address  string            // defaults to 0.0.0.0
	Port     uint32
	// Protocol is ProtocolHTTP (the default, spelled "") or ProtocolTCP.
	Protocol Protocol `json:",omitempty"`
	// Routes are the routes of the catch-all host "*", in spec order;
	// Envoy matches the first. Empty when every route belongs to a Host.
	Routes []Route
	// Hosts group routes by the Host header; a request for a host none of
	// them (and no catch-all route) serves is answered 404 by Envoy.
	Hosts []VirtualHost `json:",omitempty"`
	// TLS terminates TLS with this certificate; nil: plain text unless a
	// Host has its own certificate.
	TLS *TLS `json:",omitempty"`
	// Cluster receives every connection of a TCP listener.
	Cluster string `json:",omitempty"`
}

// Protocol is what a listener speaks to its clients.
type Protocol string

// Listener protocols.
const (
	ProtocolHTTP Protocol = ""
	ProtocolTCP  Protocol = "TCP"
)

// VirtualHost is a group of routes for the domains of the Host header it
// serves.
type VirtualHost struct {
	// Domains in lowercase, unique across the listener: host, host:port,
	// host:* and Envoy's wildcards (*.example.com, example.*).
	Domains []string
	Routes  []Route // in spec order; Envoy matches the first
	// TLS is the certificate served to clients whose SNI is one of the
	// domains; nil uses the listener's.
	TLS *TLS `json:",omitempty"`
}

// TLS is a certificate and its key, as paths on the Envoy's filesystem.
type TLS struct {
	CertFile string
	KeyFile  string
}

// Route sends requests that match to a cluster.
type Route struct {
	Prefix  string // exactly one of Prefix and Path is set
	Path    string
	Cluster string
	// Headers must all match too.
	Headers []HeaderMatch `json:",omitempty"`
	// Timeout for the whole request; 0 keeps the default (15s).
	Timeout time.Duration `json:",omitempty"`
	// Retries; nil: none.
	Retries *Retries `json:",omitempty"`
}

// HeaderMatch requires a request header: equal to Exact, starting with
// Prefix, or (Present) there with any value. Exactly one is set.
type HeaderMatch struct {
	Name    string // lowercase
	Exact   string `json:",omitempty"`
	Prefix  string `json:",omitempty"`
	Present bool   `json:",omitempty"`
}

// Retries says when and how often Envoy retries a request.
type Retries struct {
	Attempts uint32
	On       string // Envoy retry_on conditions, comma-separated
}

// Cluster is an upstream service.
type Cluster struct {
	Name      string
	Source    Source
	Endpoints []Endpoint
}

// Endpoint is a host:port pair; Host may be an IP address or a DNS name.
type Endpoint struct {
	Host string
	Port uint32
}

// Phase orders plugins within a filter chain, as in Istio's WasmPlugin.
type Phase int

// Phases in filter-chain order.
const (
	PhaseAuthn Phase = iota
	PhaseAuthz
	PhaseStats
	PhaseUnspecified // just before the router
)

// String returns the spec spelling of the phase.
func (p Phase) String() string {
	switch p {
	case PhaseAuthn:
		return "AUTHN"
	case PhaseAuthz:
		return "AUTHZ"
	case PhaseStats:
		return "STATS"
	default:
		return "UNSPECIFIED_PHASE"
	}
}

// PullPolicy says when a module reference is re-resolved.
type PullPolicy string

// Pull policies.
const (
	PullIfNotPresent PullPolicy = "IfNotPresent"
	PullAlways       PullPolicy = "Always"
)

// FailStrategy says what Envoy does when a plugin cannot run.
type FailStrategy string

// Fail strategies. FailReload starts a new VM, after a backoff, for a
// plugin whose VM failed at run time (a trap, a Go panic); any other
// failure, and a module that cannot be fetched, fail closed.
const (
	FailClose  FailStrategy = "FAIL_CLOSE"
	FailOpen   FailStrategy = "FAIL_OPEN"
	FailReload FailStrategy = "FAIL_RELOAD"
)

// Plugin is one Wasm filter to insert into matching listeners' HTTP filter
// chains.
type Plugin struct {
	// Name is unique among plugins (wasmxds.dev and Istio WasmPlugins share
	// one namespace of names).
	Name       string
	Source     Source
	APIVersion string // which apiVersion the document used
	// Kind is the document's kind when it is not WasmPlugin
	// (TrafficExtension, FilterDeployment, ASMFilterDeployment, EnvoyFilter).
	Kind     string            `json:",omitempty"`
	Selector map[string]string // empty matches every node
	// URL is the canonical spelling of the module reference (modref.Ref's
	// String): what the fetcher pulls, status shows and logs name.
	URL        string
	SHA256     string // optional pin: 64 lowercase hex, manifest or module digest
	PullPolicy PullPolicy
	PullSecret string // docker config.json file or entry name; empty for default credentials
	// VerificationKey, when set, is the PEM public key (canonical form) the
	// module's OCI manifest must carry a cosign signature of; KeyFingerprint
	// names it ("sha256:<hex>" of its DER form) in status and logs.
	VerificationKey string `json:",omitempty"`
	KeyFingerprint  string `json:",omitempty"`
	// Config is what the filter receives as its configuration: pluginConfig
	// as compact JSON, or a string given as such (wasmxds.dev pluginConfig,
	// or a StringValue of the older manifests) exactly as written; empty
	// when absent.
	Config string
	// SecretRefs fill values of Config from files when the configuration
	// is pushed; Config never holds them.
	SecretRefs   []SecretRef `json:",omitempty"`
	RootID       string      // pluginName
	Phase        Phase
	Priority     int32
	FailStrategy FailStrategy
	Env          []EnvVar
	Ports        []uint32 // from match[].ports; empty matches every listener
	// Type is PluginHTTP (spelled "") or PluginNetwork.
	Type PluginType `json:",omitempty"`
	// Targets limit the plugin to some hosts and paths (wasmxds.dev only):
	// it runs on a route when any target selects it. Empty: every route.
	Targets []Target `json:",omitempty"`
	// Rollout, when set, sends another module to part of the nodes the
	// plugin selects (see Rollout.Active).
	Rollout *Rollout `json:",omitempty"`
	// VMID, when set, leads the Envoy vm_id of the plugin's VM in place of
	// its name (the vmId or id the older manifests gave).
	VMID string `json:",omitempty"`
	// Lua, when set, is the source of an Envoy Lua HTTP filter that takes
	// the plugin's place in the chain (a TrafficExtension's lua.inlineCode).
	// Such a plugin has no module: URL is empty.
	Lua string `json:",omitempty"`
}

// HasModule reports whether the plugin runs a Wasm module that must be
// fetched (every plugin except a Lua one).
func (p Plugin) HasModule() bool { return p.Lua == "" }

// PluginType says which filter chain a plugin joins.
type PluginType string

// Plugin types.
const (
	PluginHTTP    PluginType = ""
	PluginNetwork PluginType = "NETWORK"
)

// Target is one match entry of a plugin limited to hosts and paths. A route
// is selected when its listener's port is in Ports (or Ports is empty), its
// host has one of Hosts among its domains (or Hosts is empty), and the
// requests it takes lie within one of Paths (or Paths is empty).
type Target struct {
	Ports []uint32    `json:",omitempty"`
	Hosts []string    `json:",omitempty"` // lowercase
	Paths []PathMatch `json:",omitempty"`
}

// PathMatch is a path prefix or an exact path; exactly one is set.
type PathMatch struct {
	Prefix string `json:",omitempty"`
	Exact  string `json:",omitempty"`
}

// EnvVar is a VM environment variable. With FromHost, Value is empty and the
// variable is read from Envoy's own environment.
type EnvVar struct {
	Name     string
	Value    string
	FromHost bool
}

// Matches reports whether a selector (matchLabels) selects a node with the
// given labels. An empty selector selects every node.
func Matches(selector, labels map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
