package controlplane

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	promgo "github.com/prometheus/client_model/go"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/wasmxds/wasmxds/internal/catalog"
	"github.com/wasmxds/wasmxds/internal/telemetry"
	"github.com/wasmxds/wasmxds/internal/xds"
)

// analysisFixture is a controller with one plugin, auth, rolling b2 out
// over a1, nodes that run one or the other, and an analyzer whose clock the
// test steps: each interval is replayed without sleeping.
type analysisFixture struct {
	c     *controller
	sink  *fakeSink
	clk   *clocktesting.FakeClock
	store *telemetry.Store
	a     *analyzer
	nodes []xds.NodeStatus
}

func judgedRollout(pct int, steps ...int) *catalog.State {
	p := plugin("auth", "oci://r/auth:v1", catalog.PullIfNotPresent)
	p.Rollout = &catalog.Rollout{URL: "oci://r/auth:v2", Percent: pct, Steps: steps,
		Analysis: &catalog.Analysis{Interval: 30 * time.Second, MinRequests: 20, MaxErrorRate: 0.05}}
	st := plugins(p)
	st.Listeners = []catalog.Listener{{Name: "web", Port: 8080}, {Name: "other", Port: 9090}}
	st.Plugins[0].Ports = []uint32{8080}
	return st
}

func newAnalysisFixture(t *testing.T, st *catalog.State, pct int) *analysisFixture {
	t.Helper()
	return newAnalysisFixtureWith(t, st, pct, controllerOptions{Delivery: xds.DeliveryECDS})
}

func newAnalysisFixtureWith(t *testing.T, st *catalog.State, pct int, opts controllerOptions) *analysisFixture {
	t.Helper()
	mods := &fakeModules{sums: map[string]string{"oci://r/auth:v1": "a1", "oci://r/auth:v2": "b2"}}
	c, sink := newTestController(t, mods, opts)
	c.onChange(st)
	sink.until(t, "the rollout", withRollout("b2", pct))
	f := &analysisFixture{c: c, sink: sink, clk: clocktesting.NewFakeClock(time.Unix(1_000_000, 0))}
	f.store = telemetry.NewStore(telemetry.Options{Clock: f.clk})
	f.a = newAnalyzer(c.rollouts, f.store, func() []xds.NodeStatus { return f.nodes }, newCarriers(), f.clk,
		slog.New(slog.DiscardHandler))
	// Two nodes the rollout chooses at pct, running b2, and two it does not, running a1.
	var in, out int
	for i := 0; in < 2 || out < 2; i++ {
		id := fmt.Sprintf("n%d", i)
		chosen := RolloutChosen(id, "auth", pct)
		if (chosen && in == 2) || (!chosen && out == 2) {
			continue
		}
		sha := map[bool]string{true: "b2", false: "a1"}[chosen]
		in, out = in+map[bool]int{true: 1}[chosen], out+map[bool]int{false: 1}[chosen]
		f.nodes = append(f.nodes, xds.NodeStatus{ID: id, Labels: map[string]string{},
			Plugins: []xds.PluginStatus{{Name: "auth", SHA256: sha, State: xds.PluginRunning}}})
	}
	for _, n := range f.nodes {
		f.store.Report(n.ID, nil) // heard from before the first interval
	}
	f.a.tick() // the first interval starts
	return f
}

// interval replays one analysis interval: every node serves requests on
// the listener carrying the plugin (and noise on one that does not), with
// errors5xx of them failing on nodes running module sha.
func (f *analysisFixture) interval(requests map[string]int, errors map[string]int, reloads map[string]int) {
	for _, n := range f.nodes {
		sha := n.Plugins[0].SHA256
		f.store.Report(n.ID, []*promgo.MetricFamily{
			fam("http.web.downstream_rq_total", requests[sha]), fam("http.web.downstream_rq_5xx", errors[sha]),
			fam("http.other.downstream_rq_5xx", 1000), fam("wasm.auth.vm_reload_success", reloads[sha])})
	}
	f.clk.Step(30 * time.Second)
	f.a.tick()
}

func fam(name string, v int) *promgo.MetricFamily {
	t, f := promgo.MetricType_COUNTER, float64(v)
	return &promgo.MetricFamily{Name: &name, Type: &t, Metric: []*promgo.Metric{{Counter: &promgo.Counter{Value: &f}}}}
}

func (f *analysisFixture) rollout(t *testing.T) *RolloutReport {
	t.Helper()
	return f.c.pluginReports()[0].Rollout
}

// A rollout module answering 500 to half its requests, while the main
// module's nodes see 2%, halts at the end of the interval: the same halt as
// a refused module, quoting both rates; chosen nodes go back to url.
func TestAnalysisHaltsAFailingRollout(t *testing.T) {
	f := newAnalysisFixture(t, judgedRollout(50), 50)
	f.interval(map[string]int{"b2": 50, "a1": 50}, map[string]int{"b2": 25, "a1": 1}, nil)
	rep := f.rollout(t)
	if rep.State != RolloutHalted || rep.Halted == nil || rep.Halted.Cause != HaltAnalysis {
		t.Fatalf("rollout = %+v (halt %+v), want halted by analysis", rep, rep.Halted)
	}
	for _, want := range []string{"50.0% (50 of 100 requests) on the 2 chosen nodes", "2.0% (2 of 100) on the 2 nodes running the main module",
		"above maxErrorRate 5.0%"} {
		if !strings.Contains(rep.Halted.Reason, want) {
			t.Errorf("halt reason %q lacks %q", rep.Halted.Reason, want)
		}
	}
	if !RolloutChosen(rep.Halted.Node, "auth", 50) || rep.Halted.SHA256 != "b2" {
		t.Errorf("halted by node %s, module %s: want a chosen node and b2", rep.Halted.Node, rep.Halted.SHA256)
	}
	if a := rep.Analysis; a == nil || a.Verdict != VerdictFailing || a.Judged != 1 || a.Rollout.ErrorRate != 0.5 {
		t.Errorf("halted rollout's analysis = %+v, want the first interval, failing at 50%%", a)
	}
	f.sink.until(t, "no rollout after the halt", noRollout)
}

