package controlplane

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wasmxds/wasmxds/internal/catalog"
	"github.com/wasmxds/wasmxds/internal/xds"
)

// The choice is part of the contract between replicas and across upgrades:
// a changed hash would move nodes between modules when a replica is
// upgraded. These values pin it (the node's bucket is pinned in xds).
func TestRolloutChoiceIsPinned(t *testing.T) {
	// Computed apart from this code, with Python:
	//   int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % 100
	pinned := map[string]int{"auth": 3, "canary": 52, "ratelimit": 19}
	for name, want := range pinned {
		if got := pluginShift(name); got != want {
			t.Errorf("pluginShift(%q) = %d, want %d: the rollout hash changed, so upgraded replicas "+
				"would choose other nodes than the rest of the fleet", name, got, want)
		}
	}
	// A node is chosen when (its bucket + the plugin name's) mod 100 is
	// below percent: envoy-1 and auth give (67 + 3) mod 100 = 70.
	if RolloutChosen("envoy-1", "auth", 70) || !RolloutChosen("envoy-1", "auth", 71) {
		t.Errorf("envoy-1 must join auth's rollout at 71%%, not before")
	}
	if b := chosenBuckets("auth", 71); b.Has(68) || !b.Has(67) || !b.Has(97) || b.Has(96) || !b.Has(0) {
		t.Errorf("auth at 71%% reaches buckets %v, want 97-99 and 0-67", b)
	}
}

func TestRolloutChoosesItsShareStablyAndOnlyAddsNodes(t *testing.T) {
	const fleet = 20000
	ids := make([]string, fleet)
	for i := range ids {
		ids[i] = fmt.Sprintf("envoy-%d", i)
	}
	for _, pct := range []int{1, 10, 50, 90} {
		n := 0
		for _, id := range ids {
			if RolloutChosen(id, "auth", pct) {
				n++
			}
		}
		// Binomial: 4 standard deviations at 50% is ±1.4 points.
		if got := float64(n) * 100 / fleet; got < float64(pct)-1.5 || got > float64(pct)+1.5 {
			t.Errorf("%d%% rollout chose %.2f%% of %d nodes", pct, got, fleet)
		}
	}
	overlap, authOnly := 0, 0
	for _, id := range ids {
		for pct := 0; pct < 100; pct++ {
			if RolloutChosen(id, "auth", pct) && !RolloutChosen(id, "auth", pct+1) {
				t.Fatalf("%s chosen at %d%% but not at %d%%: raising percent must only add nodes", id, pct, pct+1)
			}
		}
		if RolloutChosen(id, "auth", 0) || !RolloutChosen(id, "auth", 100) {
			t.Fatalf("%s: 0%% must choose nobody and 100%% everybody", id)
		}
		a, b := RolloutChosen(id, "auth", 10), RolloutChosen(id, "ratelimit", 10)
		if a && b {
			overlap++
		} else if a {
			authOnly++
		}
	}
	// Two plugins' 10% rollouts are not the same 10% of the fleet.
	if authOnly == 0 {
		t.Errorf("auth's and ratelimit's rollouts chose the same nodes (%d in both)", overlap)
	}
}

// The buckets handed to the engine are exactly those of the nodes the
// choice reaches: a node gets the rollout module iff RolloutChosen says so.
func TestRolloutBucketsAreTheChoice(t *testing.T) {
	for _, plugin := range []string{"auth", "canary"} {
		for _, pct := range []int{0, 1, 30, 50, 99, 100} {
			b := chosenBuckets(plugin, pct)
			for i := range 2000 {
				id := fmt.Sprintf("edge-%d", i)
				if got, want := b.Has(xds.NodeBucket(id)), RolloutChosen(id, plugin, pct); got != want {
					t.Fatalf("%s of %s at %d%%: in the buckets %v, chosen %v", id, plugin, pct, got, want)
				}
			}
		}
	}
}

func rolloutPlugin(url string, pct int) catalog.Plugin {
	p := plugin("auth", "oci://r/auth:v1", catalog.PullIfNotPresent)
	p.Rollout = &catalog.Rollout{URL: url, Percent: pct}
	return p
}

// withRollout is an Input rolling auth's module sha out to the buckets
// its rollout reaches at pct.
func withRollout(sha string, pct int) func(xds.Input) bool {
	return func(in xds.Input) bool {
		r, ok := in.Rollouts["auth"]
		return ok && r.Module != nil && r.Module.SHA256 == sha && r.Buckets == chosenBuckets("auth", pct) &&
			in.Modules["auth"].Module != nil
	}
}

