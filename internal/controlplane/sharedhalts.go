package controlplane

import (
	"maps"
	"slices"

	"github.com/wasmxds/wasmxds/internal/catalog"
)

// Halts shared between replicas, part of rollouts. Halts are shared as
// unions: each replica publishes every halt it applies (its own and those
// it learnt), and applies a peer's halt through the same path as its own
// — at its next push, when the halt is for the rollout as this replica has
// it now: the same url and percent (Spec) and the same resolved module
// (SHA256). A halt for an earlier arming, or for a module that is no
// longer the rollout's, is ignored, so that an edit or a moved tag re-arms
// a rollout on every replica alike.

// setPeerHalts takes the halts the peers apply now and asks for a push
// when they changed.
func (r *rollouts) setPeerHalts(halts []sharedHalt) {
	next := map[string][]sharedHalt{}
	for _, h := range halts {
		if !slices.ContainsFunc(next[h.Plugin], func(o sharedHalt) bool { return o.SHA256 == h.SHA256 && o.Spec == h.Spec }) {
			next[h.Plugin] = append(next[h.Plugin], h)
		}
	}
	r.mu.Lock()
	changed := !maps.EqualFunc(next, r.peerHalts, func(a, b []sharedHalt) bool {
		return slices.EqualFunc(a, b, func(x, y sharedHalt) bool { return x.SHA256 == y.SHA256 && x.Spec == y.Spec })
	})
	r.peerHalts = next
	r.mu.Unlock()
	if changed {
		r.changed()
	}
}

// adoptPeerHaltLocked halts p's rollout, armed as spec with module sha,
// when a peer applies a halt for exactly that; it reports whether it did.
func (r *rollouts) adoptPeerHaltLocked(p catalog.Plugin, spec, sha string) bool {
	digest := specDigest(spec)
	i := slices.IndexFunc(r.peerHalts[p.Name], func(h sharedHalt) bool { return h.Spec == digest && h.SHA256 == sha })
	if i < 0 {
		return false
	}
	ph := r.peerHalts[p.Name][i]
	r.halted[p.Name] = halt{Spec: spec, SHA256: sha, Node: ph.Node, Reason: ph.Reason, At: ph.At, Replica: ph.Replica,
		Cause: ph.Cause}
	r.halts[p.Name]++
	r.log.Warn("rollout halted: a peer replica's chosen node refused its module; chosen nodes go back to the plugin's url",
		"plugin", p.Name, "percent", p.Rollout.Percent, "sha256", sha, "node", ph.Node, "replica", ph.Replica,
		"reason", ph.Reason)
	return true
}

// sharedHalts are the halts this replica applies, as peers read them.
func (r *rollouts) sharedHalts() []sharedHalt {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]sharedHalt, 0, len(r.halted))
	for _, name := range slices.Sorted(maps.Keys(r.halted)) {
		h := r.halted[name]
		replica := h.Replica
		if replica == "" { // halted before replicas shared halts
			replica = r.replica
		}
		out = append(out, sharedHalt{Plugin: name, SHA256: h.SHA256, Spec: specDigest(h.Spec), Node: h.Node,
			Reason: r.redact(h.Reason), At: h.At, Replica: replica, Cause: h.Cause})
	}
	return out
}
