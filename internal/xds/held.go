package xds

// Held modules: what a node already runs when it comes to this server (from
// another replica, or over a new stream), so that a different module is
// sent to it as a swap.

// heldUnknown is a held plugin whose module this server cannot tell.
const heldUnknown = "?"

// heldReport is what a node reports holding on its first request of
// extension configs on a stream: the state-of-the-world version and the
// names it subscribes to, or (delta) each resource's version.
type heldReport struct {
	version   string
	resources map[string]string
}

// noteHeld records the plugins a node already runs when it comes to this
// server, and with which module when the version it reports is one this
// server built: for plugins this server has not seen run in the group,
// a different module is then sent as a swap. The group is rebuilt at
// once, before the request's watch is answered.
func (s *Server) noteHeld(group string, h heldReport) {
	s.mu.Lock()
	g := s.groups[group]
	if g != nil && g.versions == nil {
		// Nothing built yet to read the report against: the first build
		// does (the server has no Input yet, say, just after a restart).
		if len(g.pendingHeld) < maxPendingHeld {
			g.pendingHeld = append(g.pendingHeld, h)
		}
		s.mu.Unlock()
		return
	}
	changed := false
	for name, rv := range h.resources {
		plugin, ok := EcdsPluginName(name)
		if g == nil || !ok || len(g.lastGood[plugin]) > 0 || !s.inputHasLocked(plugin) {
			continue
		}
		sha := heldUnknown
		if e, ok := g.ecds[h.version][plugin]; ok && h.version != "" {
			sha = e.sha
		} else if e, ok := g.current[plugin]; ok && rv != "" && resourceHash(e.ext) == rv {
			sha = e.sha
		}
		changed = setHeld(g, plugin, sha) || changed
	}
	s.mu.Unlock()
	if !changed {
		return
	}
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	s.mu.Lock()
	in := s.input
	s.mu.Unlock()
	if in != nil {
		s.rebuild(group, *in, s.shared)
	}
}

// maxPendingHeld bounds the reports a group keeps before its first build.
const maxPendingHeld = 64

// setHeld records that a node of g runs plugin's module sha; nodes that
// report different modules make it unknown. It reports a change.
func setHeld(g *group, plugin, sha string) bool {
	cur, known := g.held[plugin]
	switch {
	case !known:
		g.held[plugin] = sha
	case cur == sha || cur == heldUnknown:
		return false
	default:
		g.held[plugin] = heldUnknown
	}
	return true
}

// inputHasLocked reports whether plugin is in the current Input (any
// plugin while there is none yet).
func (s *Server) inputHasLocked(plugin string) bool {
	if s.input == nil {
		return true
	}
	_, ok := s.input.Modules[plugin]
	return ok
}

// pruneHeldLocked forgets held plugins that left in.
func (s *Server) pruneHeldLocked(in Input) {
	for _, g := range s.groups {
		for plugin := range g.held {
			if _, ok := in.Modules[plugin]; !ok {
				delete(g.held, plugin)
			}
		}
	}
}

// resolvePendingHeldLocked reads the reports of nodes that came before the
// group's first build against that build (its extension config version
// and configs): a node reporting what the build holds runs its modules; a
// node reporting anything else runs modules this server cannot tell, which
// makes every module sent to the group a swap. It returns whether that
// changes the build: a swap where the build sent a first module, or a
// rollout the group may now take.
func (s *Server) resolvePendingHeldLocked(g *group, in Input, version string, entries map[string]ecdsEntry) bool {
	if len(g.pendingHeld) == 0 {
		return false
	}
	redo := false
	for _, h := range g.pendingHeld {
		for name, rv := range h.resources {
			plugin, ok := EcdsPluginName(name)
			if _, inInput := in.Modules[plugin]; !ok || !inInput || len(g.lastGood[plugin]) > 0 {
				continue
			}
			e, built := entries[plugin]
			sha := heldUnknown
			if built && ((h.version != "" && h.version == version) || (rv != "" && resourceHash(e.ext) == rv)) {
				sha = e.sha
			}
			if setHeld(g, plugin, sha) {
				redo = redo || (built && e.sha != "" && g.held[plugin] != e.sha) || in.waitsForRollout(g.bucket, plugin)
			}
		}
	}
	g.pendingHeld = nil
	return redo
}
