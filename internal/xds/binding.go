package xds

import (
	"context"
	"errors"
	"fmt"
	"net"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// A stream is bound to the node of its first request: the delivery cache
// serves every request of a stream from the group the stream was admitted
// into (see deliveryCache.direct), whatever node a later request names.
// Envoy sends the same node on every request of a stream, or none after
// the first; any other node ends the stream, so that a client admitted as
// one node is told it cannot ask as another (one its identity is not
// granted) rather than being quietly served as the first.

// keepBinding checks a later request's node against the node its stream
// was admitted as. A request without a node is the bound node's. A node
// whose id, cluster or labels differ ends the stream with PermissionDenied,
// recorded as a refusal naming both nodes.
func (s *Server) keepBinding(key streamKey, identity string, node *corev3.Node) error {
	if node == nil {
		return nil
	}
	bound := s.tracker.boundNode(key)
	if bound == nil || sameNode(bound, node) {
		return nil
	}
	why := fmt.Errorf("the stream was admitted as node %q (cluster %q, labels %v) and then asked as node %q (cluster %q, labels %v): "+
		"a stream serves the node of its first request only", bound.GetId(), bound.GetCluster(), labelsOf(bound),
		node.GetId(), node.GetCluster(), labelsOf(node))
	end := s.deny(key, identity, node, why)
	s.tracker.revoke(key, end)
	return end
}

// sameNode reports whether two requests name the same node: the same id,
// cluster and labels (the labels that select its configuration, including
// those selectors ignore).
func sameNode(a, b *corev3.Node) bool {
	if a.GetId() != b.GetId() || a.GetCluster() != b.GetCluster() {
		return false
	}
	// Compared in place: it runs on every request of every stream.
	fa := a.GetMetadata().GetFields()["labels"].GetStructValue().GetFields()
	fb := b.GetMetadata().GetFields()["labels"].GetStructValue().GetFields()
	if len(fa) != len(fb) {
		return false
	}
	for k, va := range fa {
		vb, ok := fb[k]
		if !ok {
			return false
		}
		sa, aStr := va.GetKind().(*structpb.Value_StringValue)
		sb, bStr := vb.GetKind().(*structpb.Value_StringValue)
		if aStr != bStr || (aStr && sa.StringValue != sb.StringValue) {
			return false
		}
	}
	return true
}

func labelsOf(n *corev3.Node) map[string]string {
	l, _ := nodeLabels(n)
	return l
}

// boundNode is the node a stream attached as, nil before its first request
// or for an unknown stream.
func (t *tracker) boundNode(key streamKey) *corev3.Node {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st := t.streams[key]; st != nil && st.attached {
		return st.node
	}
	return nil
}

// revoke ends a stream at once with end, when the gRPC server has the
// interceptor; without it the stream ends as its callback returns end.
func (t *tracker) revoke(key streamKey, end error) {
	t.mu.Lock()
	st := t.streams[key]
	t.mu.Unlock()
	if st != nil && st.stream != nil {
		st.stream.revoke(end)
	}
}

// sourceOf is the source a stream comes from (see sourceKey), "" if
// unknown.
func (t *tracker) sourceOf(key streamKey) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st := t.streams[key]; st != nil && st.ip != "" {
		return sourceKey(st.ip)
	}
	return ""
}

// errUnknownStream ends a request on a stream the server did not see open.
var errUnknownStream = errors.New("wasmxds: request on a stream not opened here")

// Bounds of what a node may claim: an Envoy's id and labels are short, and
// every label set costs memory per group, so a node past them is refused
// rather than kept (a 4 MB label would otherwise be stored, hashed and
// logged again and again).
const (
	maxNodeID      = 1024
	maxNodeCluster = 1024
	maxLabels      = 64
	maxLabelKey    = 317 // a Kubernetes label key: a 253-byte prefix, '/', a 63-byte name
	maxLabelValue  = 1024
	// maxNodeMetadata bounds all of node.metadata, labels and other keys.
	maxNodeMetadata = 64 << 10
)

// checkNode refuses a first request that names no node, or a node past
// the bounds above.
func checkNode(node *corev3.Node) error {
	switch {
	case node == nil || node.GetId() == "":
		return errors.New("the first request of a stream must name its node (node.id)")
	case len(node.GetId()) > maxNodeID:
		return fmt.Errorf("node.id is %d bytes, more than %d", len(node.GetId()), maxNodeID)
	case len(node.GetCluster()) > maxNodeCluster:
		return fmt.Errorf("node.cluster is %d bytes, more than %d", len(node.GetCluster()), maxNodeCluster)
	}
	if n := proto.Size(node.GetMetadata()); n > maxNodeMetadata {
		return fmt.Errorf("node.metadata is %d bytes, more than %d", n, maxNodeMetadata)
	}
	fields := node.GetMetadata().GetFields()["labels"].GetStructValue().GetFields()
	if len(fields) > maxLabels {
		return fmt.Errorf("%d labels, more than %d", len(fields), maxLabels)
	}
	for k, v := range fields {
		if len(k) > maxLabelKey {
			return fmt.Errorf("a label key is %d bytes, more than %d", len(k), maxLabelKey)
		}
		if len(v.GetStringValue()) > maxLabelValue {
			return fmt.Errorf("label %s is %d bytes, more than %d", truncate(k, 64), len(v.GetStringValue()), maxLabelValue)
		}
	}
	return nil
}

// streamIP is the IP address an ADS stream comes from, "" if unknown.
func streamIP(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	host, _, err := net.SplitHostPort(p.Addr.String())
	if err != nil {
		return ""
	}
	return host
}
