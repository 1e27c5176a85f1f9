package xds

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/wasmxds/wasmxds/internal/xdstest"
)

var modes = []struct {
	name  string
	delta bool
}{{"sotw", false}, {"delta", true}}

func TestNodeReceivesItsGroupConfigAndACKs(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			srv, addr, _ := startServer(t, ServerOptions{})
			srv.Update(testInput(8080, DeliveryLDS))
			e := connectEnvoy(t, addr, "envoy-a", map[string]string{"app": "a"}, m.delta)
			e.Await(t, "config", xdstest.Complete)

			if got := e.State().Type(resource.ListenerType).Names(); !slices.Equal(got, []string{"ingress-a"}) {
				t.Errorf("listeners = %v, want only ingress-a (selected by app=a)", got)
			}
			if got := e.State().Type(resource.RouteType).Names(); !slices.Equal(got, []string{"ingress-a"}) {
				t.Errorf("routes = %v", got)
			}
			if got := e.State().Type(resource.ClusterType).Names(); !slices.Equal(got, []string{"backend"}) {
				t.Errorf("clusters = %v", got)
			}
			waitStatus(t, srv, "envoy-a", func(n NodeStatus) bool { return allACKed(n, 3) })
			n := nodeStatus(t, srv, "envoy-a")
			if n.Group != nodeGroupKey("envoy-a", map[string]string{"app": "a"}) || !strings.HasPrefix(n.Group, "app=a#") || n.Cluster != "test" || n.Delta != m.delta || n.Labels["app"] != "a" {
				t.Errorf("status = %+v", n)
			}
			if got := n.Types[resource.ListenerType].Acked; got != e.State().Type(resource.ListenerType).Version {
				t.Errorf("acked listener version %q, envoy holds %q", got, e.State().Type(resource.ListenerType).Version)
			}
		})
	}
}

func TestECDSDeliversExtensionConfigs(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			srv, addr, _ := startServer(t, ServerOptions{})
			srv.Update(testInput(8080, DeliveryECDS))
			e := connectEnvoy(t, addr, "envoy-a", map[string]string{"app": "a"}, m.delta)
			e.Await(t, "extension configs", func(s xdstest.State) bool {
				return xdstest.Complete(s) && s.Type(resource.ExtensionConfigType).Version != ""
			})
			if got := e.State().Type(resource.ExtensionConfigType).Names(); !slices.Equal(got, []string{"plugin-a"}) {
				t.Errorf("extension configs = %v, want [plugin-a]", got)
			}
		})
	}
}

func TestGroupsShareSnapshotsByLabelSet(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			srv, addr, reg := startServer(t, ServerOptions{})
			srv.Update(testInput(8080, DeliveryLDS))
			a1 := connectEnvoy(t, addr, "a1", map[string]string{"app": "a"}, m.delta)
			a2 := connectEnvoy(t, addr, "a2", map[string]string{"app": "a"}, m.delta)
			b := connectEnvoy(t, addr, "b", map[string]string{"app": "b"}, m.delta)
			for _, e := range []*xdstest.Client{a1, a2, b} {
				e.Await(t, "config", xdstest.Complete)
			}
			if v1, v2 := a1.State().Type(resource.ListenerType).Version, a2.State().Type(resource.ListenerType).Version; v1 != v2 {
				t.Errorf("same labels, different listener versions %q and %q", v1, v2)
			}
			if va, vb := a1.State().Type(resource.ListenerType).Version, b.State().Type(resource.ListenerType).Version; va == vb {
				t.Errorf("app=a and app=b got the same listener version %q", va)
			}
			if got := b.State().Type(resource.ListenerType).Names(); !slices.Equal(got, []string{"ingress-b"}) {
				t.Errorf("b listeners = %v", got)
			}
			// The cluster set does not depend on labels: equal content, equal version.
			if va, vb := a1.State().Type(resource.ClusterType).Version, b.State().Type(resource.ClusterType).Version; va != vb {
				t.Errorf("identical clusters got versions %q and %q", va, vb)
			}
			// A group is a label set and a rollout bucket.
			want := map[string]bool{}
			for _, id := range []string{"a1", "a2"} {
				want[nodeGroupKey(id, map[string]string{"app": "a"})] = true
			}
			want[nodeGroupKey("b", map[string]string{"app": "b"})] = true
			if got := gaugeValue(t, reg, "wasmxds_xds_node_groups"); got != float64(len(want)) {
				t.Errorf("node groups = %v, want %d", got, len(want))
			}
			if got := gaugeValue(t, reg, "wasmxds_xds_connected_nodes"); got != 3 {
				t.Errorf("connected nodes = %v, want 3", got)
			}
		})
	}
}

