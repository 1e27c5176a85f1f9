package controlplane

import (
	"cmp"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wasmxds/wasmxds/internal/catalog"
	"github.com/wasmxds/wasmxds/internal/fetcher"
	"github.com/wasmxds/wasmxds/internal/xds"
)

// fakeModules resolves URLs from a table; a URL with a gate blocks until
// the gate is closed. cached answers Cached; every module it ever returned
// is in its cache for CachedModule.
type fakeModules struct {
	mu       sync.Mutex
	sums     map[string]string // URL → sha256 from the "registry"; missing = unavailable
	cached   map[string]string // URL → sha256 already in the cache
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
	if f.cached == nil {
		f.cached = map[string]string{}
	}
	f.cached[req.URL] = sum
	return fetcher.Module{SHA256: sum, URL: req.URL}, nil
}

func (f *fakeModules) Cached(req fetcher.Request) (fetcher.Module, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sum, ok := f.cached[req.URL]
	return fetcher.Module{SHA256: sum, URL: req.URL}, ok
}

func (f *fakeModules) CachedModule(sum string) (fetcher.Module, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.cached {
		if s == sum {
			return fetcher.Module{SHA256: sum}, true
		}
	}
	return fetcher.Module{}, false
}

func (f *fakeModules) SetInUse(h []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inUse = append(f.inUse, h)
}

func (f *fakeModules) requestCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests)
}

// fakeSink records every Input pushed.
type fakeSink struct{ inputs chan xds.Input }

func (s *fakeSink) Update(in xds.Input) { s.inputs <- in }

// until returns the first Input pushed that satisfies cond within 10s:
// pushes are coalesced, so how many arrive before it depends on timing.
func (s *fakeSink) until(t *testing.T, what string, cond func(xds.Input) bool) xds.Input {
	t.Helper()
	return s.within(t, 10*time.Second, what, cond)
}

func (s *fakeSink) within(t *testing.T, d time.Duration, what string, cond func(xds.Input) bool) xds.Input {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case in := <-s.inputs:
			if cond(in) {
				return in
			}
		case <-deadline:
			t.Fatalf("no Input with %s pushed within %v", what, d)
			return xds.Input{}
		}
	}
}

func resolved(name string) func(xds.Input) bool {
	return func(in xds.Input) bool { return in.Modules[name].Module != nil }
}

func newTestController(t *testing.T, mods *fakeModules, opts controllerOptions) (*controller, *fakeSink) {
	sink := &fakeSink{inputs: make(chan xds.Input, 64)}
	opts.Modules, opts.Server, opts.Advertise = mods, sink, "http://cp:18080"
	opts.Delivery = cmp.Or(opts.Delivery, xds.DeliveryLDS)
	c := newController(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		c.run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return c, sink
}

func plugins(ps ...catalog.Plugin) *catalog.State { return &catalog.State{Plugins: ps} }

func plugin(name, url string, policy catalog.PullPolicy) catalog.Plugin {
	return catalog.Plugin{Name: name, URL: url, PullPolicy: policy, FailStrategy: catalog.FailClose}
}

func TestSlowPullDoesNotHoldBackOthers(t *testing.T) {
	gate := make(chan struct{})
	mods := &fakeModules{sums: map[string]string{"oci://r/fast": "aa", "oci://r/slow": "bb"},
		gates: map[string]chan struct{}{"oci://r/slow": gate}}
	c, sink := newTestController(t, mods, controllerOptions{})
	c.onChange(plugins(plugin("fast", "oci://r/fast", catalog.PullIfNotPresent), plugin("slow", "oci://r/slow", catalog.PullIfNotPresent)))

	in := sink.until(t, "fast resolved", resolved("fast"))
	if m := in.Modules["fast"].Module; m == nil || m.SHA256 != "aa" || m.URL != "http://cp:18080/modules/sha256/aa" {
		t.Errorf("fast = %+v", in.Modules["fast"])
	}
	if pm := in.Modules["slow"]; pm.Module != nil || pm.Err != "" || !pm.Pending {
		t.Errorf("slow = %+v, want pending (not failed) while its pull runs", pm)
	}
	if rep := c.pluginReports(); rep[1].Name != "slow" || rep[1].State != PluginPending || rep[1].PendingSince == nil {
		t.Errorf("reports = %+v, want slow pending with a since time", rep)
	}
	close(gate)
	in = sink.until(t, "slow resolved", resolved("slow"))
	if m := in.Modules["slow"].Module; m == nil || m.SHA256 != "bb" || in.Modules["slow"].Pending {
		t.Errorf("after the slow pull, slow = %+v", in.Modules["slow"])
	}
	mods.mu.Lock()
	defer mods.mu.Unlock()
	if last := mods.inUse[len(mods.inUse)-1]; len(last) != 2 {
		t.Errorf("in use = %v, want both modules servable", last)
	}
}

// A desired state is taken at once, however many pulls hang: the catalog
// never waits on the controller, and an unrelated edit is pushed at once.
func TestHangingPullsDoNotDelayUnrelatedEdits(t *testing.T) {
	gate := make(chan struct{})
	defer close(gate)
	mods := &fakeModules{sums: map[string]string{}, gates: map[string]chan struct{}{}}
	var ps []catalog.Plugin
	for i := range 8 {
		url := fmt.Sprintf("oci://hung.example/p%d:v1", i)
		mods.gates[url] = gate
		ps = append(ps, plugin(fmt.Sprint("p", i), url, catalog.PullIfNotPresent))
	}
	c, sink := newTestController(t, mods, controllerOptions{})
	c.onChange(&catalog.State{Plugins: ps})
	sink.until(t, "the first state", func(in xds.Input) bool { return len(in.Modules) == 8 })

	edited := &catalog.State{Plugins: ps, Listeners: []catalog.Listener{{Name: "web", Port: 10000}}}
	start := time.Now()
	c.onChange(edited)
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("onChange took %v with 8 pulls hanging; it must hand the state over and return", d)
	}
	// Generous for a loaded machine; before, the edit waited 2s for pulls.
	sink.within(t, time.Second, "the edited listener", func(in xds.Input) bool { return len(in.State.Listeners) == 1 })
}

