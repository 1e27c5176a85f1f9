package xds

import (
	"context"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/wasmxds/wasmxds/internal/xdstest"
)

// deltaStream opens a raw delta ADS stream to addr.
func deltaStream(t *testing.T, addr string) discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesClient {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

// A stream's first request must name its node: a delta stream opened with
// none is refused, rather than left bound to nothing (a later request
// could then name any node and be served its configuration).
func TestFirstRequestWithoutANodeIsRefused(t *testing.T) {
	srv, addr, _ := startServer(t, ServerOptions{})
	srv.Update(testInput(8080, DeliveryLDS))
	stream := deltaStream(t, addr)
	if err := stream.Send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: xdstest.Node("a-1", "test", map[string]string{"app": "a"}),
		TypeUrl: resource.ListenerType})
	for {
		resp, err := stream.Recv()
		if err != nil {
			if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "must name its node") {
				t.Fatalf("stream ended with %v, want PermissionDenied: the first request must name its node", err)
			}
			return
		}
		if len(resp.GetResources()) > 0 {
			t.Fatalf("a stream whose first request named no node was sent %s", resp.GetTypeUrl())
		}
	}
}

// A node past the bounds (a huge label, too many labels, a huge id) is
// refused, and the refusal kept for status is short.
func TestOversizedNodesAreRefused(t *testing.T) {
	srv, addr, _ := startServer(t, ServerOptions{})
	srv.Update(testInput(8080, DeliveryLDS))
	many := map[string]string{}
	for i := range maxLabels + 1 {
		many[strings.Repeat("k", 3)+string(rune('a'+i%26))+strings.Repeat("x", i/26)] = "v"
	}
	for name, node := range map[string]*corev3.Node{
		"huge label":  xdstest.Node("n", "test", map[string]string{"app": strings.Repeat("x", 1<<20)}),
		"many labels": xdstest.Node("n", "test", many),
		"huge id":     xdstest.Node(strings.Repeat("n", 4096), "test", nil),
	} {
		stream := deltaStream(t, addr)
		if err := stream.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.ClusterType}); err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: %v, want PermissionDenied", name, err)
		}
	}
	for _, r := range srv.NodeDenials() {
		if len(r.Reason) > MaxNackDetail || len(r.NodeID) > maxNodeID {
			t.Errorf("a refusal keeps %d bytes of reason, %d of node id", len(r.Reason), len(r.NodeID))
		}
	}
	if len(srv.groups) != 0 {
		t.Errorf("%d groups made for refused nodes", len(srv.groups))
	}
}

// AttachedAs holds only for the identity and node (id, cluster, labels) an
// ADS stream attached as: metrics reports of anything else are not counted.
func TestAttachedAsIsTheADSNode(t *testing.T) {
	srv, addr, _ := startServer(t, ServerOptions{})
	srv.Update(testInput(8080, DeliveryLDS))
	e := xdstest.Start(t, addr, xdstest.Options{NodeID: "b-1", Labels: map[string]string{"team": "b"}})
	e.Await(t, "config", xdstest.Complete)
	same := xdstest.Node("b-1", "test", map[string]string{"team": "b"})
	if bound := NodeOf(same); !srv.AttachedAs("", &bound) {
		t.Fatal("the ADS node itself is not AttachedAs")
	}
	for name, n := range map[string]*corev3.Node{
		"other labels":   xdstest.Node("b-1", "test", map[string]string{"team": "a"}),
		"a label more":   xdstest.Node("b-1", "test", map[string]string{"team": "b", "zone": "z"}),
		"no labels":      xdstest.Node("b-1", "test", nil),
		"other cluster":  xdstest.Node("b-1", "other", map[string]string{"team": "b"}),
		"other node":     xdstest.Node("b-2", "test", map[string]string{"team": "b"}),
		"label a number": withLabel(xdstest.Node("b-1", "test", nil), "team", structpb.NewNumberValue(1)),
	} {
		if bound := NodeOf(n); srv.AttachedAs("", &bound) {
			t.Errorf("%s: AttachedAs", name)
		}
	}
	if bound := NodeOf(same); srv.AttachedAs("spiffe://example.org/team-b/1", &bound) {
		t.Error("another identity: AttachedAs")
	}
}

func withLabel(n *corev3.Node, key string, v *structpb.Value) *corev3.Node {
	n.GetMetadata().GetFields()["labels"].GetStructValue().Fields[key] = v
	return n
}

// StreamNode.Is, which a metrics stream asks of every message naming a
// node, agrees with sameNode, labels that are not strings included.
func TestStreamNodeIsSameNode(t *testing.T) {
	nodes := []*corev3.Node{
		{Id: "no metadata"},
		xdstest.Node("n", "c", nil),
		xdstest.Node("n", "c", map[string]string{"team": "b"}),
		xdstest.Node("n", "c", map[string]string{"team": "a"}),
		xdstest.Node("n", "c", map[string]string{"team": "b", "zone": "z"}),
		withLabel(xdstest.Node("n", "c", nil), "team", structpb.NewNumberValue(1)),
		withLabel(xdstest.Node("n", "c", map[string]string{"team": "b"}), "zone", structpb.NewBoolValue(true)),
		withLabel(xdstest.Node("n", "c", map[string]string{"team": "b"}), "rack", structpb.NewNullValue()),
		withLabel(xdstest.Node("n", "c", map[string]string{"zone": "z"}), "team", structpb.NewNumberValue(1)),
	}
	nodes = append(nodes, xdstest.Node("other", "c", nil), xdstest.Node("n", "other", nil))
	for i, a := range nodes {
		for j, b := range nodes {
			bound := NodeOf(b)
			if got, want := bound.Is(a), sameNode(a, b); got != want {
				t.Errorf("nodes %d and %d: Is %v, sameNode %v", i, j, got, want)
			}
		}
	}
}
