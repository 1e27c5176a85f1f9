package controlplane

import (
	"time"

	"github.com/wasmxds/wasmxds/internal/catalog"
	"github.com/wasmxds/wasmxds/internal/fetcher"
	"github.com/wasmxds/wasmxds/internal/xds"
)

// A rollout's module is resolved by the controller like the plugin's own
// (same pull secret, verification key and pull policy), under its own
// resolution key; what the rollout does with it is decided by rollouts.

// rolloutKey is the controller's resolution key of a plugin's rollout
// module: '@' cannot appear in a plugin name.
func rolloutKey(plugin string) string { return plugin + "@rollout" }

// rolloutJobLocked is the resolution a plugin's rollout needs, if any,
// like jobsLocked's for the plugin's own module.
func (c *controller) rolloutJobLocked(p catalog.Plugin, resync bool, now time.Time) (pullJob, bool) {
	if !c.rollouts.wants(p) {
		return pullJob{}, false
	}
	ro := p.Rollout
	always := p.PullPolicy == catalog.PullAlways || ro.Latest
	req := fetcher.Request{URL: ro.URL, Always: always, PullSecret: p.PullSecret, VerificationKey: p.VerificationKey}
	return c.dueLocked(rolloutKey(p.Name), req, resync, now)
}

// rolloutModuleLocked is the resolution of plugin's rollout module, as
// rollouts takes it.
func (c *controller) rolloutModuleLocked(plugin string) rolloutModule {
	r := c.res[rolloutKey(plugin)]
	if r == nil {
		return rolloutModule{pending: true}
	}
	rm := rolloutModule{current: r.moduleKey == r.key, pending: r.pending(), err: r.err}
	if r.module != nil {
		rm.module = &xds.Module{SHA256: r.module.SHA256, URL: fetcher.ModuleURL(c.opts.Advertise, r.module.SHA256)}
		rm.url = r.module.URL
	}
	return rm
}

// rolloutModulesLocked is the resolution of every rollout module the
// current state wants.
func (c *controller) rolloutModulesLocked() map[string]rolloutModule {
	out := map[string]rolloutModule{}
	for _, p := range c.state.Plugins {
		if c.rollouts.wants(p) {
			out[p.Name] = c.rolloutModuleLocked(p.Name)
		}
	}
	return out
}

// rolloutReportLocked describes p's rollout, nil when it has none.
func (c *controller) rolloutReportLocked(p catalog.Plugin) *RolloutReport {
	return c.rollouts.report(p, c.rolloutModuleLocked(p.Name))
}
