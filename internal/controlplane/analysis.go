package controlplane

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/utils/clock"

	"github.com/wasmxds/wasmxds/internal/telemetry"
	"github.com/wasmxds/wasmxds/internal/xds"
)

// analysisTick is how often the analyzer looks for intervals that ended.
const analysisTick = time.Second

// analyzer judges rollouts with an analysis on what their nodes report.
// Each rollout's interval starts when the analyzer first sees it active;
// at its end the counts of every node that ran the same module throughout
// are compared with the counts at its start.
type analyzer struct {
	r        *rollouts
	store    *telemetry.Store
	nodes    func() []xds.NodeStatus
	carriers *carriers
	clock    clock.WithTicker
	log      *slog.Logger
	runs     map[string]*analysisRun // by plugin; touched by tick only
}

// analysisRun is one rollout's interval under way.
type analysisRun struct {
	key   string // analysisTarget.key
	start time.Time
	base  map[string]nodeSample
}

// nodeSample is a node's counts for a plugin at one moment.
type nodeSample struct {
	rollout bool // runs the rollout module, else the main module
	totals  telemetry.Totals
}

func newAnalyzer(r *rollouts, store *telemetry.Store, nodes func() []xds.NodeStatus, cr *carriers,
	clk clock.WithTicker, log *slog.Logger) *analyzer {
	return &analyzer{r: r, store: store, nodes: nodes, carriers: cr, clock: clk,
		log: log.With("component", "analysis"), runs: map[string]*analysisRun{}}
}

// run ticks until ctx ends.
func (a *analyzer) run(ctx context.Context) {
	t := a.clock.NewTicker(analysisTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			a.tick()
		}
	}
}

// tick starts the interval of rollouts newly under analysis and judges
// those whose interval ended.
func (a *analyzer) tick() {
	now := a.clock.Now()
	targets := a.r.analysisTargets()
	live := make(map[string]bool, len(targets))
	var nodes []xds.NodeStatus
	for _, t := range targets {
		live[t.plugin] = true
		run := a.runs[t.plugin]
		if run != nil && run.key == t.key && now.Sub(run.start) < t.analysis.Interval {
			continue
		}
		if nodes == nil {
			nodes = a.nodes()
		}
		cur := a.sample(t, nodes)
		switch {
		case run != nil && run.key == t.key:
			rep, node := judge(t, run.base, cur, now.Sub(run.start))
			rep.At = now
			a.r.judged(t, rep, node)
		case !anyRollout(cur):
			delete(a.runs, t.plugin)
			continue // the first interval starts once a chosen node runs the module
		}
		a.runs[t.plugin] = &analysisRun{key: t.key, start: now, base: cur}
	}
	for name := range a.runs {
		if !live[name] {
			delete(a.runs, name)
		}
	}
}

func anyRollout(samples map[string]nodeSample) bool {
	for _, s := range samples {
		if s.rollout {
			return true
		}
	}
	return false
}

// sample takes the counts of every node running the plugin's rollout or
// main module, over the node's listeners that carry the plugin.
func (a *analyzer) sample(t analysisTarget, nodes []xds.NodeStatus) map[string]nodeSample {
	out := map[string]nodeSample{}
	for _, n := range nodes {
		for _, ps := range n.Plugins {
			if ps.Name != t.plugin || ps.State != xds.PluginRunning || (ps.SHA256 != t.rolloutSHA && ps.SHA256 != t.mainSHA) {
				continue
			}
			listeners := a.carriers.of(t.state, n.Labels)[t.plugin]
			if tot, ok := a.store.Totals(n.ID, t.plugin, listeners); ok {
				out[n.ID] = nodeSample{rollout: ps.SHA256 == t.rolloutSHA, totals: tot}
			}
		}
	}
	return out
}

// tally is what one set of nodes served over an interval.
type tally struct {
	RateReport
	worst     string // the node with the most 5xx (or VM reloads)
	worstBad  uint64
	reloaded  string // a node whose VM reloaded
	reloadsOn uint64
}

func (t *tally) add(id string, d telemetry.Totals) {
	t.Nodes++
	t.Requests += d.Requests
	t.Errors5xx += d.Errors5xx
	t.VMReloads += d.VMReloads
	if d.Errors5xx > t.worstBad || t.worst == "" {
		t.worst, t.worstBad = id, d.Errors5xx
	}
	if d.VMReloads > t.reloadsOn {
		t.reloaded, t.reloadsOn = id, d.VMReloads
	}
	if t.Requests > 0 {
		t.ErrorRate = float64(t.Errors5xx) / float64(t.Requests)
	}
}

// judge compares the chosen nodes' interval with the main module's nodes'
// and returns the verdict and, for a failing one, the chosen node to name.
// Nodes that changed module, or whose counts went back (forgotten and
// heard from again), during the interval count for neither.
func judge(t analysisTarget, base, cur map[string]nodeSample, over time.Duration) (AnalysisReport, string) {
	var ro, mn tally
	for id, c := range cur {
		b, ok := base[id]
		if !ok || b.rollout != c.rollout || c.totals.Requests < b.totals.Requests ||
			c.totals.Errors5xx < b.totals.Errors5xx || c.totals.VMReloads < b.totals.VMReloads {
			continue
		}
		d := telemetry.Totals{Requests: c.totals.Requests - b.totals.Requests,
			Errors5xx: c.totals.Errors5xx - b.totals.Errors5xx, VMReloads: c.totals.VMReloads - b.totals.VMReloads}
		if c.rollout {
			ro.add(id, d)
		} else {
			mn.add(id, d)
		}
	}
	a := t.analysis
	rep := AnalysisReport{Interval: over.Round(time.Second).String(), Rollout: ro.RateReport, Main: mn.RateReport}
	rates := fmt.Sprintf("5xx rate %s (%d of %d requests) on the %d chosen nodes running the rollout module, "+
		"%s (%d of %d) on the %d nodes running the main module, over %s", pct(ro.ErrorRate), ro.Errors5xx, ro.Requests,
		ro.Nodes, pct(mn.ErrorRate), mn.Errors5xx, mn.Requests, mn.Nodes, rep.Interval)
	switch {
	case ro.reloaded != "":
		rep.Verdict = VerdictFailing
		rep.Reason = fmt.Sprintf("the rollout module's VM was reloaded %d times on chosen node %s; %s",
			ro.reloadsOn, ro.reloaded, rates)
		return rep, ro.reloaded
	case ro.Requests < uint64(a.MinRequests):
		rep.Verdict = VerdictInconclusive
		rep.Reason = fmt.Sprintf("%d requests on the chosen nodes, fewer than minRequests %d; %s",
			ro.Requests, a.MinRequests, rates)
	case ro.ErrorRate > a.MaxErrorRate && ro.ErrorRate > mn.ErrorRate:
		rep.Verdict = VerdictFailing
		rep.Reason = fmt.Sprintf("%s: above maxErrorRate %s and above the main module's", rates, pct(a.MaxErrorRate))
		return rep, ro.worst
	default:
		rep.Verdict = VerdictHealthy
		rep.Reason = fmt.Sprintf("%s: within maxErrorRate %s or no worse than the main module's",
			rates, pct(a.MaxErrorRate))
	}
	return rep, ""
}

// pct writes a rate as a percentage with one decimal.
func pct(r float64) string { return fmt.Sprintf("%.1f%%", 100*r) }
