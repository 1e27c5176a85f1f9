package controlplane

import (
	"strings"
	"testing"
	"time"

	"github.com/wasmxds/wasmxds/internal/xds"
)

// A plugin whose VM reloaded, or whose listeners answer many 5xx, stands
// out in the grid; a healthy one shows its counts plainly. An analysis and
// a complete rollout say so on the rollout's row.
func TestStatusPageShowsRuntimeHealth(t *testing.T) {
	now := time.Now()
	rep := statusFixture(now)
	web := &rep.Nodes[0]
	web.Plugins[0].Runtime = &xds.PluginRuntime{Requests: 120, Errors5xx: 1, LastReport: now}
	web.Plugins[1].Runtime = &xds.PluginRuntime{Requests: 100, Errors5xx: 40, VMReloads: 2, LastReport: now}
	ro := rep.Plugins[1].Rollout
	ro.State, ro.Halted, ro.Steps = RolloutActive, nil, []int{25, 100}
	ro.Analysis = &AnalysisReport{At: now, Verdict: VerdictHealthy, Reason: "5xx rate 0.0% (0 of 40 requests)"}
	ro.Complete, ro.Promote = true, "every node runs the rollout module: set url to oci://x to promote it"
	doc, body := renderFixture(t, rep, now)
	cells := all(all(byID(t, doc, "nodes"), "tr")[1], "td")[2:]
	if got := text(cells[0]); !strings.Contains(got, "120 req, 1 5xx (0.8%), 0 VM reloads") || strings.Contains(got, "⚠") {
		t.Errorf("healthy cell %q, want its counts and no warning", got)
	}
	if c := attr(cells[0], "class"); strings.Contains(c, "attention") {
		t.Errorf("healthy cell has class %q", c)
	}
	bad := text(cells[1])
	for _, want := range []string{"⚠ VM reloaded 2 times, 5xx rate 40.0%", "100 req, 40 5xx (40.0%)"} {
		if !strings.Contains(bad, want) {
			t.Errorf("unhealthy cell %q lacks %q", bad, want)
		}
	}
	if c := attr(cells[1], "class"); !strings.Contains(c, "attention") {
		t.Errorf("unhealthy cell has class %q, want attention (its colour)", c)
	}
	for _, want := range []string{"1 need attention at run time", "analysis healthy", "every node runs the rollout module: set url to oci://x to promote it",
		"steps 25 100"} {
		if !strings.Contains(strings.Join(strings.Fields(html2text(body)), " "), want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// html2text drops tags, enough to look for phrases across elements.
func html2text(s string) string {
	var b strings.Builder
	in := false
	for _, r := range s {
		switch {
		case r == '<':
			in = true
		case r == '>':
			in = false
			b.WriteRune(' ')
		case !in:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// A rollout halted by its analysis reads as such, with the rates it
// quotes, not as a module refused by the chosen node it names.
func TestStatusPageShowsAnalysisHalt(t *testing.T) {
	now := time.Now()
	rep := statusFixture(now)
	h := rep.Plugins[1].Rollout.Halted
	h.Cause, h.Reason = HaltAnalysis, "5xx rate 50.0% (50 of 100 requests) on the 2 chosen nodes running the rollout module"
	doc, _ := renderFixture(t, rep, now)
	got := strings.Join(strings.Fields(text(byID(t, doc, "plugins"))), " ")
	if want := "halted by analysis 2m0s ago: 5xx rate 50.0% (50 of 100 requests) on the 2 chosen nodes"; !strings.Contains(got, want) {
		t.Errorf("plugins do not show %q; they read:\n%s", want, got)
	}
	if strings.Contains(got, "refused by") {
		t.Errorf("an analysis halt reads as a refusal:\n%s", got)
	}
}