// Four hanging pulls on one registry leave the next registry's pulls alone.
func TestSlowRegistryDoesNotStarveOthers(t *testing.T) {
	gate := make(chan struct{})
	defer close(gate)
	mods := &fakeModules{sums: map[string]string{"oci://fast.example/f:v1": "ff"}, gates: map[string]chan struct{}{}}
	var ps []catalog.Plugin
	for i := range 6 {
		url := fmt.Sprintf("oci://slow.example/p%d:v1", i)
		mods.gates[url] = gate
		ps = append(ps, plugin(fmt.Sprint("slow", i), url, catalog.PullIfNotPresent))
	}
	c, sink := newTestController(t, mods, controllerOptions{PerRegistry: 2})
	c.onChange(&catalog.State{Plugins: ps})
	sink.until(t, "the slow plugins pending", func(in xds.Input) bool { return in.Modules["slow0"].Pending })
	c.onChange(&catalog.State{Plugins: append(slices.Clone(ps), plugin("fast", "oci://fast.example/f:v1", catalog.PullIfNotPresent))})
	sink.until(t, "the fast registry's module", resolved("fast"))
}

// While a fail-closed plugin's first module is pending, listeners Envoys
// already run stay established (they keep running without it) and a new
// listener on its port is not established until the module is ready.
func TestPendingFailClosePluginHoldsOnlyNewListeners(t *testing.T) {
	gate := make(chan struct{})
	mods := &fakeModules{sums: map[string]string{"oci://r/auth:v1": "aa"}, gates: map[string]chan struct{}{"oci://r/auth:v1": gate}}
	c, sink := newTestController(t, mods, controllerOptions{})
	old := catalog.Listener{Name: "old", Port: 10000}
	c.onChange(&catalog.State{Listeners: []catalog.Listener{old}})
	sink.until(t, "the first state", func(in xds.Input) bool { return len(in.State.Listeners) == 1 })

	auth := plugin("auth", "oci://r/auth:v1", catalog.PullIfNotPresent)
	next := &catalog.State{Listeners: []catalog.Listener{old, {Name: "new", Port: 10001}, {Name: "other", Port: 10002}}}
	auth.Ports = []uint32{10000, 10001}
	next.Plugins = []catalog.Plugin{auth}
	c.onChange(next)
	in := sink.until(t, "auth pending", func(in xds.Input) bool { return in.Modules["auth"].Pending })
	if !in.Established["old"] || in.Established["new"] {
		t.Errorf("established = %v, want old (Envoys run it) and not new", in.Established)
	}
	c.onChange(next) // another push while pending: new is still not established
	in = sink.until(t, "a push while pending", func(in xds.Input) bool { return in.Modules["auth"].Pending })
	if in.Established["new"] || !in.Established["other"] {
		t.Errorf("established = %v, want other (no pending plugin on its port) but not new", in.Established)
	}
	close(gate)
	sink.until(t, "auth resolved", resolved("auth"))
	c.onChange(next)
	in = sink.until(t, "a push after", resolved("auth"))
	if !in.Established["new"] {
		t.Errorf("established = %v after the module arrived, want new", in.Established)
	}
}

func TestFailedPullKeepsLastGoodModule(t *testing.T) {
	mods := &fakeModules{sums: map[string]string{"oci://r/a:v1": "aa"}}
	c, sink := newTestController(t, mods, controllerOptions{})
	c.onChange(plugins(plugin("a", "oci://r/a:v1", catalog.PullIfNotPresent)))
	sink.until(t, "a resolved", resolved("a"))

	c.onChange(plugins(plugin("a", "oci://r/a:v2", catalog.PullIfNotPresent)))
	pm := sink.until(t, "a's pull error", func(in xds.Input) bool { return in.Modules["a"].Err != "" }).Modules["a"]
	if pm.Module == nil || pm.Module.SHA256 != "aa" || pm.Err == "" {
		t.Errorf("a = %+v, want the last good module aa and the pull error", pm)
	}
	rep := c.pluginReports()
	if len(rep) != 1 || rep[0].SHA256 != "aa" || rep[0].Error == "" || rep[0].State != PluginFailed {
		t.Errorf("reports = %+v", rep)
	}
}