func TestNewInputReachesNodeAndIdenticalInputPushesNothing(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			srv, addr, _ := startServer(t, ServerOptions{})
			srv.Update(testInput(8080, DeliveryLDS))
			e := connectEnvoy(t, addr, "envoy-a", map[string]string{"app": "a"}, m.delta)
			e.Await(t, "config", xdstest.Complete)
			first := e.State().Type(resource.ClusterType)
			listeners := e.State().Type(resource.ListenerType)

			srv.Update(testInput(9090, DeliveryLDS))
			e.Await(t, "new cluster version", func(s xdstest.State) bool {
				return s.Type(resource.ClusterType).Version != first.Version
			})
			second := e.State().Type(resource.ClusterType)
			if second.Responses != first.Responses+1 {
				t.Errorf("cluster responses %d → %d, want one more", first.Responses, second.Responses)
			}

			// Rebuilt but identical input: nothing is sent. The next real
			// change must then be the very next response.
			srv.Update(testInput(9090, DeliveryLDS))
			srv.Update(testInput(7070, DeliveryLDS))
			e.Await(t, "third cluster version", func(s xdstest.State) bool {
				return s.Type(resource.ClusterType).Version != second.Version
			})
			if got := e.State().Type(resource.ClusterType).Responses; got != second.Responses+1 {
				t.Errorf("cluster responses %d → %d: the identical input pushed something", second.Responses, got)
			}
			if got := e.State().Type(resource.ListenerType); got.Responses != listeners.Responses || got.Version != listeners.Version {
				t.Errorf("listeners did not change but were pushed again: %d → %d responses", listeners.Responses, got.Responses)
			}
		})
	}
}

func TestVersionsAreContentHashes(t *testing.T) {
	// Two independent servers given the same input serve the same versions,
	// so an Envoy moving between replicas is sent nothing new.
	versions := func() string {
		srv, addr, _ := startServer(t, ServerOptions{})
		srv.Update(testInput(8080, DeliveryLDS))
		e := connectEnvoy(t, addr, "envoy-a", map[string]string{"app": "a"}, false)
		e.Await(t, "config", xdstest.Complete)
		return fmt.Sprint(e.State().Type(resource.ClusterType).Version, e.State().Type(resource.ListenerType).Version,
			e.State().Type(resource.RouteType).Version)
	}
	if v1, v2 := versions(), versions(); v1 != v2 {
		t.Errorf("versions differ across servers: %s vs %s", v1, v2)
	}
}

func TestNACKAppearsInStatusAndMetrics(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			srv, addr, reg := startServer(t, ServerOptions{})
			srv.Update(testInput(8080, DeliveryLDS))
			rej := &xdstest.Rejecter{}
			e := xdstest.Start(t, addr, xdstest.Options{NodeID: "envoy-a", Labels: map[string]string{"app": "a"},
				Delta: m.delta, NACK: rej.Decide})
			e.Await(t, "config", xdstest.Complete)
			good := e.State().Type(resource.ClusterType).Version

			rej.RejectNext(resource.ClusterType, "cluster backend: bad\nendpoint")
			srv.Update(testInput(9090, DeliveryLDS))
			n := waitStatus(t, srv, "envoy-a", func(n NodeStatus) bool { return n.LastNack != nil })
			if n.LastNack.TypeURL != resource.ClusterType || n.LastNack.Error != "cluster backend: bad\nendpoint" {
				t.Errorf("last NACK = %+v", n.LastNack)
			}
			if sent := n.Types[resource.ClusterType].Sent; n.LastNack.Version != sent || sent == good {
				t.Errorf("NACKed version %q, want the newly sent %q", n.LastNack.Version, sent)
			}
			if got := n.Types[resource.ClusterType].Acked; got != good {
				t.Errorf("acked = %q, want the last good %q", got, good)
			}
			if got := testutil.ToFloat64(srv.metrics.nacks.WithLabelValues("cluster")); got != 1 {
				t.Errorf("nacks{type=cluster} = %v, want 1", got)
			}
			if got, err := testutil.GatherAndCount(reg, "wasmxds_xds_nacks_total"); err != nil || got != 1 {
				t.Errorf("nack series = %d (%v), want 1", got, err)
			}

			// The rejected config is not resent in a loop: the next
			// response is the next change.
			rejected := e.State().Type(resource.ClusterType)
			srv.Update(testInput(7070, DeliveryLDS))
			e.Await(t, "fixed cluster", func(s xdstest.State) bool {
				return s.Type(resource.ClusterType).Version != good
			})
			if got := e.State().Type(resource.ClusterType).Responses; got != rejected.Responses+1 {
				t.Errorf("cluster responses %d → %d after a NACK, want one more", rejected.Responses, got)
			}
		})
	}
}

