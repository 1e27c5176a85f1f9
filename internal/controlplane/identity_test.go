package controlplane

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/wasmxds/wasmxds/internal/xdstest"
)

// Two teams, each granted its own node ids and labels, each with a
// listener only its nodes select.
const twoTeamsSpec = `apiVersion: wasmxds.dev/v1alpha1
kind: NodeAccess
metadata: {name: team-a}
spec:
  principals: ["spiffe://example.org/team-a/*"]
  labels: {team: a}
  nodeIDs: ["a-*"]
---
apiVersion: wasmxds.dev/v1alpha1
kind: NodeAccess
metadata: {name: team-b}
spec:
  principals: ["spiffe://example.org/team-b/*"]
  labels: {team: b}
  nodeIDs: ["b-*"]
---
apiVersion: wasmxds.dev/v1alpha1
kind: Listener
metadata: {name: team-a-only}
spec:
  selector: {matchLabels: {team: a}}
  port: 10010
  routes: [{match: {prefix: /}, cluster: backend}]
---
apiVersion: wasmxds.dev/v1alpha1
kind: Listener
metadata: {name: team-b-only}
spec:
  selector: {matchLabels: {team: b}}
  port: 10011
  routes: [{match: {prefix: /}, cluster: backend}]
`

func teamNode(t *testing.T, id, team string) *corev3.Node {
	t.Helper()
	meta, err := structpb.NewStruct(map[string]any{"labels": map[string]any{"team": team}})
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.Node{Id: id, Cluster: "team-" + team, Metadata: meta}
}

// listenerNames returns the names of the listeners a response carries.
func listenerNames(t *testing.T, resources [][]byte) []string {
	t.Helper()
	var names []string
	for _, b := range resources {
		var l listenerv3.Listener
		if err := proto.Unmarshal(b, &l); err != nil {
			t.Fatal(err)
		}
		names = append(names, l.GetName())
	}
	return names
}

// A stream belongs to the node of its first request. A client admitted as
// team b's node that then asks as team a's node (the identity its
// certificate is not granted) gets nothing of team a: its stream ends with
// PermissionDenied naming both nodes, over SotW and delta alike.
func TestStreamIsBoundToItsFirstNode(t *testing.T) {
	m := startMTLS(t)
	m.write("access.yaml", twoTeamsSpec)
	waitUntil(t, "both teams' access in force", func() bool {
		clusters, err := firstClusters(t, m.cp.XDSAddr(), grpc.WithTransportCredentials(credentials.NewTLS(m.clientTLS(t, "spiffe://example.org/team-a/1"))),
			"a-1", map[string]string{"team": "a"})
		return err == nil && clusters > 0
	})
	dial := func(t *testing.T) *grpc.ClientConn {
		conn, err := grpc.NewClient("passthrough:///"+m.cp.XDSAddr(),
			grpc.WithTransportCredentials(credentials.NewTLS(m.clientTLS(t, "spiffe://example.org/team-b/1"))))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	t.Run("sotw", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(dial(t)).StreamAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&discoverygrpc.DiscoveryRequest{Node: teamNode(t, "b-1", "b"), TypeUrl: resource.ListenerType}); err != nil {
			t.Fatal(err)
		}
		first, err := stream.Recv()
		if err != nil {
			t.Fatalf("team b's node was not served: %v", err)
		}
		if got := listenerNames(t, resourceBytes(first.GetResources())); fmt.Sprint(got) != "[team-b-only]" {
			t.Fatalf("team b's node got listeners %v, want [team-b-only]", got)
		}
		// ACK as b-1, then ask again as a-1: a node switch on a live stream.
		if err := stream.Send(&discoverygrpc.DiscoveryRequest{Node: teamNode(t, "a-1", "a"), TypeUrl: resource.ListenerType,
			VersionInfo: first.GetVersionInfo(), ResponseNonce: first.GetNonce()}); err != nil {
			t.Fatal(err)
		}
		// A fresh subscription as a-1 too, in case the ACK path differs.
		_ = stream.Send(&discoverygrpc.DiscoveryRequest{Node: teamNode(t, "a-1", "a"), TypeUrl: resource.ListenerType})
		for {
			resp, err := stream.Recv()
			if err != nil {
				assertSwitchRefused(t, err)
				break
			}
			if got := listenerNames(t, resourceBytes(resp.GetResources())); strings.Contains(fmt.Sprint(got), "team-a-only") {
				t.Fatalf("a stream admitted as b-1 received team a's listener after switching to a-1: %v", got)
			}
		}
	})
	t.Run("delta", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(dial(t)).DeltaAggregatedResources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := stream.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: teamNode(t, "b-1", "b"), TypeUrl: resource.ListenerType}); err != nil {
			t.Fatal(err)
		}
		first, err := stream.Recv()
		if err != nil {
			t.Fatalf("team b's node was not served: %v", err)
		}
		if err := stream.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: teamNode(t, "a-1", "a"), TypeUrl: resource.ListenerType,
			ResponseNonce: first.GetNonce()}); err != nil {
			t.Fatal(err)
		}
		_ = stream.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: teamNode(t, "a-1", "a"), TypeUrl: resource.ClusterType})
		for {
			resp, err := stream.Recv()
			if err != nil {
				assertSwitchRefused(t, err)
				break
			}
			for _, r := range resp.GetResources() {
				if r.GetName() == "team-a-only" {
					t.Fatal("a delta stream admitted as b-1 received team a's listener after switching to a-1")
				}
			}
		}
	})
	rep := m.status()
	for _, n := range rep.Nodes {
		if n.ID == "a-1" && n.Identity == "spiffe://example.org/team-b/1" {
			t.Errorf("status shows team b's certificate as node a-1: %+v", n)
		}
	}
	var switched int
	for _, r := range rep.Refused {
		if r.Identity == "spiffe://example.org/team-b/1" && strings.Contains(r.Reason, "b-1") && strings.Contains(r.Reason, "a-1") {
			switched++
		}
	}
	if switched != 2 {
		t.Errorf("status refusals = %+v, want the two node switches, naming b-1 and a-1", rep.Refused)
	}
}

