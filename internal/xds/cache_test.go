package xds

import (
	"fmt"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"google.golang.org/protobuf/proto"
)

// The delivery cache's answering rules, event by event, with no server or
// network: a request is routed, its watch created, snapshots set.

// set makes snap the group's snapshot, as the server's setAll does for a
// batch of one.
func (c *deliveryCache) set(group string, snap *servedSnapshot) {
	c.setAll([]pendingSet{{key: group, snap: snap}})
}

func clustersSnapshot(t *testing.T, names ...string) *servedSnapshot {
	t.Helper()
	res := &Resources{}
	for _, n := range names {
		res.Clusters = append(res.Clusters, &clusterv3.Cluster{Name: n})
	}
	snap, _, err := buildSnapshot(res)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

type sotwClient struct {
	t   *testing.T
	c   *deliveryCache
	key streamKey
	sub stream.Subscription
	out chan cache.Response
}

func newSotwClient(t *testing.T, c *deliveryCache, id int64) *sotwClient {
	return &sotwClient{t: t, c: c, key: streamKey{id: id}, sub: stream.NewSotwSubscription(nil, true),
		out: make(chan cache.Response, 8)}
}

// request routes a cluster request holding version holds to group and
// opens its watch.
func (s *sotwClient) request(group, version, holds string) {
	s.t.Helper()
	req := &discoverygrpc.DiscoveryRequest{TypeUrl: resource.ClusterType, VersionInfo: version}
	s.c.direct(s.key, req, routing{group: group, holds: holds})
	if _, err := s.c.CreateWatch(req, s.sub, s.out); err != nil {
		s.t.Fatal(err)
	}
}

// answered returns the response waiting, nil if none.
func (s *sotwClient) answered() *discoverygrpc.DiscoveryResponse {
	s.t.Helper()
	select {
	case r := <-s.out:
		s.sub.SetReturnedResources(r.GetReturnedResources())
		out, err := r.GetDiscoveryResponse()
		if err != nil {
			s.t.Fatal(err)
		}
		return out
	default:
		return nil
	}
}

type deltaClient struct {
	t   *testing.T
	c   *deliveryCache
	key streamKey
	sub stream.Subscription
	out chan cache.DeltaResponse
}

func newDeltaClient(t *testing.T, c *deliveryCache, id int64) *deltaClient {
	return &deltaClient{t: t, c: c, key: streamKey{delta: true, id: id}, sub: stream.NewDeltaSubscription(nil, nil, nil, true),
		out: make(chan cache.DeltaResponse, 8)}
}

// request routes a cluster request answering nonce ("" for the first) to
// group and opens its watch.
func (d *deltaClient) request(group, nonce string) {
	d.t.Helper()
	req := &discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: nonce}
	d.c.direct(d.key, req, routing{group: group})
	if _, err := d.c.CreateDeltaWatch(req, d.sub, d.out); err != nil {
		d.t.Fatal(err)
	}
}

// answered returns the response waiting, nil if none.
func (d *deltaClient) answered() *discoverygrpc.DeltaDiscoveryResponse {
	select {
	case r := <-d.out:
		d.sub.SetReturnedResources(r.GetNextVersionMap())
		out, _ := r.GetDeltaDiscoveryResponse()
		return out
	default:
		return nil
	}
}

func TestCacheAnswersSotWRequests(t *testing.T) {
	c := newDeliveryCache()
	snap1 := clustersSnapshot(t, "a")
	v1 := snap1.types[resource.ClusterType].version

	// A watch opened before the group's first snapshot is answered by it,
	// even when the node reported holding that very version (it comes
	// back to a restarted server).
	returning := newSotwClient(t, c, 1)
	returning.request("g", v1, v1)
	if returning.answered() != nil {
		t.Fatal("answered with no snapshot")
	}
	c.set("g", snap1)
	if r := returning.answered(); r == nil || r.GetVersionInfo() != v1 || len(r.GetResources()) != 1 {
		t.Fatalf("returning node: %v", r)
	}

	// A new stream reporting the current version is answered once (its
	// stream was sent nothing yet); its ACK then waits.
	fresh := newSotwClient(t, c, 2)
	fresh.request("g", v1, v1)
	if r := fresh.answered(); r == nil || r.GetVersionInfo() != v1 {
		t.Fatalf("new stream: %v", r)
	}
	fresh.request("g", v1, v1)
	if r := fresh.answered(); r != nil {
		t.Fatalf("ACK answered again: %v", r)
	}

	// A NACK of v2 carries v1, the last version accepted; it parks until
	// the version differs from v2, not from v1.
	snap2 := clustersSnapshot(t, "a", "b")
	v2 := snap2.types[resource.ClusterType].version
	c.set("g", snap2)
	if r := fresh.answered(); r == nil || r.GetVersionInfo() != v2 {
		t.Fatalf("update: %v", r)
	}
	fresh.request("g", v1, v2)
	if r := fresh.answered(); r != nil {
		t.Fatalf("NACK answered with the rejected config again: %v", r)
	}
	c.set("g", snap2) // the same content again: nothing
	if r := fresh.answered(); r != nil {
		t.Fatalf("NACK answered by an identical snapshot: %v", r)
	}
	snap3 := clustersSnapshot(t, "a", "c")
	c.set("g", snap3)
	if r := fresh.answered(); r == nil || r.GetVersionInfo() != snap3.types[resource.ClusterType].version {
		t.Fatalf("after a NACK, the next version: %v", r)
	}

	// A request reaches the cache only routed by its stream.
	unrouted := &discoverygrpc.DiscoveryRequest{TypeUrl: resource.ClusterType}
	if _, err := c.CreateWatch(unrouted, stream.NewSotwSubscription(nil, true), make(chan cache.Response, 1)); err == nil {
		t.Error("an unrouted request opened a watch")
	}
}

