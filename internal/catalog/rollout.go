package catalog

import (
	"gopkg.in/yaml.v3"

	"github.com/wasmxds/wasmxds/internal/modref"
)

// Rollout sends a plugin's new module to part of the fleet: the nodes a
// stable hash of node id and plugin name puts within Percent get URL, the
// rest keep the plugin's url. Promotion is an edit of url.
type Rollout struct {
	URL     string // canonical module reference, like Plugin.URL
	Percent int    // 0-100 of the nodes the plugin selects
	// Latest: URL names an OCI tag "latest" (or none), so it is pulled
	// Always, as the plugin's own url would be.
	Latest bool `json:",omitempty"`
	Line   int  // line of spec.rollout, for errors and status
	// Steps, when set, are the percentages the rollout goes through, one
	// step per healthy analysis interval; Percent is then Steps[0].
	Steps []int `json:",omitempty"`
	// Analysis, when set, judges the rollout module on what chosen nodes
	// report (see Analysis).
	Analysis *Analysis `json:",omitempty"`
}

// Active reports whether any node is to run the rollout's module: a
// rollout naming the plugin's own module (it was promoted) or reaching 0%
// of the nodes changes nothing.
func (r *Rollout) Active(pluginURL string) bool {
	return r != nil && r.Percent > 0 && r.URL != pluginURL
}

// parseRollout reads spec.rollout: {url, percent, steps, analysis}. The module is pulled
// like the plugin's own, with its pull secret and verification key.
func parseRollout(spec *fields, pl *Plugin, dir string) *Rollout {
	v := spec.value("rollout")
	if v == nil {
		return nil
	}
	rf := spec.p.mapping(v, "spec.rollout")
	defer rf.finish()
	if !rf.isMap() {
		return nil
	}
	r := &Rollout{Line: spec.line("rollout").Line}
	ok := true
	raw, n := rf.str("url")
	switch {
	case rf.missing("url") || (n != nil && raw == ""):
		spec.p.add(orNode(n, rf.line("url")), "spec.rollout.url: missing (the module to roll out: oci://, http(s):// or file://)")
		ok = false
	default:
		ref, err := modref.Parse(raw, dir)
		if err != nil {
			spec.p.add(n, "spec.rollout.url: %v", err)
			ok = false
		}
		r.URL, r.Latest = ref.String(), ref.Latest()
		if err == nil && !sameTrust(spec, pl, ref, n) {
			ok = false
		}
	}
	errs := len(spec.p.errs)
	r.Analysis = parseAnalysis(rf)
	r.Steps = parseSteps(rf, r.Analysis != nil)
	ok = ok && len(spec.p.errs) == errs
	ok = parsePercent(rf, r) && ok
	if !ok {
		return nil
	}
	return r
}

// parsePercent reads spec.rollout.percent into r, which may be left out
// with steps (it is then steps[0]).
func parsePercent(rf *fields, r *Rollout) bool {
	pct, pn, valid := rf.integer("percent", 0, 100)
	stepsSet := rf.has("steps")
	switch {
	case stepsSet && pn == nil:
		r.Percent = first(r.Steps)
		return true
	case stepsSet && valid && len(r.Steps) > 0 && pct != int64(r.Steps[0]):
		rf.p.add(pn, "spec.rollout.percent: %d is not the first step (%d): with steps the rollout starts at "+
			"steps[0]; leave percent out", pct, r.Steps[0])
		return false
	case pn == nil:
		rf.p.add(rf.line("percent"), "spec.rollout.percent: missing (0-100: the share of the plugin's nodes that run rollout.url)")
		return false
	}
	r.Percent = int(pct)
	return valid
}

// sameTrust holds a rollout's module to the plugin's own rules: a module
// the plugin's verificationKey must sign is an OCI one, and the plugin's
// registry credentials go to their own registry only.
func sameTrust(spec *fields, pl *Plugin, ref modref.Ref, n *yaml.Node) bool {
	if pl.VerificationKey != "" && ref.Kind != modref.KindOCI {
		spec.p.add(n, "spec.rollout.url: the plugin's verificationKey checks signatures on oci:// modules only, not on %s", ref)
		return false
	}
	secretHost, ok := modref.PullSecretRegistry(pl.PullSecret)
	if ok && ref.Kind != modref.KindOCI && ref.Kind != modref.KindFile {
		spec.p.add(n, "spec.rollout.url: imagePullSecret %q holds registry credentials; they are only sent to OCI "+
			"registries, not to %s", pl.PullSecret, ref)
		return false
	}
	if ok && ref.Kind == modref.KindOCI && !modref.SameRegistry(secretHost, ref.Registry) {
		spec.p.add(n, "spec.rollout.url: imagePullSecret %q holds credentials for registry %s, not for %s",
			pl.PullSecret, secretHost, ref.Registry)
		return false
	}
	return true
}
