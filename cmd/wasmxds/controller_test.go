package main

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/wasmxds/wasmxds/catalog"
	"github.com/wasmxds/wasmxds/fetcher"
	"github.com/wasmxds/wasmxds/xds"
)

// fakeModules resolves URLs from a table; a URL with a gate blocks until
// the gate is closed.
type fakeModules struct {
	mu       sync.Mutex
	sums     map[string]string // URL → sha256; missing = unavailable
	gates    map[string]chan struct{}
	requests []fetcher.Request
	inUse    [][]string
}

func (f *fakeModules) Resolve(ctx context.Context, req fetcher.Request) (fetcher.Module, error) {
	f.mu.Lock()
	f.requests = append(f.requests, req)
	gate := f.gates[req.URL]
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return fetcher.Module{}, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	sum, ok := f.sums[req.URL]
	if !ok {
		return fetcher.Module{}, fmt.Errorf("%s: %w", req.URL, fetcher.ErrUnavailable)
	}
	return fetcher.Module{SHA256: sum, URL: req.URL}, nil
}

func (f *fakeModules) SetInUse(h []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inUse = append(f.inUse, h)
}

// fakeSink records every Input pushed.
type fakeSink struct{ inputs chan xds.Input }

func (s *fakeSink) Update(in xds.Input) { s.inputs <- in }

// until returns the first Input pushed that satisfies cond: pushes are
// coalesced, so how many arrive before it depends on timing.
func (s *fakeSink) until(t *testing.T, what string, cond func(xds.Input) bool) xds.Input {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case in := <-s.inputs:
			if cond(in) {
				return in
			}
		case <-deadline:
			t.Fatalf("no Input with %s pushed", what)
			return xds.Input{}
		}
	}
}

func resolved(name string) func(xds.Input) bool {
	return func(in xds.Input) bool { return in.Modules[name].Module != nil }
}

func newTestController(t *testing.T, mods *fakeModules) (*controller, *fakeSink, context.Context) {
	sink := &fakeSink{inputs: make(chan xds.Input, 16)}
	c := newController(controllerOptions{Modules: mods, Server: sink, Advertise: "http://cp:18080",
		Delivery: xds.DeliveryLDS, Wait: 20 * time.Millisecond, FirstWait: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go c.run(ctx)
	return c, sink, ctx
}

func plugins(ps ...catalog.Plugin) *catalog.State { return &catalog.State{Plugins: ps} }

func plugin(name, url string, policy catalog.PullPolicy) catalog.Plugin {
	return catalog.Plugin{Name: name, URL: url, PullPolicy: policy}
}

func TestSlowPullDoesNotHoldBackOthers(t *testing.T) {
	gate := make(chan struct{})
	mods := &fakeModules{sums: map[string]string{"oci://r/fast": "aa", "oci://r/slow": "bb"},
		gates: map[string]chan struct{}{"oci://r/slow": gate}}
	c, sink, ctx := newTestController(t, mods)
	c.onChange(ctx, plugins(plugin("fast", "oci://r/fast", catalog.PullIfNotPresent), plugin("slow", "oci://r/slow", catalog.PullIfNotPresent)))

	in := sink.until(t, "fast resolved", resolved("fast"))
	if m := in.Modules["fast"].Module; m == nil || m.SHA256 != "aa" || m.URL != "http://cp:18080/modules/sha256/aa" {
		t.Errorf("fast = %+v", in.Modules["fast"])
	}
	if pm := in.Modules["slow"]; pm.Module != nil || pm.Err == "" {
		t.Errorf("slow = %+v, want unresolved with a reason while its pull runs", pm)
	}
	close(gate)
	in = sink.until(t, "slow resolved", resolved("slow"))
	if m := in.Modules["slow"].Module; m == nil || m.SHA256 != "bb" {
		t.Errorf("after the slow pull, slow = %+v", in.Modules["slow"])
	}
	mods.mu.Lock()
	defer mods.mu.Unlock()
	if last := mods.inUse[len(mods.inUse)-1]; len(last) != 2 {
		t.Errorf("in use = %v, want both modules servable", last)
	}
}

func TestFailedPullKeepsLastGoodModule(t *testing.T) {
	mods := &fakeModules{sums: map[string]string{"oci://r/a:v1": "aa"}}
	c, sink, ctx := newTestController(t, mods)
	c.onChange(ctx, plugins(plugin("a", "oci://r/a:v1", catalog.PullIfNotPresent)))
	sink.until(t, "a resolved", resolved("a"))

	c.onChange(ctx, plugins(plugin("a", "oci://r/a:v2", catalog.PullIfNotPresent)))
	pm := sink.until(t, "a's pull error", func(in xds.Input) bool { return in.Modules["a"].Err != "" }).Modules["a"]
	if pm.Module == nil || pm.Module.SHA256 != "aa" || pm.Err == "" {
		t.Errorf("a = %+v, want the last good module aa and the pull error", pm)
	}
	rep := c.pluginReports()
	if len(rep) != 1 || rep[0].SHA256 != "aa" || rep[0].Error == "" {
		t.Errorf("reports = %+v", rep)
	}
}

func TestResyncReresolvesAlwaysPlugins(t *testing.T) {
	mods := &fakeModules{sums: map[string]string{"oci://r/a:latest": "aa", "oci://r/b:v1": "bb"}}
	c, sink, ctx := newTestController(t, mods)
	c.onChange(ctx, plugins(plugin("a", "oci://r/a:latest", catalog.PullAlways), plugin("b", "oci://r/b:v1", catalog.PullIfNotPresent)))
	sink.until(t, "a and b resolved", func(in xds.Input) bool { return resolved("a")(in) && resolved("b")(in) })

	mods.mu.Lock()
	mods.sums["oci://r/a:latest"] = "cc" // the tag moved
	mods.requests = nil
	mods.mu.Unlock()
	<-c.resync(ctx)
	sink.until(t, "the moved tag's module", func(in xds.Input) bool {
		return in.Modules["a"].Module != nil && in.Modules["a"].Module.SHA256 == "cc"
	})
	mods.mu.Lock()
	defer mods.mu.Unlock()
	if len(mods.requests) != 1 || mods.requests[0].URL != "oci://r/a:latest" || !mods.requests[0].Always {
		t.Errorf("resync requests = %+v, want only the Always plugin, with Always set", mods.requests)
	}
}

func TestRemovedPluginsAreForgotten(t *testing.T) {
	mods := &fakeModules{sums: map[string]string{"oci://r/a": "aa"}}
	c, sink, ctx := newTestController(t, mods)
	c.onChange(ctx, plugins(plugin("a", "oci://r/a", catalog.PullIfNotPresent)))
	sink.until(t, "a resolved", resolved("a"))
	c.onChange(ctx, plugins())
	sink.until(t, "no plugins", func(in xds.Input) bool { return len(in.Modules) == 0 })
	if rep := c.pluginReports(); len(rep) != 0 {
		t.Errorf("reports = %+v", rep)
	}
}
