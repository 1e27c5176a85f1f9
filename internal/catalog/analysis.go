package catalog

import (
	"fmt"
	"math"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// Analysis judges a rollout on what the Envoys report: every Interval with
// at least MinRequests on the listeners of the chosen nodes that carry the
// plugin, their 5xx rate is compared with MaxErrorRate and with the rate of
// the nodes running the plugin's url over the same interval. A rollout
// above both, or whose VM was reloaded on a chosen node, halts.
type Analysis struct {
	Interval     time.Duration
	MinRequests  int
	MaxErrorRate float64
	Line         int // line of spec.rollout.analysis
}

// Analysis defaults, for fields left out.
const (
	DefaultAnalysisInterval     = 30 * time.Second
	DefaultAnalysisMinRequests  = 20
	DefaultAnalysisMaxErrorRate = 0.05
	// MinAnalysisInterval is the shortest interval: Envoys report every
	// stats flush (5 s by default), so a shorter one judges too little.
	MinAnalysisInterval = time.Second
	maxAnalysisInterval = time.Hour
)

// parseAnalysis reads spec.rollout.analysis: {interval, minRequests,
// maxErrorRate}, each optional with its default.
func parseAnalysis(rf *fields) *Analysis {
	v := rf.value("analysis")
	if v == nil {
		return nil
	}
	af := rf.p.mapping(v, "spec.rollout.analysis")
	defer af.finish()
	if !af.isMap() {
		return nil
	}
	a := &Analysis{Interval: DefaultAnalysisInterval, MinRequests: DefaultAnalysisMinRequests,
		MaxErrorRate: DefaultAnalysisMaxErrorRate, Line: rf.line("analysis").Line}
	if s, n := af.str("interval"); n != nil {
		d, err := time.ParseDuration(s)
		switch {
		case err != nil:
			af.p.add(n, "spec.rollout.analysis.interval: %q is not a duration (write e.g. 30s or 1m)", s)
		case d < MinAnalysisInterval || d > maxAnalysisInterval:
			af.p.add(n, "spec.rollout.analysis.interval: %s is out of range %s-%s", d, MinAnalysisInterval, maxAnalysisInterval)
		default:
			a.Interval = d
		}
	}
	if n, _, ok := af.integer("minRequests", 1, math.MaxInt32); ok {
		a.MinRequests = int(n)
	}
	if r, ok := af.rate("maxErrorRate"); ok {
		a.MaxErrorRate = r
	}
	return a
}

// rate reads a number between 0 and 1.
func (f *fields) rate(key string) (float64, bool) {
	v := f.value(key)
	if v == nil {
		return 0, false
	}
	r, err := strconv.ParseFloat(v.Value, 64)
	if v.Kind != yaml.ScalarNode || (v.Tag != "!!int" && v.Tag != "!!float") || err != nil || math.IsNaN(r) {
		f.p.add(v, "%s: must be a number between 0 and 1 (0.05 is 5%%)", f.sub(key))
		return 0, false
	}
	if r < 0 || r >= 1 {
		f.p.add(v, "%s: %s is out of range: want at least 0 and below 1 (0.05 is 5%%)", f.sub(key), v.Value)
		return 0, false
	}
	return r, true
}

// parseSteps reads spec.rollout.steps: percentages in increasing order,
// each 1-100. Steps advance on healthy analysis intervals, so they need an
// analysis.
func parseSteps(rf *fields, analysis bool) []int {
	items, sn := rf.seq("steps")
	if sn == nil {
		return nil
	}
	if len(items) == 0 {
		rf.p.add(sn, "spec.rollout.steps: empty (list the percentages to go through, e.g. [10, 50, 100])")
		return nil
	}
	var steps []int
	for i, it := range items {
		n, err := scalarInt(it)
		path := fmt.Sprintf("spec.rollout.steps[%d]", i)
		switch {
		case err != nil:
			rf.p.add(it, "%s: must be an integer", path)
			return nil
		case n < 1 || n > 100:
			rf.p.add(it, "%s: %d is out of range 1-100", path, n)
			return nil
		case len(steps) > 0 && int(n) <= steps[len(steps)-1]:
			rf.p.add(it, "%s: %d does not come after %d: steps must increase", path, n, steps[len(steps)-1])
			return nil
		}
		steps = append(steps, int(n))
	}
	if !analysis {
		rf.p.add(rf.line("steps"), "spec.rollout.steps: needs spec.rollout.analysis: a rollout moves to its next step "+
			"after each healthy analysis interval")
		return nil
	}
	return steps
}

func first(s []int) int {
	if len(s) == 0 {
		return 0
	}
	return s[0]
}
