package controlplane

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wasmxds/wasmxds/catalog"
	"github.com/wasmxds/wasmxds/fetcher"
	"github.com/wasmxds/wasmxds/xds"
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

// rolloutKey is the controller's resolution key of a plugin's rollout
// module: '@' cannot appear in a plugin name.
func rolloutKey(plugin string) string { return plugin + "@rollout" }

// rolloutSpec identifies one arming of a rollout: an edit of its url,
// percent or steps re-arms a halted rollout.
func rolloutSpec(r *catalog.Rollout) string {
	return r.URL + " " + strconv.Itoa(r.Percent) + stepsSpec(r.Steps)
}

// rolloutPush is the rollout module last pushed for a plugin, and for
// which arming of its rollout.
type rolloutPush struct {
	spec, sha string
}

// Why a rollout halted, in HaltReport.Cause.
const (
	HaltRefused  = "refused"  // a chosen node refused the rollout module
	HaltAnalysis = "analysis" // the rollout failed its analysis
)

// halt is a rollout stopped because a chosen node refused its module, or
// because it failed its analysis (Node is then the chosen node named).
type halt struct {
	Spec   string    `json:"spec"` // rolloutSpec when it halted
	SHA256 string    `json:"sha256"`
	Node   string    `json:"node"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	// Replica is the replica whose node refused the module.
	Replica string `json:"replica,omitempty"`
	// Cause is HaltAnalysis for a halt by analysis, "" for a refusal (as
	// halts recorded before analyses existed have it).
	Cause string `json:"cause,omitempty"`
}

// cause is the halt's HaltReport.Cause.
func (h halt) cause() string {
	if h.Cause == HaltAnalysis {
		return HaltAnalysis
	}
	return HaltRefused
}

// rolloutJobLocked is the resolution a plugin's active rollout needs, if
// any, like jobsLocked's for the plugin's own module.
func (c *controller) rolloutJobLocked(p catalog.Plugin, resync bool, now time.Time) (pullJob, bool) {
	if !p.Rollout.Active(p.URL) || c.opts.Delivery == xds.DeliveryLDS {
		return pullJob{}, false
	}
	ro := p.Rollout
	always := p.PullPolicy == catalog.PullAlways || ro.Latest
	req := fetcher.Request{URL: ro.URL, Always: always, PullSecret: p.PullSecret, VerificationKey: p.VerificationKey}
	return c.dueLocked(rolloutKey(p.Name), req, resync, now)
}

// rolloutsLocked is the Input's rollouts: every armed rollout with a
// module for its url (kept while a re-resolution runs or failed, as the
// plugin's own module is). It also re-arms halted rollouts whose url or
// percent changed, or whose url now names another module (a moved tag),
// and forgets halts and pushes of rollouts that left the state.
func (c *controller) rolloutsLocked(in xds.Input, now time.Time) map[string]xds.Rollout {
	out := map[string]xds.Rollout{}
	live := map[string]bool{}
	pushed := map[string]rolloutPush{}
	for _, p := range c.state.Plugins {
		if !p.Rollout.Active(p.URL) || c.opts.Delivery == xds.DeliveryLDS {
			continue
		}
		live[p.Name] = true
		spec := rolloutSpec(p.Rollout)
		r := c.res[rolloutKey(p.Name)]
		usable := r != nil && r.module != nil && r.module.URL == p.Rollout.URL
		if h, ok := c.halted[p.Name]; ok {
			moved := usable && r.moduleKey == r.key && r.module.SHA256 != h.SHA256
			if h.Spec == spec && !moved {
				continue
			}
			delete(c.halted, p.Name)
			c.log.Info("rollout re-armed", "plugin", p.Name, "url", p.Rollout.URL, "percent", p.Rollout.Percent,
				"new_module", moved)
		}
		if !usable {
			continue // pending or failed: nodes keep what they run
		}
		if c.adoptPeerHaltLocked(p, spec, r.module.SHA256) {
			continue
		}
		if pm := in.Modules[p.Name]; len(p.SecretRefs) > 0 && pm.Config == "" {
			continue // the plugin cannot run as specified at all
		}
		out[p.Name] = xds.Rollout{Percent: c.percentLocked(p),
			Module: &xds.Module{SHA256: r.module.SHA256, URL: fetcher.ModuleURL(c.opts.Advertise, r.module.SHA256)}}
		pushed[p.Name] = rolloutPush{spec: spec, sha: r.module.SHA256}
		c.advertised[r.module.SHA256] = now
	}
	for name := range c.halted {
		if !live[name] {
			delete(c.halted, name)
		}
	}
	for name := range c.halts {
		if _, ok := in.Modules[name]; !ok { // every plugin of the state has an entry
			delete(c.halts, name)
		}
	}
	c.pushed = pushed
	return out
}

// pluginFailed hears of a node that refused a plugin's module. A refused
// rollout module halts the rollout: chosen nodes go back to the plugin's
// url at the next push. It runs on an ADS stream and does not block.
func (c *controller) pluginFailed(node, plugin, sha, reason string) {
	c.haltRollout(node, plugin, sha, reason, "")
}

// haltRollout halts plugin's rollout of module sha, refused by node (cause
// "") or failed by its analysis (HaltAnalysis, naming a chosen node), when
// that is the rollout as it is now.
func (c *controller) haltRollout(node, plugin, sha, reason, cause string) {
	c.mu.Lock()
	var p *catalog.Plugin
	if c.state != nil {
		for i := range c.state.Plugins {
			if c.state.Plugins[i].Name == plugin {
				p = &c.state.Plugins[i]
			}
		}
	}
	// Only the module pushed for the rollout as it is now counts, and only
	// from a node it chose: a late refusal of an earlier rollout module,
	// or of the plugin's own module elsewhere, halts nothing.
	if p == nil || !p.Rollout.Active(p.URL) || !xds.RolloutChosen(node, plugin, c.percentLocked(*p)) {
		c.mu.Unlock()
		return
	}
	spec := rolloutSpec(p.Rollout)
	if pushed := c.pushed[plugin]; pushed.spec != spec || pushed.sha != sha {
		c.mu.Unlock()
		return
	}
	if h, ok := c.halted[plugin]; ok && h.Spec == spec && h.SHA256 == sha {
		c.mu.Unlock()
		return
	}
	c.halted[plugin] = halt{Spec: spec, SHA256: sha, Node: node, Reason: reason, At: time.Now(), Replica: c.opts.ReplicaID,
		Cause: cause}
	c.halts[plugin]++
	url, pct := p.Rollout.URL, c.percentLocked(*p)
	c.mu.Unlock()
	msg := "rollout halted: a chosen node refused its module; chosen nodes go back to the plugin's url"
	if cause == HaltAnalysis {
		msg = "rollout halted by its analysis; chosen nodes go back to the plugin's url"
	}
	c.log.Warn(msg, "plugin", plugin, "url", url, "percent", pct, "sha256", sha, "node", node, "reason", reason)
	c.trigger()
}

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

// rolloutReportLocked describes p's rollout, nil when it has none.
func (c *controller) rolloutReportLocked(p catalog.Plugin) *RolloutReport {
	ro := p.Rollout
	if ro == nil {
		return nil
	}
	rep := &RolloutReport{URL: ro.URL, Percent: ro.Percent}
	r := c.res[rolloutKey(p.Name)]
	if r != nil && r.module != nil {
		rep.SHA256 = r.module.SHA256
	}
	if r != nil {
		rep.Error = r.err
	}
	h, halted := c.halted[p.Name]
	pushed, isPushed := c.pushed[p.Name]
	switch {
	case ro.URL == p.URL:
		rep.State = RolloutPromoted
	case ro.Percent == 0:
		rep.State = RolloutPaused
	case c.opts.Delivery == xds.DeliveryLDS:
		rep.State, rep.Error = RolloutUnsupported, errRolloutNeedsECDS
	case halted && h.Spec == rolloutSpec(ro):
		rep.State = RolloutHalted
		rep.Halted = &HaltReport{Cause: h.cause(), Node: h.Node, SHA256: h.SHA256, Reason: h.Reason, At: h.At,
			Replica: h.Replica}
		rep.Analysis = c.progressOfLocked(p).last
	case isPushed && pushed.spec == rolloutSpec(ro):
		rep.State = RolloutActive
		rep.SHA256 = pushed.sha
		c.progressLocked(p, rep)
	case r == nil || r.pending():
		rep.State = RolloutPending
	default:
		rep.State = RolloutFailed
		if rep.Error == "" {
			rep.Error = "pluginConfig secrets cannot be read (see the spec errors)"
		}
	}
	return rep
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
			for _, s := range rc.states {
				v := 0.0
				if s == rep.State {
					v = 1
				}
				out = append(out, prometheus.MustNewConstMetric(rc.state, prometheus.GaugeValue, v, p.Name, s))
			}
			out = append(out, prometheus.MustNewConstMetric(rc.halts, prometheus.CounterValue, float64(c.halts[p.Name]), p.Name))
		}
	}
	c.mu.Unlock()
	for _, m := range out {
		ch <- m
	}
}
