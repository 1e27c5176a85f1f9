package telemetry

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/service/metrics/v3"
	promgo "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/wasmxds/wasmxds/internal/xds"
)

// serve runs a Service on a loopback gRPC server built like serve's.
func serve(t *testing.T, store *Store, authorize xds.AuthorizeFunc) metricsv3.MetricsServiceClient {
	t.Helper()
	c, _ := serveStoppable(t, store, authorize)
	return c
}

// serveStoppable is serve, and a function that stops the Service's
// workers (ends its Run) while the gRPC server goes on.
func serveStoppable(t *testing.T, store *Store, authorize xds.AuthorizeFunc) (metricsv3.MetricsServiceClient, func()) {
	t.Helper()
	svc, err := NewService(ServiceOptions{Store: store, Authorize: authorize})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(append(xds.GRPCServerOptions(), ServerOptions()...)...)
	svc.Register(srv)
	ctx, cancel := context.WithCancel(context.Background())
	workers := make(chan struct{})
	go func() { defer close(workers); svc.Run(ctx) }()
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	stop := func() { cancel(); <-workers }
	t.Cleanup(func() { _ = conn.Close(); srv.Stop(); <-done; stop() })
	return metricsv3.NewMetricsServiceClient(conn), stop
}

func message(nodeID string, fams ...*promgo.MetricFamily) *metricsv3.StreamMetricsMessage {
	m := &metricsv3.StreamMetricsMessage{EnvoyMetrics: fams}
	if nodeID != "" {
		m.Identifier = &metricsv3.StreamMetricsMessage_Identifier{Node: &corev3.Node{Id: nodeID}}
	}
	return m
}

// send sends msgs on a new stream and returns how the server ended it.
func send(t *testing.T, c metricsv3.MetricsServiceClient, msgs ...*metricsv3.StreamMetricsMessage) error {
	t.Helper()
	stream, err := c.StreamMetrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			break // the server ended the stream: CloseAndRecv says why
		}
	}
	_, err = stream.CloseAndRecv()
	return err
}

func TestStreamBoundToItsFirstNode(t *testing.T) {
	store := NewStore(Options{})
	c := serve(t, store, nil)
	req := counter("http.web.downstream_rq_total", 4)
	if err := send(t, c, message("a", req), message("", req), message("a", req)); err != nil {
		t.Fatalf("a stream reporting as one node: %v", err)
	}
	if tot, _ := store.Totals("a", "p", []string{"web"}); tot.Requests != 12 {
		t.Errorf("node a: %d requests, want 12", tot.Requests)
	}
	err := send(t, c, message("a", req), message("b", req))
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), `named node "b"`) {
		t.Errorf("a stream that names another node later: %v, want PermissionDenied", err)
	}
	if _, ok := store.Totals("b", "p", nil); ok {
		t.Error("the other node's report was kept")
	}
	if err := send(t, c, message("", req)); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a stream whose first message names no node: %v, want InvalidArgument", err)
	}
}

func TestAuthorizeAppliesToTheFirstNode(t *testing.T) {
	store := NewStore(Options{})
	c := serve(t, store, func(identity string, node *corev3.Node) error {
		if node.GetId() != "mine" {
			return errors.New("identity may not use node id " + node.GetId())
		}
		return nil
	})
	if err := send(t, c, message("mine", counter(vmsCreated, 1))); err != nil {
		t.Fatalf("authorized node: %v", err)
	}
	err := send(t, c, message("theirs", counter(vmsCreated, 1)))
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "theirs") {
		t.Errorf("unauthorized node: %v, want PermissionDenied naming it", err)
	}
	if _, ok := store.Node("theirs"); ok {
		t.Error("the refused node's report was kept")
	}
}

// A 10 MB message is over gRPC's receive limit (GRPCTransportOptions): it is
// refused before it is decoded, nothing of it is kept, and the server goes
// on serving.
func TestTenMegabyteMessageRefused(t *testing.T) {
	store := NewStore(Options{})
	c := serve(t, store, nil)
	big := counter("wasmcustom."+strings.Repeat("x", 10<<20), 1)
	err := send(t, c, message("big", big))
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("10 MB message: %v, want ResourceExhausted", err)
	}
	if store.Len() != 0 {
		t.Error("something of the refused message was kept")
	}
	if err := send(t, c, message("small", counter(vmsCreated, 1))); err != nil {
		t.Fatalf("a stream after the refused message: %v", err)
	}
	if _, ok := store.Node("small"); !ok {
		t.Error("the server no longer keeps reports")
	}
}

