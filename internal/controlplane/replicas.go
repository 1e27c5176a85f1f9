package controlplane

import "time"

// Replicas behind one address must agree on each plugin's module, and an
// Envoy told about a module by one replica may download it from another.
// Three things keep them together:
//
//   - periodic resyncs fall on wall-clock multiples of the resync period
//     (see nextResync), so replicas re-resolve Always tags at the same
//     moment and a moved tag reaches them all within one resync;
//   - a replica asked for a digest it does not serve (unknownModule), or
//     told by a node about a version it never built (unknownVersion),
//     resyncs at once, at most once per earlyResyncGap;
//   - a replica is not ready until each plugin's first resolution finished
//     (warm), so a load balancer sends it no Envoy that it would hand a
//     configuration without its plugins.
const (
	// earlyResyncGap bounds early resyncs: any client can ask for any
	// digest, and each resync asks the registries about every Always tag.
	earlyResyncGap = 5 * time.Second
	// warmUpLimit caps how long readiness waits for first resolutions: a
	// registry that hangs must not keep a replica out forever.
	warmUpLimit = 10 * time.Second
)

// nextResync is the time from now to the next wall-clock multiple of every
// (counted from the Unix epoch, like every clock of the fleet).
func nextResync(now time.Time, every time.Duration) time.Duration {
	return now.Truncate(every).Add(every).Sub(now)
}

// resyncSoon asks the loop for a resync now, unless one ran (or was asked
// for) within earlyResyncGap; why is logged. It never blocks.
func (c *controller) resyncSoon(why string, attrs ...any) {
	now := time.Now()
	c.mu.Lock()
	if !c.lastResync.IsZero() && now.Sub(c.lastResync) < earlyResyncGap {
		c.mu.Unlock()
		return
	}
	c.lastResync = now
	c.mu.Unlock()
	c.log.Info("resyncing early: "+why, attrs...)
	select {
	case c.early <- struct{}{}:
	default: // one is already queued
	}
}

// resynced notes that a resync ran, for resyncSoon's rate limit.
func (c *controller) resynced() {
	c.mu.Lock()
	c.lastResync = time.Now()
	c.mu.Unlock()
}

// unknownModule is the module server's hook for a digest it does not
// serve: another replica may have resolved a moved tag first. Until the
// first resolutions finished, they are the resync.
func (c *controller) unknownModule(sha256Hex string) {
	if !c.warm() {
		return
	}
	c.resyncSoon("a client asked for a module this replica does not serve", "sha256", sha256Hex)
}

// unknownVersion is the xDS server's hook for a node that moved here
// running configuration this replica never built: the replica it came
// from may have resolved a moved tag first.
func (c *controller) unknownVersion(node, typeURL string) {
	if !c.warm() {
		return
	}
	c.resyncSoon("a node reports configuration this replica did not build", "node", node, "type", typeURL)
}

// warm reports whether every plugin's first resolution has finished, or
// warmUpLimit has passed since the first desired state arrived. A module
// restored from the state file does not count when the spec now names
// another: a restarted replica that missed an edit would hand Envoys
// moving to it the module they just left.
func (c *controller) warm() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == nil {
		return false
	}
	if time.Since(c.firstState) > warmUpLimit {
		return true
	}
	resolved := func(name string) bool {
		r := c.res[name]
		return r != nil && (r.done || (r.module != nil && r.moduleKey == r.key))
	}
	for _, p := range c.state.Plugins {
		if p.HasModule() && !resolved(p.Name) || (c.rollouts.wants(p) && !resolved(rolloutKey(p.Name))) {
			return false
		}
	}
	return true
}