// The same rate on every node is a general outage: the rollout is not
// blamed. Too few requests judge nothing.
func TestAnalysisSparesOutagesAndWaitsForRequests(t *testing.T) {
	f := newAnalysisFixture(t, judgedRollout(50), 50)
	f.interval(map[string]int{"b2": 50, "a1": 50}, map[string]int{"b2": 25, "a1": 25}, nil)
	rep := f.rollout(t)
	if rep.State != RolloutActive || rep.Analysis == nil || rep.Analysis.Verdict != VerdictHealthy {
		t.Fatalf("after an outage everywhere: %+v (analysis %+v), want active and healthy", rep, rep.Analysis)
	}
	f.interval(map[string]int{"b2": 9, "a1": 50}, map[string]int{"b2": 9}, nil)
	rep = f.rollout(t)
	if rep.State != RolloutActive || rep.Analysis.Verdict != VerdictInconclusive || rep.Analysis.Rollout.Requests != 18 {
		t.Fatalf("18 requests, every one failing: %+v (analysis %+v), want active and inconclusive", rep, rep.Analysis)
	}
}

// A VM reload on a chosen node halts, whatever the rates.
func TestAnalysisHaltsOnAVMReload(t *testing.T) {
	f := newAnalysisFixture(t, judgedRollout(50), 50)
	f.interval(map[string]int{"b2": 50, "a1": 50}, nil, map[string]int{"b2": 1})
	rep := f.rollout(t)
	if rep.State != RolloutHalted || !strings.Contains(rep.Halted.Reason, "VM was reloaded") {
		t.Fatalf("rollout = %+v, want halted for the VM reload", rep)
	}
}

// Steps advance one per healthy interval, and the rollout says when it is
// complete and how to promote it.
func TestAnalysisStepsReachCompletion(t *testing.T) {
	f := newAnalysisFixture(t, judgedRollout(10, 10, 50, 100), 10)
	healthy := func() { f.interval(map[string]int{"b2": 50, "a1": 50}, map[string]int{"a1": 1}, nil) }
	healthy()
	f.sink.until(t, "the rollout at 50%", withRollout("b2", 50))
	if rep := f.rollout(t); rep.Percent != 50 || rep.Complete {
		t.Fatalf("after one healthy interval: %+v, want 50%% and not complete", rep)
	}
	healthy()
	f.sink.until(t, "the rollout at 100%", withRollout("b2", 100))
	rep := f.rollout(t)
	if rep.Percent != 100 || !rep.Complete || !strings.Contains(rep.Promote, "set url to oci://r/auth:v2") {
		t.Fatalf("after two healthy intervals: %+v, want complete at 100%% with how to promote", rep)
	}
	healthy() // nothing further to reach
	if rep := f.rollout(t); rep.Percent != 100 || rep.State != RolloutActive {
		t.Errorf("after the last step: %+v", rep)
	}
}

// A restart resumes a stepped rollout from the step it reached, kept in the
// state file; an edit of its steps starts them again.
func TestRestartResumesTheStepReached(t *testing.T) {
	state := filepath.Join(t.TempDir(), "plugins.json")
	f := newAnalysisFixtureWith(t, judgedRollout(10, 10, 50, 100), 10,
		controllerOptions{Delivery: xds.DeliveryECDS, StateFile: state})
	f.interval(map[string]int{"b2": 50, "a1": 50}, map[string]int{"a1": 1}, nil)
	f.sink.until(t, "the rollout at 50%", withRollout("b2", 50))
	waitUntil(t, "the step recorded", func() bool {
		b, err := os.ReadFile(state)
		return err == nil && strings.Contains(string(b), "rolloutSteps")
	})

	mods := &fakeModules{sums: map[string]string{"oci://r/auth:v1": "a1", "oci://r/auth:v2": "b2"}}
	c2, sink2 := newTestController(t, mods, controllerOptions{Delivery: xds.DeliveryECDS, StateFile: state})
	c2.onChange(judgedRollout(10, 10, 50, 100))
	in := sink2.until(t, "the rollout after the restart", func(in xds.Input) bool { _, ok := in.Rollouts["auth"]; return ok })
	if !withRollout("b2", 50)(in) {
		t.Errorf("first rollout pushed after the restart: %+v, want b2 at 50%% (the step reached)", in.Rollouts["auth"])
	}
	if rep := c2.pluginReports()[0].Rollout; rep.Percent != 50 || rep.State != RolloutActive {
		t.Errorf("status after the restart: %+v, want active at 50%%", rep)
	}

	c3, sink3 := newTestController(t, mods, controllerOptions{Delivery: xds.DeliveryECDS, StateFile: state})
	c3.onChange(judgedRollout(10, 10, 60, 100))
	in = sink3.until(t, "the edited rollout after a restart", func(in xds.Input) bool { _, ok := in.Rollouts["auth"]; return ok })
	if !withRollout("b2", 10)(in) {
		t.Errorf("edited steps after a restart: %+v, want b2 at 10%% (the first step)", in.Rollouts["auth"])
	}
}