// Messages are processed by the Service's workers: once Run has returned,
// a stream still open is ended with Unavailable at its next message, and
// what streams reported before was kept.
func TestStreamsEndWhenTheServiceStops(t *testing.T) {
	store := NewStore(Options{})
	c, stop := serveStoppable(t, store, nil)
	stream, err := c.StreamMetrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(message("a", counter("http.web.downstream_rq_total", 4))); err != nil {
		t.Fatal(err)
	}
	if err := send(t, c, message("b", counter(vmsCreated, 1))); err != nil {
		t.Fatalf("second stream: %v", err)
	}
	stop()
	_ = stream.Send(message("", counter("http.web.downstream_rq_total", 4)))
	if _, err := stream.CloseAndRecv(); status.Code(err) != codes.Unavailable {
		t.Errorf("a stream after the service stopped: %v, want Unavailable", err)
	}
	if _, ok := store.Node("b"); !ok {
		t.Error("the report of the stream answered before the stop was not kept")
	}
}

// A flush larger than an HTTP/2 frame (16 KiB) reaches the server in
// several buffers, which a worker reads through its scratch buffer. Many
// such flushes from streams at once must each be read as sent: node i's
// requests are i, whatever the other streams' bytes were.
func TestLargeFlushesFromManyStreams(t *testing.T) {
	store := NewStore(Options{})
	c := serve(t, store, nil)
	padding := make([]*promgo.MetricFamily, 0, 1000)
	for i := range 1000 {
		padding = append(padding, counter("cluster.upstream_"+strings.Repeat("x", 20)+string(rune('a'+i%26))+".rq", float64(i)))
	}
	const streams = 16
	errs := make(chan error, streams)
	for i := range streams {
		go func() {
			fams := append([]*promgo.MetricFamily{counter("http.web.downstream_rq_total", float64(i+1))}, padding...)
			msg := message(string(rune('a'+i)), fams...)
			if proto.Size(msg) < 3*16<<10 {
				errs <- errors.New("the flush fits in fewer than three frames")
				return
			}
			errs <- send(t, c, msg, message("", fams...))
		}()
	}
	for range streams {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i := range streams {
		id := string(rune('a' + i))
		if tot, _ := store.Totals(id, "p", []string{"web"}); tot.Requests != uint64(2*(i+1)) {
			t.Errorf("node %s: %d requests, want %d", id, tot.Requests, 2*(i+1))
		}
	}
}

// An Envoy's node lists every extension it was built with. The first
// message of a stream is admitted by, and bound to, the node's id, cluster
// and labels: the authorizer sees those, a later message naming the same
// node with another extension list is the same node, and the extensions
// are not decoded (the first message of each of thousands of streams
// would otherwise leave tens of kilobytes of garbage).
func TestFirstMessageNodeWithEnvoysExtensions(t *testing.T) {
	node := func(id string, extensions int) *corev3.Node {
		n := &corev3.Node{Id: id, Cluster: "edge", UserAgentName: "envoy",
			Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{"labels": structpb.NewStructValue(
				&structpb.Struct{Fields: map[string]*structpb.Value{"team": structpb.NewStringValue("a")}})}}}
		for i := range extensions {
			n.Extensions = append(n.Extensions, &corev3.Extension{Name: "envoy.filters.http.ext" + strconv.Itoa(i),
				Category: "envoy.filters.http", TypeUrls: []string{"type.googleapis.com/envoy.extensions.filters.http.X"}})
		}
		return n
	}
	store := NewStore(Options{})
	var seen *corev3.Node
	c := serve(t, store, func(_ string, n *corev3.Node) error { seen = n; return nil })
	req := counter("http.web.downstream_rq_total", 4)
	first := &metricsv3.StreamMetricsMessage{Identifier: &metricsv3.StreamMetricsMessage_Identifier{Node: node("a", 300)},
		EnvoyMetrics: []*promgo.MetricFamily{req}}
	again := &metricsv3.StreamMetricsMessage{Identifier: &metricsv3.StreamMetricsMessage_Identifier{Node: node("a", 2)},
		EnvoyMetrics: []*promgo.MetricFamily{req}}
	if err := send(t, c, first, again); err != nil {
		t.Fatalf("a stream whose node lists extensions: %v", err)
	}
	if seen.GetId() != "a" || seen.GetCluster() != "edge" || xds.NodeLabels(seen)["team"] != "a" {
		t.Errorf("authorized node %v, want id a, cluster edge, label team=a", seen)
	}
	if tot, _ := store.Totals("a", "p", []string{"web"}); tot.Requests != 8 {
		t.Errorf("node a: %d requests, want 8", tot.Requests)
	}

	msg, err := proto.Marshal(&metricsv3.StreamMetricsMessage{Identifier: first.Identifier})
	if err != nil {
		t.Fatal(err)
	}
	full := testing.AllocsPerRun(20, func() {
		var all metricsv3.StreamMetricsMessage
		if err := proto.Unmarshal(msg, &all); err != nil {
			t.Fatal(err)
		}
	})
	trimmed := testing.AllocsPerRun(20, func() {
		if _, err := nodeOf(msg); err != nil {
			t.Fatal(err)
		}
	})
	if trimmed*20 > full {
		t.Errorf("decoding the first message's node allocates %v times, decoding it whole %v: want under a twentieth", trimmed, full)
	}
}

