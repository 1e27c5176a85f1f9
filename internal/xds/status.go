package xds

import (
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// This file holds what the server reports about nodes (status --json, the
// status page, peers) and the helpers that shape it (node labels, bounded
// one-line text); tracker.go keeps it up to date as streams come and go.

// MaxNackDetail caps how much of a NACK's error detail is kept and logged:
// Envoy's messages are a line or two, and an unbounded one from a buggy or
// hostile client must not grow the log, the status document or memory.
const MaxNackDetail = 4 << 10

// NodeStatus is what the server knows about one connected Envoy.
type NodeStatus struct {
	ID      string `json:"id"`
	Cluster string `json:"cluster"`
	// Labels and IgnoredLabels are shared with the server's own record of
	// the node: read them, never change them.
	Labels map[string]string `json:"labels"`
	// Identity is the node's client certificate identity, "" without one.
	Identity string `json:"identity,omitempty"`
	// IgnoredLabels are labels the node sent with a value that is not a
	// string (e.g. an unquoted yes in a YAML bootstrap became a boolean).
	// Selectors never match them.
	IgnoredLabels []string `json:"ignoredLabels,omitempty"`
	// Group is the key the node's snapshot is shared under: its label
	// set's key and, after '#', its rollout bucket (0-99).
	Group string `json:"group"`
	// Connected is when the node's oldest open stream opened.
	Connected time.Time `json:"connected"`
	Delta     bool      `json:"delta"` // incremental (delta) xDS
	Streams   int       `json:"streams"`
	// Types holds, per type URL, the last version sent and ACKed.
	Types    map[string]TypeStatus `json:"types"`
	LastNack *Nack                 `json:"lastNack,omitempty"`
	// Plugins is, per plugin sent to the node, the module and whether the
	// node runs it. A NACK Envoy sends while it fetches a module it had not
	// cached is expected: it shows here as pending, not as LastNack.
	Plugins []PluginStatus `json:"plugins"`
	// Replica is the control plane replica holding the node's stream, and
	// Unreachable marks a node of a replica not heard from lately; the
	// server leaves both empty, the control plane's fleet view fills them.
	Replica     string `json:"replica,omitempty"`
	Unreachable bool   `json:"unreachable,omitempty"`
	// Telemetry is what the node's Envoy reports on its metrics stream,
	// nil when it reports nothing.
	Telemetry *NodeTelemetry `json:"telemetry,omitempty"`
}

// TypeStatus is one resource type's delivery state on a node.
type TypeStatus struct {
	Sent  string `json:"sent"`
	Acked string `json:"acked"`
}

// Nack is the last configuration a node rejected.
type Nack struct {
	TypeURL string    `json:"typeUrl"`
	Version string    `json:"version"` // the rejected version, empty if unknown
	Error   string    `json:"error"`   // Envoy's error_detail message, at most MaxNackDetail bytes
	Time    time.Time `json:"time"`
}

// NodeDenial is a node the server refused to serve (NodeAccess, a bad or
// switched node, a withdrawn grant). A module a node refused is a module
// refusal (see refusals.go), a different thing.
type NodeDenial struct {
	Identity string    `json:"identity"` // the client certificate's identity
	NodeID   string    `json:"nodeId"`
	Reason   string    `json:"reason"`
	Time     time.Time `json:"time"`
}

// maxDenials bounds the node denials kept for status.
const maxDenials = 32

// NodeLabels returns the string-valued entries of node.metadata.labels.
// Other values are ignored: selectors compare strings.
func NodeLabels(node *corev3.Node) map[string]string {
	labels, _ := nodeLabels(node)
	return labels
}

// nodeLabels returns the string labels and, sorted, the keys of labels
// whose value is not a string.
func nodeLabels(node *corev3.Node) (map[string]string, []string) {
	fields := node.GetMetadata().GetFields()["labels"].GetStructValue().GetFields()
	labels := make(map[string]string, len(fields))
	var ignored []string
	for k, v := range fields {
		if s, ok := v.GetKind().(*structpb.Value_StringValue); ok {
			labels[k] = s.StringValue
		} else {
			ignored = append(ignored, k)
		}
	}
	sort.Strings(ignored)
	return labels, ignored
}

// truncate cuts s to at most n bytes on a rune boundary, saying so.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "… (truncated)"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// oneLine keeps multi-line Envoy error details on one log line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