// Groups built from one translation share the bytes of each resource:
// responses to every node carry the same marshaled message.
func TestCacheSharesMarshaledResources(t *testing.T) {
	c := newDeliveryCache()
	snap := clustersSnapshot(t, "a")
	c.set("g1", snap)
	c.set("g2", snap)
	a, b := newSotwClient(t, c, 1), newSotwClient(t, c, 2)
	a.request("g1", "", "")
	b.request("g2", "", "")
	ra, rb := a.answered(), b.answered()
	if ra == nil || rb == nil {
		t.Fatal("not answered")
	}
	if ra == rb {
		t.Fatal("two streams share one response message (each sets its own nonce)")
	}
	if ra.GetResources()[0] != rb.GetResources()[0] {
		t.Error("each response marshaled the resource again")
	}
	got := &clusterv3.Cluster{}
	if err := ra.GetResources()[0].UnmarshalTo(got); err != nil || !proto.Equal(got, &clusterv3.Cluster{Name: "a"}) {
		t.Errorf("resource %v, %v", got, err)
	}
}

func TestCacheAnswersDeltaRequests(t *testing.T) {
	c := newDeliveryCache()
	d := newDeltaClient(t, c, 1)
	c.set("g", clustersSnapshot(t))
	d.request("g", "")
	if r := d.answered(); r == nil || len(r.GetResources()) != 0 {
		t.Fatalf("a wildcard subscription's first request must be answered, even empty: %v", r)
	}
	d.request("g", "1")
	c.set("g", clustersSnapshot(t, "a", "b"))
	if r := d.answered(); r == nil || len(r.GetResources()) != 2 {
		t.Fatalf("added: %v", r)
	}
	d.request("g", "2")
	c.set("g", clustersSnapshot(t, "a"))
	if r := d.answered(); r == nil || len(r.GetResources()) != 0 || len(r.GetRemovedResources()) != 1 || r.GetRemovedResources()[0] != "b" {
		t.Fatalf("removed: %v", r)
	}
	d.request("g", "3")
	c.set("g", clustersSnapshot(t, "a"))
	if r := d.answered(); r != nil {
		t.Fatalf("nothing changed, yet answered: %v", r)
	}
}

// Envoy sends a NACK's error once; its next request of the type (new
// names as listeners warm) still answers the rejected response and carries
// the last version it accepted. It must not be sent the rejected config
// again either.
func TestCacheKeepsANackParkedForTheRejectedResponse(t *testing.T) {
	c := newDeliveryCache()
	snap1, snap2 := clustersSnapshot(t, "a"), clustersSnapshot(t, "a", "b")
	v1, v2 := snap1.types[resource.ClusterType].version, snap2.types[resource.ClusterType].version
	cl := newSotwClient(t, c, 1)
	c.set("g", snap1)
	send := func(nonce, version, rejected string) {
		t.Helper()
		req := &discoverygrpc.DiscoveryRequest{TypeUrl: resource.ClusterType, VersionInfo: version, ResponseNonce: nonce}
		c.direct(cl.key, req, routing{group: "g", holds: version, rejected: rejected})
		if _, err := c.CreateWatch(req, cl.sub, cl.out); err != nil {
			t.Fatal(err)
		}
	}
	send("", "", "")
	if r := cl.answered(); r == nil || r.GetVersionInfo() != v1 {
		t.Fatalf("first answer: %v", r)
	}
	send("1", v1, "") // ACK
	c.set("g", snap2)
	if r := cl.answered(); r == nil || r.GetVersionInfo() != v2 {
		t.Fatalf("update: %v", r)
	}
	send("2", v1, v2) // NACK of v2
	send("2", v1, "") // the next request, still answering response 2
	if r := cl.answered(); r != nil {
		t.Fatalf("the request after a NACK was sent the rejected version again: %v", r)
	}
	snap3 := clustersSnapshot(t, "c")
	c.set("g", snap3)
	if r := cl.answered(); r == nil || r.GetVersionInfo() != snap3.types[resource.ClusterType].version {
		t.Fatalf("the next version after the NACK: %v", r)
	}
}