// A plugin running on its last good module keeps it across a restart with
// the registry down.
func TestRestartKeepsModuleInForce(t *testing.T) {
	stateFile := filepath.Join(t.TempDir(), "plugins.json")
	mods := &fakeModules{sums: map[string]string{"oci://r/a:v1": "aa"}}
	c, sink := newTestController(t, mods, controllerOptions{StateFile: stateFile})
	c.onChange(plugins(plugin("a", "oci://r/a:v1", catalog.PullIfNotPresent)))
	sink.until(t, "a resolved", resolved("a"))
	c.onChange(plugins(plugin("a", "oci://r/a:v2", catalog.PullIfNotPresent))) // v2 does not exist
	sink.until(t, "a's pull error", func(in xds.Input) bool { return in.Modules["a"].Err != "" })

	// The restart: the registry is down, only the cache remains.
	down := &fakeModules{cached: map[string]string{"oci://r/a:v1": "aa"}}
	c2, sink2 := newTestController(t, down, controllerOptions{StateFile: stateFile})
	c2.onChange(plugins(plugin("a", "oci://r/a:v2", catalog.PullIfNotPresent)))
	in := sink2.until(t, "a after the restart", func(in xds.Input) bool { return in.Modules["a"].Err != "" })
	if m := in.Modules["a"].Module; m == nil || m.SHA256 != "aa" {
		t.Errorf("after a restart a = %+v, want the module in force before it (aa)", in.Modules["a"])
	}
}

// Modules in the cache are in the very first push: a restart does not wait
// on registries for what it already holds.
func TestCachedModulesInFirstPush(t *testing.T) {
	gate := make(chan struct{})
	defer close(gate)
	mods := &fakeModules{cached: map[string]string{"oci://r/a:v1": "aa"},
		gates: map[string]chan struct{}{"oci://r/a:v1": gate, "oci://r/b:v1": gate}}
	c, sink := newTestController(t, mods, controllerOptions{})
	c.onChange(plugins(plugin("a", "oci://r/a:v1", catalog.PullIfNotPresent), plugin("b", "oci://r/b:v1", catalog.PullIfNotPresent)))
	in := sink.until(t, "the first push", func(xds.Input) bool { return true })
	if !resolved("a")(in) || !in.Modules["b"].Pending {
		t.Errorf("first push modules = %+v, want a from the cache and b pending", in.Modules)
	}
	for deadline := time.Now().Add(10 * time.Second); mods.requestCount() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond) // b's pull starts in its own goroutine
	}
	mods.mu.Lock()
	defer mods.mu.Unlock()
	if len(mods.requests) != 1 || mods.requests[0].URL != "oci://r/b:v1" {
		t.Errorf("resolutions = %+v, want only b's: a was in the cache", mods.requests)
	}
}

func TestResyncReresolvesAlwaysPlugins(t *testing.T) {
	mods := &fakeModules{sums: map[string]string{"oci://r/a:latest": "aa", "oci://r/b:v1": "bb"}}
	c, sink := newTestController(t, mods, controllerOptions{Resync: 20 * time.Millisecond})
	c.onChange(plugins(plugin("a", "oci://r/a:latest", catalog.PullAlways), plugin("b", "oci://r/b:v1", catalog.PullIfNotPresent)))
	sink.until(t, "a and b resolved", func(in xds.Input) bool { return resolved("a")(in) && resolved("b")(in) })

	mods.mu.Lock()
	mods.sums["oci://r/a:latest"] = "cc" // the tag moved
	mods.requests = nil
	mods.mu.Unlock()
	sink.until(t, "the moved tag's module", func(in xds.Input) bool {
		return in.Modules["a"].Module != nil && in.Modules["a"].Module.SHA256 == "cc"
	})
	mods.mu.Lock()
	defer mods.mu.Unlock()
	for _, r := range mods.requests {
		if r.URL != "oci://r/a:latest" || !r.Always {
			t.Errorf("resync request %+v, want only the Always plugin, with Always set", r)
		}
	}
}

func TestRemovedPluginsAreForgotten(t *testing.T) {
	mods := &fakeModules{sums: map[string]string{"oci://r/a": "aa"}}
	c, sink := newTestController(t, mods, controllerOptions{})
	c.onChange(plugins(plugin("a", "oci://r/a", catalog.PullIfNotPresent)))
	sink.until(t, "a resolved", resolved("a"))
	c.onChange(plugins())
	sink.until(t, "no plugins", func(in xds.Input) bool { return len(in.Modules) == 0 })
	if rep := c.pluginReports(); len(rep) != 0 {
		t.Errorf("reports = %+v", rep)
	}
}