func TestInconsistentSnapshotKeepsPrevious(t *testing.T) {
	broken := false
	translate := func(in Input, labels map[string]string) (*Resources, []Problem) {
		res, problems := fakeTranslate(in, labels)
		if broken {
			res.Routes = nil // listeners now name route configurations that are missing
		}
		return res, problems
	}
	srv, addr, _ := startServerTranslating(t, ServerOptions{}, translate)
	srv.Update(testInput(8080, DeliveryLDS))
	e := connectEnvoy(t, addr, "envoy-a", map[string]string{"app": "a"}, false)
	e.Await(t, "config", xdstest.Complete)
	before := e.State().Type(resource.ClusterType)

	broken = true
	srv.Update(testInput(9090, DeliveryLDS))
	if got := testutil.ToFloat64(srv.metrics.snapshotErrors.WithLabelValues(reasonInconsistent)); got != 1 {
		t.Fatalf("inconsistent snapshot errors = %v, want 1", got)
	}
	broken = false
	srv.Update(testInput(7070, DeliveryLDS))
	e.Await(t, "fixed config", func(s xdstest.State) bool { return s.Type(resource.ClusterType).Version != before.Version })
	if got := e.State().Type(resource.ClusterType).Responses; got != before.Responses+1 {
		t.Errorf("cluster responses %d → %d: the inconsistent snapshot was pushed", before.Responses, got)
	}
}

func TestReadyAndProblems(t *testing.T) {
	srv, addr, _ := startServer(t, ServerOptions{})
	if srv.Ready() {
		t.Fatal("ready before any input")
	}
	in := testInput(8080, DeliveryLDS)
	delete(in.Modules, "plugin-b")
	srv.Update(in)
	if !srv.Ready() {
		t.Fatal("not ready after the first input, with no node connected yet")
	}
	if got := srv.Problems(); len(got) != 0 {
		t.Errorf("problems with no node groups = %v", got)
	}
	e := connectEnvoy(t, addr, "b", map[string]string{"app": "b"}, false)
	e.Await(t, "config", xdstest.Complete)
	got := srv.Problems()
	if len(got) != 1 || got[0].Name != "plugin-b" || got[0].Source.String() != "b.yaml:7" {
		t.Errorf("problems = %+v, want plugin-b's unresolved module at b.yaml:7", got)
	}
}

func TestDisconnectedNodeLeavesStatus(t *testing.T) {
	srv, addr, reg := startServer(t, ServerOptions{})
	srv.Update(testInput(8080, DeliveryLDS))
	e := connectEnvoy(t, addr, "gone", nil, true)
	e.Await(t, "config", func(s xdstest.State) bool {
		return s.Type(resource.ClusterType).Version != "" && s.Type(resource.ListenerType).Version != ""
	})
	// The client holds what it has ACKed; the server may not have read
	// the ACKs yet, and closing drops what it has not.
	if n := waitStatus(t, srv, "gone", func(n NodeStatus) bool { return allACKed(n, 2) }); !strings.HasPrefix(n.Group, "_#") {
		t.Errorf("group of a node without labels = %q, want _#<bucket>", n.Group)
	}
	e.Close()
	waitFor(t, "node to leave status", func() bool { return len(srv.Status()) == 0 })
	if got := gaugeValue(t, reg, "wasmxds_xds_connected_nodes"); got != 0 {
		t.Errorf("connected nodes = %v", got)
	}
	if got, err := testutil.GatherAndCount(reg, "wasmxds_xds_convergence_seconds"); err != nil || got == 0 {
		t.Errorf("no convergence observed (%v)", err)
	}
}