func resourceBytes(anys []*anypb.Any) [][]byte {
	out := make([][]byte, len(anys))
	for i, a := range anys {
		out[i] = a.GetValue()
	}
	return out
}

func assertSwitchRefused(t *testing.T, err error) {
	t.Helper()
	if err == io.EOF || status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "b-1") || !strings.Contains(err.Error(), "a-1") {
		t.Fatalf("stream ended with %v, want PermissionDenied naming b-1 and a-1", err)
	}
}

// One source address holds at most MaxStreamsPerSource ADS streams, over
// however many connections: the next is refused with ResourceExhausted
// and counted, and a stream that closes makes room again.
func TestStreamsPerSourceAreBounded(t *testing.T) {
	root := t.TempDir()
	f := &serveFixture{t: t, dir: filepath.Join(root, "configs")}
	if err := mkdir(f.dir); err != nil {
		t.Fatal(err)
	}
	f.write("listener.yaml", fmt.Sprintf(listenerSpec, 8080))
	f.cp = newTestCP(t, Options{ConfigDir: f.dir, CacheDir: filepath.Join(root, "cache"), Delivery: "lds", MaxStreamsPerSource: 3})
	runCP(t, f.cp)
	var clients []*xdstest.Client
	for i := range 3 {
		c := xdstest.Start(t, f.cp.XDSAddr(), xdstest.Options{NodeID: fmt.Sprintf("web-%d", i), Labels: map[string]string{"app": "web"}})
		c.Await(t, "config", xdstest.Complete)
		clients = append(clients, c)
	}
	over := xdstest.Start(t, f.cp.XDSAddr(), xdstest.Options{NodeID: "web-3", Labels: map[string]string{"app": "web"}})
	if err := over.AwaitEnd(t, "a fourth stream from the same address", 10*time.Second); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("the fourth stream ended with %v, want ResourceExhausted", err)
	}
	if _, metrics := f.get("/metrics"); !strings.Contains(string(metrics), "wasmxds_xds_streams_refused_total 1") {
		t.Error("/metrics lacks wasmxds_xds_streams_refused_total 1")
	}
	clients[0].Close()
	waitUntil(t, "a stream admitted once one closed", func() bool {
		c, err := xdstest.Dial(f.cp.XDSAddr(), xdstest.Options{NodeID: "web-4", Labels: map[string]string{"app": "web"}})
		if err != nil {
			return false
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return c.WaitFor(ctx, xdstest.Complete) == nil
	})
}
