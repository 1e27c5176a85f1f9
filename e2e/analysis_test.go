package e2e

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// analysisStatus is a plugin's rollout with its analysis in /debug/status.
type analysisStatus struct {
	Name    string `json:"name"`
	Rollout *struct {
		State    string `json:"state"`
		Percent  int    `json:"percent"`
		Complete bool   `json:"complete"`
		Promote  string `json:"promote"`
		Halted   *struct {
			Cause  string `json:"cause"`
			Node   string `json:"node"`
			Reason string `json:"reason"`
		} `json:"halted"`
		Analysis *struct {
			Verdict string `json:"verdict"`
			Judged  int    `json:"judged"`
			Reason  string `json:"reason"`
		} `json:"analysis"`
	} `json:"rollout"`
	Modules []moduleCount `json:"modules"`
}

func pluginAnalysis(s *server, name string) (analysisStatus, error) {
	var st struct {
		Plugins []analysisStatus `json:"plugins"`
	}
	if err := s.get("/debug/status", &st); err != nil {
		return analysisStatus{}, err
	}
	for _, p := range st.Plugins {
		if p.Name == name {
			return p, nil
		}
	}
	return analysisStatus{}, fmt.Errorf("plugin %s not in /debug/status", name)
}

// judgedFleet is four Envoys reporting their stats every second, each with
// a listener of its own under steady traffic, and one plugin selecting all
// of them whose url is add-header (x-wasm: main).
type judgedFleet struct {
	srv   *server
	ids   []string
	ports map[string]int
	p     plugin
}

func startJudgedFleet(t *testing.T, name string) *judgedFleet {
	t.Helper()
	ids, _ := rolloutNodes(name, 4)
	f := &judgedFleet{ids: ids, ports: map[string]int{},
		p: plugin{name: name, url: "file://" + filterPath("add-header"),
			config: map[string]any{"header": "x-wasm", "value": "main", "status500Every": 2}}}
	up := startUpstream(t)
	f.srv = startServerWith(t, serverOptions{}, func(s *server) {
		var base []string
		for _, id := range ids {
			f.ports[id] = freePort(t)
			base = append(base, listenerSpec(id, id, f.ports[id], "fleet-upstream"))
		}
		s.writeSpec(baseSpecFile, docs(append(base, clusterSpec("fleet-upstream", up))...))
		s.writeSpec(pluginFile, f.p.spec())
	})
	for _, id := range ids {
		e := newEnvoy(t, f.srv, id, map[string]string{"app": id}, statsEvery(time.Second))
		e.start()
	}
	f.expectAll(t, func(string) string { return "main" })
	for _, id := range ids {
		l := startLoad(t, f.ports[id])
		t.Cleanup(l.stop)
	}
	return f
}

func (f *judgedFleet) expectAll(t *testing.T, want func(id string) string) {
	t.Helper()
	for _, id := range f.ids {
		eventually(t, applyTimeout, steady(steadyReplies, expectHeader(f.ports[id], "x-wasm", want(id))))
	}
}

// bothRates is how a halt by analysis quotes the chosen nodes' 5xx rate
// and the main module's nodes' rate.
var bothRates = regexp.MustCompile(`5xx rate (\d+\.\d)% \(\d+ of \d+ requests\) on the \d+ chosen nodes running the rollout module, ` +
	`(\d+\.\d)% \(\d+ of \d+\) on the \d+ nodes running the main module`)

// A rollout module that loads and runs but answers 500 to every other
// request (fail-on-header with status500Every: 2; add-header, the main
// module, ignores the switch) is halted by its analysis within two
// intervals under steady traffic; its nodes go back to the main module and
// status quotes both error rates.
func TestRolloutHaltedByAnalysis(t *testing.T) {
	requireFull(t)
	f := startJudgedFleet(t, "judged")
	f.p.rollout = map[string]any{"url": "file://" + filterPath("fail-on-header"), "percent": 50,
		"analysis": map[string]any{"interval": "5s", "minRequests": 20, "maxErrorRate": 0.05}}
	f.srv.writeSpec(pluginFile, f.p.spec())
	var st analysisStatus
	eventually(t, applyTimeout, func() error {
		var err error
		if st, err = pluginAnalysis(f.srv, "judged"); err != nil {
			return err
		}
		if st.Rollout == nil || st.Rollout.State != "halted" || st.Rollout.Halted == nil {
			return fmt.Errorf("rollout %+v, want halted", st.Rollout)
		}
		return nil
	})
	ro := st.Rollout
	t.Logf("halted by %s (%s): %s", ro.Halted.Node, ro.Halted.Cause, ro.Halted.Reason)
	if ro.Halted.Cause != "analysis" {
		t.Errorf("halt cause %q, want analysis", ro.Halted.Cause)
	}
	m := bothRates.FindStringSubmatch(ro.Halted.Reason)
	if m == nil {
		t.Fatalf("halt reason %q does not quote both rates", ro.Halted.Reason)
	}
	// Half the rollout module's answers are 500 once a node runs it; an
	// interval may also count a chosen node's requests from just before its
	// swap, so the rollout's rate is between the two.
	if rollout, _ := strconv.ParseFloat(m[1], 64); rollout < 20 || rollout > 60 || m[2] != "0.0" {
		t.Errorf("rates %s%% (rollout) and %s%% (main), want 20-60%% (about half) and 0%%", m[1], m[2])
	}
	if ro.Analysis == nil || ro.Analysis.Verdict != "failing" || ro.Analysis.Judged > 2 {
		t.Errorf("analysis %+v, want failing within two intervals", ro.Analysis)
	}
	f.expectAll(t, func(string) string { return "main" })
}

// A healthy rollout with steps goes through them, one per interval, and
// says when it is complete and what to write in url to promote it.
func TestRolloutStepsReachCompletion(t *testing.T) {
	requireFull(t)
	f := startJudgedFleet(t, "stepped")
	f.p.config = map[string]any{"header": "x-wasm", "value": "main"} // fail-on-header answers no 500
	f.p.rollout = map[string]any{"url": "file://" + filterPath("fail-on-header"), "steps": []any{50, 75, 100},
		"analysis": map[string]any{"interval": "3s", "minRequests": 20, "maxErrorRate": 0.05}}
	f.srv.writeSpec(pluginFile, f.p.spec())
	eventually(t, 2*applyTimeout, func() error {
		st, err := pluginAnalysis(f.srv, "stepped")
		if err != nil {
			return err
		}
		ro := st.Rollout
		if ro == nil || ro.State != "active" || !ro.Complete || ro.Percent != 100 {
			return fmt.Errorf("rollout %+v, want active, complete at 100%%", ro)
		}
		want := "set url to file://" + filterPath("fail-on-header")
		if !regexp.MustCompile(regexp.QuoteMeta(want)).MatchString(ro.Promote) {
			return fmt.Errorf("promote %q, want it to say %q", ro.Promote, want)
		}
		return nil
	})
	// Every node runs the rollout module: fail-on-header adds no x-wasm.
	f.expectAll(t, func(string) string { return "" })
}