func noRollout(in xds.Input) bool {
	_, ok := in.Rollouts["auth"]
	return !ok && in.Modules["auth"].Module != nil
}

// A rollout module is resolved like the plugin's own and pushed for the
// chosen share once resolved; while it is pending nobody is sent it.
func TestRolloutIsPushedOnceResolved(t *testing.T) {
	gate := make(chan struct{})
	mods := &fakeModules{sums: map[string]string{"oci://r/auth:v1": "a1", "oci://r/auth:v2": "b2"},
		gates: map[string]chan struct{}{"oci://r/auth:v2": gate}}
	c, sink := newTestController(t, mods, controllerOptions{Delivery: xds.DeliveryECDS})
	c.onChange(plugins(rolloutPlugin("oci://r/auth:v2", 30)))
	sink.until(t, "v1 with no rollout while v2 is pulled", noRollout)
	if rep := c.pluginReports()[0].Rollout; rep == nil || rep.State != RolloutPending || rep.Percent != 30 {
		t.Errorf("rollout report while pulling = %+v, want pending at 30%%", rep)
	}
	close(gate)
	in := sink.until(t, "the rollout", withRollout("b2", 30))
	if got := in.Rollouts["auth"].Module.URL; got != "http://cp:18080/modules/sha256/b2" {
		t.Errorf("rollout module URL = %q", got)
	}
	mods.mu.Lock()
	last := mods.inUse[len(mods.inUse)-1]
	mods.mu.Unlock()
	if !slicesEqual(last, []string{"a1", "b2"}) {
		t.Errorf("servable modules = %v, want both v1 and the rollout's", last)
	}
	if rep := c.pluginReports()[0].Rollout; rep.State != RolloutActive || rep.SHA256 != "b2" {
		t.Errorf("rollout report = %+v, want active with b2", rep)
	}

	// Promotion is an edit of url: the rollout names the plugin's own
	// module and nothing is rolled out any more.
	promoted := plugin("auth", "oci://r/auth:v2", catalog.PullIfNotPresent)
	promoted.Rollout = &catalog.Rollout{URL: "oci://r/auth:v2", Percent: 30}
	c.onChange(plugins(promoted))
	in = sink.until(t, "v2 for everyone", func(in xds.Input) bool {
		return len(in.Rollouts) == 0 && in.Modules["auth"].Module != nil && in.Modules["auth"].Module.SHA256 == "b2"
	})
	if rep := c.pluginReports()[0].Rollout; rep.State != RolloutPromoted {
		t.Errorf("after promotion: %+v", rep)
	}
}

// A rollout module that does not resolve reaches nobody; the plugin's own
// module is untouched.
func TestUnresolvableRolloutReachesNobody(t *testing.T) {
	mods := &fakeModules{sums: map[string]string{"oci://r/auth:v1": "a1"}}
	c, sink := newTestController(t, mods, controllerOptions{Delivery: xds.DeliveryECDS})
	c.onChange(plugins(rolloutPlugin("oci://r/auth:missing", 50)))
	waitUntil(t, "the rollout to fail", func() bool { return c.pluginReports()[0].Rollout.State == RolloutFailed })
	c.trigger()
	sink.until(t, "v1 alone after the failure", noRollout)
	if rep := c.pluginReports()[0]; rep.State != PluginReady || !strings.Contains(rep.Rollout.Error, "auth:missing") {
		t.Errorf("report = %+v / %+v", rep, rep.Rollout)
	}
}