// nodeOf reads a message's node as the proto decoder would: the parts of a
// node sent in several fields (or several identifiers) merged, a node field
// of another wire type no node, and a malformed node an error.
func TestNodeOfDecodesAsProtoDoes(t *testing.T) {
	msgOf := func(id *metricsv3.StreamMetricsMessage_Identifier) []byte {
		b, err := proto.Marshal(&metricsv3.StreamMetricsMessage{Identifier: id})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	labels := &structpb.Struct{Fields: map[string]*structpb.Value{"labels": structpb.NewStructValue(
		&structpb.Struct{Fields: map[string]*structpb.Value{"team": structpb.NewStringValue("a")}})}}
	nodePart := func(n *corev3.Node) []byte {
		b, err := proto.Marshal(&metricsv3.StreamMetricsMessage_Identifier{Node: n})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := map[string][]byte{
		"one node":            msgOf(&metricsv3.StreamMetricsMessage_Identifier{Node: &corev3.Node{Id: "a", Cluster: "edge", Metadata: labels}}),
		"two identifiers":     append(msgOf(&metricsv3.StreamMetricsMessage_Identifier{Node: &corev3.Node{Id: "a"}}), msgOf(&metricsv3.StreamMetricsMessage_Identifier{Node: &corev3.Node{Cluster: "edge", Metadata: labels}})...),
		"node as a varint":    protowire.AppendBytes(protowire.AppendTag(nil, msgIdentifier, protowire.BytesType), protowire.AppendVarint(protowire.AppendTag(nil, identifierNode, protowire.VarintType), 7)),
		"no identifier":       nil,
		"identifier, no node": msgOf(&metricsv3.StreamMetricsMessage_Identifier{}),
	}
	// The node field twice inside one identifier.
	cases["node in two fields"] = protowire.AppendBytes(protowire.AppendTag(nil, msgIdentifier, protowire.BytesType),
		append(nodePart(&corev3.Node{Id: "a", Cluster: "edge"}), nodePart(&corev3.Node{Cluster: "core", Metadata: labels})...))
	for name, msg := range cases {
		var whole metricsv3.StreamMetricsMessage
		if err := proto.Unmarshal(msg, &whole); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := nodeOf(msg)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		var want *corev3.Node
		if n := whole.GetIdentifier().GetNode(); n != nil {
			want = &corev3.Node{Id: n.Id, Cluster: n.Cluster, Metadata: n.Metadata}
		}
		if (got == nil) != (want == nil) || !proto.Equal(got, want) {
			t.Errorf("%s: node %v, want %v", name, got, want)
		}
	}

	// A node whose id field says it is 5 bytes long and carries 2.
	truncated := append(protowire.AppendTag(nil, nodeID, protowire.BytesType), 5, 'a', 'b')
	bad := protowire.AppendBytes(protowire.AppendTag(nil, msgIdentifier, protowire.BytesType),
		protowire.AppendBytes(protowire.AppendTag(nil, identifierNode, protowire.BytesType), truncated))
	if _, err := nodeOf(bad); err == nil {
		t.Error("a malformed node was decoded")
	}
}
