package controlplane

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/wasmxds/wasmxds/internal/catalog"
)

// Analysis verdicts, in AnalysisReport.Verdict.
const (
	VerdictHealthy      = "healthy"      // within maxErrorRate, or no worse than the main module's nodes
	VerdictFailing      = "failing"      // halted the rollout
	VerdictInconclusive = "inconclusive" // fewer than minRequests on the chosen nodes
)

// RolloutProgress is how far a rollout with analysis or steps has gone.
type RolloutProgress struct {
	// Steps are the spec's steps; Percent is then the step in force.
	Steps []int `json:"steps,omitempty"`
	// Complete: the rollout module reaches every node the plugin selects.
	// Promote says what to write in url to make it the plugin's module
	// (wasmxds never writes the spec files).
	Complete bool   `json:"complete,omitempty"`
	Promote  string `json:"promote,omitempty"`
	// Analysis is the last interval judged, when the rollout has one.
	Analysis *AnalysisReport `json:"analysis,omitempty"`
}

// AnalysisReport is one analysis interval: the 5xx rates of the chosen
// nodes (running the rollout module) and of the nodes running the main
// module, over the listeners that carry the plugin.
type AnalysisReport struct {
	At time.Time `json:"at"`
	// Judged counts the intervals judged since the rollout was armed (or
	// its module changed), this one included.
	Judged   int        `json:"judged"`
	Interval string     `json:"interval"`
	Verdict  string     `json:"verdict"`
	Reason   string     `json:"reason"`
	Rollout  RateReport `json:"rollout"`
	Main     RateReport `json:"main"`
}

// RateReport is what a set of nodes served over one analysis interval.
type RateReport struct {
	Nodes     int     `json:"nodes"`
	Requests  uint64  `json:"requests"`
	Errors5xx uint64  `json:"errors5xx"`
	ErrorRate float64 `json:"errorRate"`
	VMReloads uint64  `json:"vmReloads"`
}

// rolloutProgress is a rollout's analysis state in rollouts: the step in
// force and the last verdict, for one arming and module.
type rolloutProgress struct {
	key    string // progressKeyLocked
	step   int    // index into Rollout.Steps
	judged int    // intervals judged
	last   *AnalysisReport
}

// stepsSpec is the steps' part of rolloutSpec, "" without steps so that
// halts recorded before steps existed keep matching.
func stepsSpec(steps []int) string {
	if len(steps) == 0 {
		return ""
	}
	s := make([]string, len(steps))
	for i, v := range steps {
		s[i] = strconv.Itoa(v)
	}
	return " steps " + strings.Join(s, ",")
}

// progressKeyLocked is the arming and rollout module a progress is for: a
// new module (a moved tag) starts the steps again.
func (r *rollouts) progressKeyLocked(p catalog.Plugin) string {
	key := rolloutSpec(p.Rollout)
	if m := r.modules[p.Name].module; m != nil {
		key += " " + m.SHA256
	}
	return key
}

// progressOfLocked is p's progress for its current arming, zero when none.
func (r *rollouts) progressOfLocked(p catalog.Plugin) rolloutProgress {
	pr, ok := r.progress[p.Name]
	if !ok || pr.key != r.progressKeyLocked(p) {
		return rolloutProgress{key: r.progressKeyLocked(p)}
	}
	return pr
}

// savedStep is a stepped rollout's step as StateFile keeps it: a restart
// resumes from the step reached, for the same arming and module (Key).
type savedStep struct {
	Key  string `json:"key"`  // progressKeyLocked: rolloutSpec and the rollout module's sha256
	Step int    `json:"step"` // index into the spec's steps
}

// stepsNow is every rollout's step past its first, to record.
func (r *rollouts) stepsNow() map[string]savedStep {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]savedStep{}
	for name, pr := range r.progress {
		if pr.step > 0 {
			out[name] = savedStep{Key: pr.key, Step: pr.step}
		}
	}
	return out
}

// percentLocked is the share of p's nodes its rollout reaches now: the
// step in force with steps, else the spec's percent.
func (r *rollouts) percentLocked(p catalog.Plugin) int {
	ro := p.Rollout
	if ro == nil {
		return 0
	}
	if len(ro.Steps) == 0 {
		return ro.Percent
	}
	return ro.Steps[min(r.progressOfLocked(p).step, len(ro.Steps)-1)]
}

// progressLocked fills an active rollout's report: the percent in force,
// whether it is complete, and the last analysis.
func (r *rollouts) progressLocked(p catalog.Plugin, rep *RolloutReport) {
	pct := r.percentLocked(p)
	rep.Percent, rep.Steps = pct, p.Rollout.Steps
	if pct == 100 {
		rep.Complete = true
		rep.Promote = fmt.Sprintf("every node runs the rollout module: set url to %s to promote it", p.Rollout.URL)
	}
	rep.Analysis = r.progressOfLocked(p).last
}

// analysisTarget is an active rollout with an analysis, as the analyzer
// needs it.
type analysisTarget struct {
	plugin     string
	key        string // progressKeyLocked
	rolloutSHA string
	mainSHA    string
	analysis   catalog.Analysis
	state      *catalog.State
}

// analysisTargets lists the rollouts with an analysis that the last push
// handed to the engine, for the plugin's main module of that push.
func (r *rollouts) analysisTargets() []analysisTarget {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == nil {
		return nil
	}
	var out []analysisTarget
	for _, p := range r.state.Plugins {
		ro := p.Rollout
		pushed, ok := r.pushed[p.Name]
		if ro == nil || ro.Analysis == nil || !ok || pushed.spec != rolloutSpec(ro) || pushed.mainSHA == "" {
			continue
		}
		out = append(out, analysisTarget{plugin: p.Name, key: r.progressKeyLocked(p), rolloutSHA: pushed.sha,
			mainSHA: pushed.mainSHA, analysis: *ro.Analysis, state: r.state})
	}
	return out
}

// judged records an interval's verdict. A failing rollout halts through
// the same path as a module a chosen node refused (node is the chosen node
// named in the halt); a healthy one moves to its next step.
func (r *rollouts) judged(t analysisTarget, rep AnalysisReport, node string) {
	r.mu.Lock()
	p := r.pluginLocked(t.plugin)
	if p == nil || r.progressKeyLocked(*p) != t.key {
		r.mu.Unlock()
		return // edited meanwhile: the verdict is about an earlier arming
	}
	pr := r.progressOfLocked(*p)
	pr.judged++
	rep.Judged = pr.judged
	pr.last = &rep
	advanced := rep.Verdict == VerdictHealthy && pr.step+1 < len(p.Rollout.Steps)
	if advanced {
		pr.step++
	}
	r.progress[t.plugin] = pr
	pct := r.percentLocked(*p)
	r.mu.Unlock()
	switch {
	case rep.Verdict == VerdictFailing:
		r.log.Warn("rollout failed its analysis", "plugin", t.plugin, "sha256", t.rolloutSHA, "reason", rep.Reason)
		r.haltRollout(node, t.plugin, t.rolloutSHA, rep.Reason, HaltAnalysis)
	case advanced:
		r.log.Info("rollout healthy over its interval: next step", "plugin", t.plugin, "percent", pct,
			"reason", rep.Reason)
		r.changed()
	}
}