// A chosen node refusing the rollout module halts the rollout: the next
// push has none, status and metrics say why, other refusals change
// nothing, an edit of percent re-arms it, and a restart does not.
func TestRefusedRolloutHaltsUntilEdited(t *testing.T) {
	state := filepath.Join(t.TempDir(), "plugins.json")
	mods := &fakeModules{sums: map[string]string{"oci://r/auth:v1": "a1", "oci://r/auth:v2": "b2"}}
	c, sink := newTestController(t, mods, controllerOptions{StateFile: state, Delivery: xds.DeliveryECDS})
	reg := prometheus.NewRegistry()
	reg.MustRegister(newRolloutCollector(c))
	c.onChange(plugins(rolloutPlugin("oci://r/auth:v2", 50)))
	sink.until(t, "the rollout", withRollout("b2", 50))

	chosen, other := chosenAndNot(t, "auth", 50)
	c.rollouts.moduleRefused(chosen, "auth", "a1", "the main module failed somewhere") // not the rollout's module
	c.rollouts.moduleRefused(chosen, "other", "b2", "another plugin")
	c.rollouts.moduleRefused(other, "auth", "b2", "a node the rollout did not choose")
	if rep := c.pluginReports()[0].Rollout; rep.State != RolloutActive {
		t.Fatalf("refusals of other modules or by other nodes halted the rollout: %+v", rep)
	}
	c.rollouts.moduleRefused(chosen, "auth", "b2", "Envoy downloaded module b2 but did not create its VM")
	sink.until(t, "the rollout withdrawn", noRollout)
	rep := c.pluginReports()[0].Rollout
	if rep.State != RolloutHalted || rep.Halted == nil || rep.Halted.Node != chosen || rep.Halted.Cause != HaltRefused ||
		!strings.Contains(rep.Halted.Reason, "did not create its VM") {
		t.Errorf("halted report = %+v (%+v)", rep, rep.Halted)
	}
	want := `
# HELP wasmxds_rollout_halts_total Rollouts halted because a chosen node refused the rollout module, per plugin since start.
# TYPE wasmxds_rollout_halts_total counter
wasmxds_rollout_halts_total{plugin="auth"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "wasmxds_rollout_halts_total"); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(gaugeOf(t, reg, "halted")); got != 1 {
		t.Errorf("wasmxds_rollout_state{state=halted} = %v", got)
	}

	// The halt outlives a restart with the same specs.
	waitUntil(t, "the halt recorded", func() bool {
		b, err := os.ReadFile(state)
		return err == nil && strings.Contains(string(b), "haltedRollouts")
	})
	mods2 := &fakeModules{sums: mods.sums, cached: map[string]string{"oci://r/auth:v1": "a1", "oci://r/auth:v2": "b2"}}
	c2, sink2 := newTestController(t, mods2, controllerOptions{StateFile: state, Delivery: xds.DeliveryECDS})
	c2.onChange(plugins(rolloutPlugin("oci://r/auth:v2", 50)))
	sink2.until(t, "v1 alone after the restart", noRollout)
	if rep := c2.pluginReports()[0].Rollout; rep.State != RolloutHalted {
		t.Errorf("after a restart the rollout is %s, want still halted", rep.State)
	}

	// An edit of percent re-arms it.
	c.onChange(plugins(rolloutPlugin("oci://r/auth:v2", 10)))
	sink.until(t, "the rollout re-armed at 10%", withRollout("b2", 10))
	if rep := c.pluginReports()[0].Rollout; rep.State != RolloutActive || rep.Halted != nil {
		t.Errorf("re-armed report = %+v", rep)
	}
}

// gaugeOf is the wasmxds_rollout_state series of auth in state.
func gaugeOf(t *testing.T, reg *prometheus.Registry, state string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "wasmxds_rollout_state" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["plugin"] == "auth" && labels["state"] == state {
				g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
				g.Set(m.GetGauge().GetValue())
				return g
			}
		}
	}
	t.Fatalf("no wasmxds_rollout_state{plugin=auth,state=%s}", state)
	return nil
}

func slicesEqual(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

// chosenAndNot returns a node id a rollout of plugin at pct chooses and
// one it does not.
func chosenAndNot(t *testing.T, plugin string, pct int) (chosen, other string) {
	t.Helper()
	for i := 0; chosen == "" || other == ""; i++ {
		id := fmt.Sprintf("edge-%d", i)
		if RolloutChosen(id, plugin, pct) {
			chosen = cmp.Or(chosen, id)
		} else {
			other = cmp.Or(other, id)
		}
	}
	return chosen, other
}

// A refusal of the previous rollout module, arriving after the rollout
// moved on to another url, does not halt the new one.
func TestLateRefusalOfAnEarlierRolloutModuleHaltsNothing(t *testing.T) {
	gate := make(chan struct{})
	mods := &fakeModules{sums: map[string]string{"oci://r/auth:v1": "a1", "oci://r/auth:v2": "b2", "oci://r/auth:v3": "c3"},
		gates: map[string]chan struct{}{"oci://r/auth:v3": gate}}
	c, sink := newTestController(t, mods, controllerOptions{Delivery: xds.DeliveryECDS})
	c.onChange(plugins(rolloutPlugin("oci://r/auth:v2", 50)))
	sink.until(t, "the v2 rollout", withRollout("b2", 50))
	c.onChange(plugins(rolloutPlugin("oci://r/auth:v3", 50)))
	chosen, _ := chosenAndNot(t, "auth", 50)
	c.rollouts.moduleRefused(chosen, "auth", "b2", "v2 refused late")
	close(gate)
	sink.until(t, "the v3 rollout", withRollout("c3", 50))
	if rep := c.pluginReports()[0].Rollout; rep.State != RolloutActive || rep.SHA256 != "c3" {
		t.Errorf("after a late refusal of v2: %+v", rep)
	}
}

// A restart whose rollout pull hangs keeps pushing the rollout module it
// had, as the plugin's own module is kept: chosen nodes do not flip back.
func TestRestartKeepsTheRolloutModuleWhilePulling(t *testing.T) {
	state := filepath.Join(t.TempDir(), "plugins.json")
	mods := &fakeModules{sums: map[string]string{"oci://r/auth:v1": "a1", "oci://r/auth:v2": "b2"}}
	c, sink := newTestController(t, mods, controllerOptions{StateFile: state, Delivery: xds.DeliveryECDS})
	c.onChange(plugins(rolloutPlugin("oci://r/auth:v2", 50)))
	sink.until(t, "the rollout", withRollout("b2", 50))
	waitUntil(t, "the rollout module recorded", func() bool {
		b, err := os.ReadFile(state)
		return err == nil && strings.Contains(string(b), "b2")
	})

	gate := make(chan struct{})
	defer close(gate)
	restarted := &fakeModules{sums: mods.sums, cached: map[string]string{"oci://r/auth:v1": "a1", "oci://r/auth:v2": "b2"},
		gates: map[string]chan struct{}{"oci://r/auth:v1": gate, "oci://r/auth:v2": gate}}
	// Neither reference is answered from the cache index: both pulls hang.
	restarted.cached = map[string]string{"file:///nothing": "a1", "file:///nothing-either": "b2"}
	c2, sink2 := newTestController(t, restarted, controllerOptions{StateFile: state, Delivery: xds.DeliveryECDS})
	c2.onChange(plugins(rolloutPlugin("oci://r/auth:v2", 50)))
	in := sink2.until(t, "a push", func(xds.Input) bool { return true })
	if !withRollout("b2", 50)(in) {
		t.Errorf("first push after the restart: modules %+v, rollouts %+v; want v1 and the v2 rollout kept", in.Modules, in.Rollouts)
	}
}

// Moving the rollout's tag to a new module re-arms a halted rollout.
func TestMovedRolloutTagReArmsIt(t *testing.T) {
	mods := &fakeModules{sums: map[string]string{"oci://r/auth:v1": "a1", "oci://r/auth:canary": "b2"}}
	c, sink := newTestController(t, mods, controllerOptions{Delivery: xds.DeliveryECDS})
	p := rolloutPlugin("oci://r/auth:canary", 50)
	p.PullPolicy = catalog.PullAlways
	c.onChange(plugins(p))
	sink.until(t, "the rollout", withRollout("b2", 50))
	chosen, _ := chosenAndNot(t, "auth", 50)
	c.rollouts.moduleRefused(chosen, "auth", "b2", "refused")
	sink.until(t, "the halt", noRollout)
	mods.mu.Lock()
	mods.sums["oci://r/auth:canary"] = "c3"
	mods.mu.Unlock()
	c.resynced()
	c.early <- struct{}{}
	sink.until(t, "the new module rolled out", withRollout("c3", 50))
}

// With LDS delivery a rollout is not applied (Envoy would not report a
// module that fails to start): status says why, nothing is pulled.
func TestRolloutNeedsECDS(t *testing.T) {
	mods := &fakeModules{sums: map[string]string{"oci://r/auth:v1": "a1", "oci://r/auth:v2": "b2"}}
	c, sink := newTestController(t, mods, controllerOptions{Delivery: xds.DeliveryLDS})
	c.onChange(plugins(rolloutPlugin("oci://r/auth:v2", 50)))
	sink.until(t, "v1 alone", noRollout)
	rep := c.pluginReports()[0].Rollout
	if rep.State != RolloutUnsupported || !strings.Contains(rep.Error, "--filter-delivery ecds") {
		t.Errorf("rollout with LDS delivery: %+v", rep)
	}
	mods.mu.Lock()
	defer mods.mu.Unlock()
	for _, r := range mods.requests {
		if r.URL == "oci://r/auth:v2" {
			t.Errorf("the rollout module was pulled with LDS delivery")
		}
	}
}
