package controlplane

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmxds/wasmxds/internal/catalog"
	"github.com/wasmxds/wasmxds/internal/xds"
)

// Rollout states in RolloutReport.State.
const (
	RolloutActive   = "active"   // chosen nodes are sent the rollout module
	RolloutPending  = "pending"  // its module is being resolved; nodes keep what they run
	RolloutFailed   = "failed"   // its module did not resolve; nobody is sent it
	RolloutHalted   = "halted"   // a chosen node refused it; chosen nodes went back to url
	RolloutPaused   = "paused"   // percent is 0
	RolloutPromoted = "promoted" // rollout.url is url: every node runs it
	// RolloutUnsupported: serve --filter-delivery lds. Envoy ACKs a
	// listener whose Wasm module then fails to start, so nothing could
	// halt the rollout; it is not applied.
	RolloutUnsupported = "unsupported"
)

// errRolloutNeedsECDS is why a rollout is not applied with LDS delivery.
const errRolloutNeedsECDS = "rollouts need ECDS delivery (serve --filter-delivery ecds, the default): with lds, " +
	"Envoy accepts a listener whose module then fails to start, so a failing rollout could not be halted"

// RolloutReport is a plugin's rollout in the status document.
type RolloutReport struct {
	URL     string `json:"url"`
	Percent int    `json:"percent"`
	// State is active, pending, failed, halted, paused or promoted.
	State  string `json:"state"`
	SHA256 string `json:"sha256,omitempty"` // the rollout module, once resolved
	Error  string `json:"error,omitempty"`  // why its resolution failed
	// Halted says why the rollout halted: which chosen node refused the
	// module, or what its analysis found.
	Halted *HaltReport `json:"halted,omitempty"`
	// Steps, Complete, Promote and Analysis: see RolloutProgress.
	RolloutProgress
}

// HaltReport is why a rollout halted.
type HaltReport struct {
	// Cause is HaltRefused (Node refused the module) or HaltAnalysis (the
	// rollout failed its analysis; Node is the chosen node with the most
	// 5xx, or whose VM reloaded, and Reason quotes the rates).
	Cause  string    `json:"cause"`
	Node   string    `json:"node"`
	SHA256 string    `json:"sha256"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	// Replica is the replica whose node refused the module: this one, or
	// the peer it learnt the halt from.
	Replica string `json:"replica,omitempty"`
}

// report describes p's rollout, nil when it has none; rm is its module's
// resolution now.
func (r *rollouts) report(p catalog.Plugin, rm rolloutModule) *RolloutReport {
	ro := p.Rollout
	if ro == nil {
		return nil
	}
	rep := &RolloutReport{URL: ro.URL, Percent: ro.Percent, Error: rm.err}
	if rm.module != nil {
		rep.SHA256 = rm.module.SHA256
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	h, halted := r.halted[p.Name]
	pushed, isPushed := r.pushed[p.Name]
	switch {
	case ro.URL == p.URL:
		rep.State = RolloutPromoted
	case ro.Percent == 0:
		rep.State = RolloutPaused
	case r.delivery == xds.DeliveryLDS:
		rep.State, rep.Error = RolloutUnsupported, errRolloutNeedsECDS
	case halted && h.Spec == rolloutSpec(ro):
		rep.State = RolloutHalted
		rep.Halted = &HaltReport{Cause: h.cause(), Node: h.Node, SHA256: h.SHA256, Reason: h.Reason, At: h.At,
			Replica: h.Replica}
		rep.Analysis = r.progressOfLocked(p).last
	case isPushed && pushed.spec == rolloutSpec(ro):
		rep.State = RolloutActive
		rep.SHA256 = pushed.sha
		r.progressLocked(p, rep)
	case rm.pending:
		rep.State = RolloutPending
	default:
		rep.State = RolloutFailed
		if rep.Error == "" {
			rep.Error = "pluginConfig secrets cannot be read (see the spec errors)"
		}
	}
	return rep
}

// haltCount is how many times p's rollout halted since start.
func (r *rollouts) haltCount(plugin string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.halts[plugin]
}

// rolloutCollector exports every rollout's state at scrape time, so that
// rollouts removed from the specs leave no series behind.
type rolloutCollector struct {
	c      *controller
	state  *prometheus.Desc
	halts  *prometheus.Desc
	states []string
}

func newRolloutCollector(c *controller) *rolloutCollector {
	return &rolloutCollector{c: c,
		state: prometheus.NewDesc("wasmxds_rollout_state",
			"1 for the state each plugin's rollout is in (active, pending, failed, halted, paused, promoted, unsupported).",
			[]string{"plugin", "state"}, nil),
		halts: prometheus.NewDesc("wasmxds_rollout_halts_total",
			"Rollouts halted because a chosen node refused the rollout module, per plugin since start.",
			[]string{"plugin"}, nil),
		states: []string{RolloutActive, RolloutPending, RolloutFailed, RolloutHalted, RolloutPaused, RolloutPromoted,
			RolloutUnsupported},
	}
}

func (rc *rolloutCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- rc.state
	ch <- rc.halts
}

func (rc *rolloutCollector) Collect(ch chan<- prometheus.Metric) {
	c := rc.c
	var out []prometheus.Metric
	c.mu.Lock()
	if c.state != nil {
		for _, p := range c.state.Plugins {
			rep := c.rolloutReportLocked(p)
			if rep == nil {
				continue
			}
			halts := c.rollouts.haltCount(p.Name)
			for _, s := range rc.states {
				v := 0.0
				if s == rep.State {
					v = 1
				}
				out = append(out, prometheus.MustNewConstMetric(rc.state, prometheus.GaugeValue, v, p.Name, s))
			}
			out = append(out, prometheus.MustNewConstMetric(rc.halts, prometheus.CounterValue, float64(halts), p.Name))
		}
	}
	c.mu.Unlock()
	for _, m := range out {
		ch <- m
	}
}
