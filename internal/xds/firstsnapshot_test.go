package xds

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/wasmxds/wasmxds/internal/xdstest"
)

// heldCache holds the first snapshot set for one group until released,
// and reports each SotW watch once the cache has opened it: a test can put
// a request's watch between the moment the server records a group's
// versions and the moment the cache has its snapshot.
type heldCache struct {
	snapshotStore
	group   string
	once    sync.Once
	setting chan struct{} // the group's first snapshot is being set
	release chan struct{} // closed: it goes on
	watched chan string   // the type of each watch opened
}

func (c *heldCache) setAll(sets []pendingSet) {
	for _, p := range sets {
		if p.key == c.group {
			c.once.Do(func() {
				c.setting <- struct{}{}
				<-c.release
			})
		}
	}
	c.snapshotStore.setAll(sets)
}

func (c *heldCache) CreateWatch(req *cache.Request, sub cache.Subscription, out chan cache.Response) (func(), error) {
	cancel, err := c.snapshotStore.CreateWatch(req, sub, out)
	c.watched <- req.GetTypeUrl()
	return cancel, err
}

// A state-of-the-world node that comes back (to a restarted server or
// another replica) reporting the versions it holds is answered for every
// type on its new stream, whenever its requests arrive: here the first
// reaches the server before it has an Input, the second while the group's
// first snapshot is being set (its versions recorded, the cache not yet
// holding it) and the third after. The answers carry the versions the
// node already holds.
func TestReturningNodeAnsweredWhileItsGroupsFirstSnapshotIsSet(t *testing.T) {
	const id = "returning"
	labels := map[string]string{"app": "a"}
	in := testInput(9, DeliveryLDS)

	// What the node holds: the config of a server with the same Input.
	ref, refAddr, _ := startServer(t, ServerOptions{})
	ref.Update(in)
	holds := connectEnvoy(t, refAddr, id, labels, false).Await(t, "config from the first server", xdstest.Complete)

	hc := &heldCache{group: nodeGroupKey(id, labels), setting: make(chan struct{}), release: make(chan struct{}),
		watched: make(chan string, 8)}
	srv, addr, _ := startServerWrapping(t, ServerOptions{}, fakeTranslate, func(c snapshotStore) snapshotStore {
		hc.snapshotStore = c
		return hc
	})
	stream := openSotW(t, addr)
	resume := func(typeURL string, node *corev3.Node) {
		t.Helper()
		held := holds.Type(typeURL)
		req := &discoverygrpc.DiscoveryRequest{Node: node, TypeUrl: typeURL, VersionInfo: held.Version}
		if typeURL == resource.RouteType {
			req.ResourceNames = held.Names()
		}
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		if got := await(t, hc.watched, "the watch for "+typeLabel(typeURL)); got != typeURL {
			t.Fatalf("watch opened for %s, want %s", got, typeURL)
		}
	}

	resume(resource.ClusterType, xdstest.Node(id, "test", labels))
	updated := make(chan struct{})
	go func() {
		srv.Update(in)
		close(updated)
	}()
	await(t, hc.setting, "the group's first snapshot")
	resume(resource.ListenerType, nil)
	close(hc.release)
	await(t, updated, "Update")
	resume(resource.RouteType, nil)

	// The cache queues a stream's responses in the order it makes them:
	// whatever setting the snapshot answered comes before the routes.
	var got []string
	for {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		got = append(got, typeLabel(resp.GetTypeUrl()))
		if v := holds.Type(resp.GetTypeUrl()).Version; resp.GetVersionInfo() != v {
			t.Errorf("%s answered with version %s, the node holds %s", typeLabel(resp.GetTypeUrl()), resp.GetVersionInfo(), v)
		}
		if resp.GetTypeUrl() == resource.RouteType {
			break
		}
	}
	if want := []string{"cluster", "listener", "route"}; !slices.Equal(got, want) {
		t.Errorf("the returning node was answered for %v, want %v: a type left out holds its config and is never answered with it", got, want)
	}
}

// openSotW opens a state-of-the-world ADS stream to addr, ended with the
// test.
func openSotW(t *testing.T, addr string) discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesClient {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		_ = conn.Close()
	})
	stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

// await receives from ch; the bound only keeps a broken test from hanging.
func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("no %s", what)
		var zero T
		return zero
	}
}
