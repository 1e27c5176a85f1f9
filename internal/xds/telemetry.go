package xds

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// PluginRuntime is how a plugin ran on one node over the last minute, from
// what the node's Envoy reported on its metrics stream: the requests and
// 5xx responses of the node's listeners that carry the plugin, and the
// plugin's VM reloads (Envoy's vm_reload_success and vm_reload_failure).
type PluginRuntime struct {
	Requests   uint64    `json:"requests"`
	Errors5xx  uint64    `json:"errors5xx"`
	VMReloads  uint64    `json:"vmReloads"`
	LastReport time.Time `json:"lastReport"`
}

// NodeTelemetry is what a node's Envoy reported about its Wasm runtime:
// VMs created over the last minute, VMs active at the last report, and the
// plugins' own metrics (Envoy's wasmcustom namespace), a bounded number.
type NodeTelemetry struct {
	LastReport    time.Time      `json:"lastReport"`
	VMsCreated    uint64         `json:"vmsCreated"`
	VMsActive     uint64         `json:"vmsActive"`
	CustomMetrics []CustomMetric `json:"customMetrics,omitempty"`
}

// CustomMetric is one of a plugin's own metrics: a counter's increase over
// the last minute, or a gauge's last value.
type CustomMetric struct {
	Name  string  `json:"name"`
	Type  string  `json:"type"` // counter or gauge
	Value float64 `json:"value"`
}

// PeerIdentity is the identity of a gRPC stream's verified client
// certificate (see CertificateIdentity), "" without one.
func PeerIdentity(ctx context.Context) string { return peerIdentity(ctx) }

// StreamNode is the node a metrics stream is bound to: the id, cluster
// and labels of its first message's node, without the rest of it, which
// thousands of open streams would otherwise each keep.
type StreamNode struct {
	ID, Cluster   string
	Labels        map[string]string
	IgnoredLabels []string // sorted: labels whose value is not a string
}

// NodeOf is the StreamNode of a node.
func NodeOf(n *corev3.Node) StreamNode {
	labels, ignored := nodeLabels(n)
	return StreamNode{ID: n.GetId(), Cluster: n.GetCluster(), Labels: labels, IgnoredLabels: ignored}
}

// Is reports whether n names this node: the same id, cluster and labels,
// as an ADS stream's later requests must (see sameNode). It allocates
// nothing.
func (b *StreamNode) Is(n *corev3.Node) bool {
	return b.ID == n.GetId() && b.Cluster == n.GetCluster() && sameLabels(n, b.Labels, b.IgnoredLabels)
}

// AttachedAs reports whether a node has an ADS stream open on this server
// under the same client identity ("" without one) and as the same node:
// id, cluster and labels. A metrics report counts only then, so that an
// identity allowed to claim a node's labels cannot report for another
// node of those labels. It is asked for every metrics message and
// allocates nothing.
func (s *Server) AttachedAs(identity string, node *StreamNode) bool {
	s.tracker.mu.Lock()
	defer s.tracker.mu.Unlock()
	n, ok := s.tracker.nodes[node.ID]
	return ok && n.Identity == identity && n.Cluster == node.Cluster &&
		maps.Equal(n.Labels, node.Labels) && slices.Equal(n.IgnoredLabels, node.IgnoredLabels)
}

// sameLabels reports whether nodeLabels(node) would return labels and
// ignored (sorted), without building them: every label of the node is one
// of them, and there are as many.
func sameLabels(node *corev3.Node, labels map[string]string, ignored []string) bool {
	fields := node.GetMetadata().GetFields()["labels"].GetStructValue().GetFields()
	if len(fields) != len(labels)+len(ignored) {
		return false
	}
	for k, v := range fields {
		if sv, ok := v.GetKind().(*structpb.Value_StringValue); ok {
			if l, ok := labels[k]; !ok || l != sv.StringValue {
				return false
			}
		} else if _, found := slices.BinarySearch(ignored, k); !found {
			return false
		}
	}
	return true
}

// Connected reports whether a node has an ADS stream open on this server.
func (s *Server) Connected(nodeID string) bool {
	s.tracker.mu.Lock()
	defer s.tracker.mu.Unlock()
	_, ok := s.tracker.nodes[nodeID]
	return ok
}

// A plugin's runtime needs attention when its VM was reloaded, or when at
// least attentionMinRequests requests saw a 5xx rate of AttentionErrorRate
// or more.
const (
	AttentionErrorRate   = 0.05
	attentionMinRequests = 20
)

// ErrorRate is Errors5xx over Requests, 0 without requests.
func (r PluginRuntime) ErrorRate() float64 {
	if r.Requests == 0 {
		return 0
	}
	return float64(r.Errors5xx) / float64(r.Requests)
}

// Attention says why the plugin's runtime on the node needs a look, ""
// when it does not.
func (r PluginRuntime) Attention() string {
	var why []string
	if r.VMReloads > 0 {
		why = append(why, fmt.Sprintf("VM reloaded %d times", r.VMReloads))
	}
	if r.Requests >= attentionMinRequests && r.ErrorRate() >= AttentionErrorRate {
		why = append(why, fmt.Sprintf("5xx rate %.1f%%", 100*r.ErrorRate()))
	}
	return strings.Join(why, ", ")
}

// Summary is the runtime in a few words: "120 req, 3 5xx (2.5%), 0 VM reloads".
func (r PluginRuntime) Summary() string {
	return fmt.Sprintf("%d req, %d 5xx (%.1f%%), %d VM reloads", r.Requests, r.Errors5xx, 100*r.ErrorRate(), r.VMReloads)
}