func TestIdleGroupsAreDropped(t *testing.T) {
	srv, addr, reg := startServer(t, ServerOptions{GroupIdleTimeout: time.Minute})
	srv.Update(testInput(8080, DeliveryLDS))
	e := connectEnvoy(t, addr, "a", map[string]string{"app": "a"}, false)
	e.Await(t, "config", xdstest.Complete)
	e.Close()
	waitFor(t, "node to leave status", func() bool { return len(srv.Status()) == 0 })
	waitIdle(t, srv, nodeGroupKey("a", map[string]string{"app": "a"}))
	fakeClock(t, srv).Step(time.Minute + time.Nanosecond) // app=a's idle timeout passes: its expiry drops it
	groupsLeft(t, srv)
	other := connectEnvoy(t, addr, "b", map[string]string{"app": "b"}, false)
	other.Await(t, "config", xdstest.Complete)
	if got := gaugeValue(t, reg, "wasmxds_xds_node_groups"); got != 1 {
		t.Errorf("node groups = %v after app=a's only node left and app=b's connected, want 1", got)
	}
	// A node returning with the same labels gets a fresh snapshot.
	e2 := connectEnvoy(t, addr, "a", map[string]string{"app": "a"}, false)
	e2.Await(t, "config", xdstest.Complete)
}

func TestGroupKey(t *testing.T) {
	cases := []struct {
		labels map[string]string
		want   string
	}{
		{nil, "_"},
		{map[string]string{"zone": "a", "app": "httpbin"}, "app=httpbin,zone=a"},
		{map[string]string{"a": "1,b=2"}, `a=1\,b\=2`},
		{map[string]string{"a": "1", "b": "2"}, "a=1,b=2"},
	}
	for _, c := range cases {
		if got := GroupKey(c.labels); got != c.want {
			t.Errorf("GroupKey(%v) = %q, want %q", c.labels, got, c.want)
		}
	}
	if GroupKey(map[string]string{"a": "1,b=2"}) == GroupKey(map[string]string{"a": "1", "b": "2"}) {
		t.Error("distinct label sets share a group key")
	}
}

func TestNodeLabelsIgnoresNonStrings(t *testing.T) {
	node := xdstest.Node("n", "test", nil)
	node.Metadata.Fields["labels"].GetStructValue().Fields["app"] = structString("x")
	node.Metadata.Fields["labels"].GetStructValue().Fields["n"] = structNumber(3)
	if got := NodeLabels(node); len(got) != 1 || got["app"] != "x" {
		t.Errorf("labels = %v, want only app=x", got)
	}
}

// connectEnvoy starts a fake Envoy that ACKs everything.
func connectEnvoy(t *testing.T, addr, id string, labels map[string]string, delta bool) *xdstest.Client {
	t.Helper()
	return xdstest.Start(t, addr, xdstest.Options{NodeID: id, Labels: labels, Delta: delta})
}

func allACKed(n NodeStatus, types int) bool {
	acked := 0
	for _, ts := range n.Types {
		if ts.Sent != "" && ts.Acked == ts.Sent {
			acked++
		}
	}
	return acked >= types
}

func nodeStatus(t *testing.T, srv *Server, id string) NodeStatus {
	t.Helper()
	for _, n := range srv.Status() {
		if n.ID == id {
			return n
		}
	}
	t.Fatalf("node %s not in status", id)
	return NodeStatus{}
}

func waitStatus(t *testing.T, srv *Server, id string, cond func(NodeStatus) bool) NodeStatus {
	t.Helper()
	var last NodeStatus
	waitFor(t, "status of "+id, func() bool {
		for _, n := range srv.Status() {
			if n.ID == id {
				last = n
				return cond(n)
			}
		}
		return false
	})
	return last
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func structString(s string) *structpb.Value  { return structpb.NewStringValue(s) }
func structNumber(n float64) *structpb.Value { return structpb.NewNumberValue(n) }

// waitFor polls cond until it holds, failing after a generous deadline:
// it waits on the network and the server's goroutines, never on the
// engine's clock, which only the test steps.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	poll := time.NewTicker(2 * time.Millisecond)
	defer poll.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		case <-poll.C:
		}
	}
}
