package catalog

import "fmt"

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

// Listener is an HTTP listener pushed to the Envoys its selector matches.
type Listener struct {
	Name     string
	Source   Source
	Selector map[string]string // empty matches every node
	Address  string            // defaults to 0.0.0.0
	Port     uint32
	Routes   []Route // in spec order; Envoy matches the first
}

// Route sends requests that match to a cluster.
type Route struct {
	Prefix  string // exactly one of Prefix and Path is set
	Path    string
	Cluster string
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

// Fail strategies.
const (
	FailClose FailStrategy = "FAIL_CLOSE"
	FailOpen  FailStrategy = "FAIL_OPEN"
)

// Plugin is one Wasm filter to insert into matching listeners' HTTP filter
// chains.
type Plugin struct {
	// Name is unique among plugins (wasmxds.dev and Istio WasmPlugins share
	// one namespace of names).
	Name       string
	Source     Source
	APIVersion string            // which apiVersion the document used
	Selector   map[string]string // empty matches every node
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
	Config          string // pluginConfig as compact JSON; empty when absent
	// SecretRefs fill values of Config from files when the configuration
	// is pushed; Config never holds them.
	SecretRefs   []SecretRef `json:",omitempty"`
	RootID       string      // pluginName
	Phase        Phase
	Priority     int32
	FailStrategy FailStrategy
	Env          []EnvVar
	Ports        []uint32 // from match[].ports; empty matches every listener
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
