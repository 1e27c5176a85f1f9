package xdstest_test

import (
	"slices"
	"testing"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/wasmxds/wasmxds/internal/xdstest"
)

// A client whose server goes away resumes on another one, telling it what
// it holds; a server with the same configuration sends nothing new.
func TestResumesOnAnotherServerWithWhatItHolds(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			a, b := startADS(t), startADS(t)
			a.set(t, "n1", config(t, "v1", "web-routes", false))
			b.set(t, "n1", config(t, "v1", "web-routes", false))
			resumed := make(chan error, 1)
			c := xdstest.Start(t, a.addr, xdstest.Options{Delta: m.delta, NodeID: "n1", Resume: &xdstest.Resume{
				Addrs: []string{a.addr, b.addr}, Backoff: 10 * time.Millisecond,
				OnResumed: func(_ *xdstest.Client, broke error) { resumed <- broke },
			}})
			c.Await(t, "v1 from a", xdstest.Complete)
			before := len(c.Responses())

			a.gs.Stop()
			select {
			case err := <-resumed:
				if err == nil {
					t.Error("resumed with no error from the broken stream")
				}
			case <-time.After(xdstest.AwaitTimeout):
				t.Fatal("never resumed")
			}
			if m.delta {
				b.awaitDelta(t, "listeners with the versions held", func(r *discoverygrpc.DeltaDiscoveryRequest) bool {
					return r.GetTypeUrl() == resource.ListenerType && r.GetInitialResourceVersions()["web"] != ""
				})
				b.awaitDelta(t, "routes by name with their versions", func(r *discoverygrpc.DeltaDiscoveryRequest) bool {
					return r.GetTypeUrl() == resource.RouteType && slices.Equal(r.GetResourceNamesSubscribe(), []string{"web-routes"}) &&
						r.GetInitialResourceVersions()["web-routes"] != ""
				})
			} else {
				b.awaitSotW(t, "listeners at v1", func(r *discoverygrpc.DiscoveryRequest) bool {
					return r.GetTypeUrl() == resource.ListenerType && r.GetVersionInfo() == "v1"
				})
				b.awaitSotW(t, "routes by name at v1", func(r *discoverygrpc.DiscoveryRequest) bool {
					return r.GetTypeUrl() == resource.RouteType && r.GetVersionInfo() == "v1" &&
						slices.Equal(r.GetResourceNames(), []string{"web-routes"})
				})
			}

			// A change on b still reaches the resumed client; until then it
			// was sent nothing but what it held.
			b.set(t, "n1", config(t, "v2", "web-routes", false))
			c.Await(t, "v2 from b", func(s xdstest.State) bool {
				return xdstest.Complete(s) && s.Type(resource.RouteType).Version == "v2"
			})
			for _, r := range c.Responses()[before:] {
				if r.Version == "v2" {
					break
				}
				if m.delta && (len(r.Names) > 0 || len(r.Removed) > 0) {
					t.Errorf("b sent %s %v (removed %v) to a client that held it all", r.TypeURL, r.Names, r.Removed)
				}
				if !m.delta && r.Version != "v1" {
					t.Errorf("b sent %s at %q before v2", r.TypeURL, r.Version)
				}
			}
		})
	}
}