// A stream may ask for types this server never serves. Their watches are
// not kept: a stream's parked watches stay fewer than its response channel
// holds (go-control-plane's delta server gives it 20 slots), so setting a
// snapshot, which answers them under the cache's lock, never blocks.
func TestCacheKeepsNoWatchForUnservedTypes(t *testing.T) {
	c := newDeliveryCache()
	out := make(chan cache.DeltaResponse, 64)
	key := streamKey{delta: true, id: 7}
	for i := range 30 {
		req := &discoverygrpc.DeltaDiscoveryRequest{TypeUrl: fmt.Sprintf("type.googleapis.com/junk.T%d", i)}
		c.direct(key, req, routing{group: "g"})
		if _, err := c.CreateDeltaWatch(req, stream.NewDeltaSubscription(nil, nil, nil, true), out); err != nil {
			t.Fatal(err)
		}
	}
	sotw := &discoverygrpc.DiscoveryRequest{TypeUrl: "type.googleapis.com/junk.S"}
	c.direct(streamKey{id: 8}, sotw, routing{group: "g"})
	if _, err := c.CreateWatch(sotw, stream.NewSotwSubscription(nil, true), make(chan cache.Response, 1)); err != nil {
		t.Fatal(err)
	}
	if n := len(out); n != 30 {
		t.Errorf("%d of 30 first wildcard requests of unserved types answered at once", n)
	}
	c.mu.Lock()
	e := c.groups["g"]
	c.mu.Unlock()
	if e != nil && len(e.delta)+len(e.sotw) > 0 {
		t.Fatalf("%d delta and %d SotW watches kept for types never served", len(e.delta), len(e.sotw))
	}
	c.set("g", clustersSnapshot(t, "a"))
	if n := len(out); n != 30 {
		t.Errorf("setting a snapshot answered unserved types again: %d responses", n)
	}
}

// A change to one type leaves the watches of the others waiting, however
// many snapshots pass, and each is answered as soon as its own type
// changes: a fleet's change is most often one plugin's config.
func TestCacheWatchesWaitUntilTheirTypeChanges(t *testing.T) {
	c := newDeliveryCache()
	withListener := func(clusters []string, listener string) *servedSnapshot {
		t.Helper()
		res := &Resources{Listeners: []*listenerv3.Listener{{Name: listener}}}
		for _, n := range clusters {
			res.Clusters = append(res.Clusters, &clusterv3.Cluster{Name: n})
		}
		snap, _, err := buildSnapshot(res)
		if err != nil {
			t.Fatal(err)
		}
		return snap
	}
	first := withListener([]string{"a"}, "l1")
	v1 := first.types[resource.ClusterType].version
	c.set("g", first)

	sotw := newSotwClient(t, c, 1)
	sotw.request("g", "", "")
	if r := sotw.answered(); r == nil || r.GetVersionInfo() != v1 {
		t.Fatalf("first request: %v", r)
	}
	sotw.request("g", v1, v1) // the ACK: waits

	delta := newDeltaClient(t, c, 2)
	delta.request("g", "")
	if r := delta.answered(); r == nil || len(r.GetResources()) != 1 {
		t.Fatalf("delta first request: %v", r)
	}
	delta.request("g", "1")

	for i := range 3 {
		c.set("g", withListener([]string{"a"}, fmt.Sprintf("l%d", i+2)))
		if r := sotw.answered(); r != nil {
			t.Fatalf("listener change %d answered the cluster watch: %v", i, r)
		}
		if r := delta.answered(); r != nil {
			t.Fatalf("listener change %d answered the delta cluster watch: %v", i, r)
		}
	}
	next := withListener([]string{"a", "b"}, "l4")
	c.set("g", next)
	if r := sotw.answered(); r == nil || r.GetVersionInfo() != next.types[resource.ClusterType].version || len(r.GetResources()) != 2 {
		t.Fatalf("cluster change: %v", r)
	}
	if r := delta.answered(); r == nil || len(r.GetResources()) != 1 || r.GetResources()[0].GetName() != "b" {
		t.Fatalf("delta cluster change: %v", r)
	}
}
