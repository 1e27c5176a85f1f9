package xds

import (
	"regexp"
	"time"
)

// Where a NACK becomes a module refusal: Envoy's NACK of an extension config
// is put down to a plugin's module (see deliveries.nacked for the verdict),
// and a module refused by a node is recorded for the node's label set.

// ecdsNack handles a node's NACK of extension configs. It returns true when
// the NACK was expected (the node is fetching a module it had not cached)
// and is therefore not an error; the plugin is re-pushed later.
func (s *Server) ecdsNack(nodeID, group string, nack *Nack) bool {
	m := createFailure.FindStringSubmatch(nack.Error)
	if m == nil {
		s.ecdsRejected(nodeID, group, nack)
		return false
	}
	plugin := m[1]
	s.mu.Lock()
	g := s.groups[group]
	var e ecdsEntry
	var found, confirm bool
	var repushed time.Time
	if g != nil {
		e, found = g.ecds[nack.Version][plugin]
		repushed = g.repushed[plugin]
		confirm = found && !e.nackOff && e.sha != "" && g.confirming[plugin] == e.sha
	}
	s.mu.Unlock()
	if !found || e.sha == "" {
		return false
	}
	// Only a download from the node's own address makes its NACKs a
	// refusal: one through a proxy may be another node's, and this one may
	// still be fetching the module.
	dl := s.downloads.before(e.sha, s.deliveries.addr(nodeID), repushed, repushed)
	v := s.deliveries.nacked(nodeID, plugin, e.sha, nack.Error, dl.byNode && !repushed.IsZero(), dl.anyone, confirm, s.clock.Now())
	k := repushKey{group: group, plugin: plugin}
	if v.expected {
		s.metrics.cacheMisses.Inc()
		s.log.Info("envoy is fetching a module it had not cached; re-push scheduled", "node", nodeID,
			"plugin", plugin, "sha256", e.sha, "attempt", v.misses)
		s.repush.schedule(k, e.sha, repushDelay(v.misses))
		return true
	}
	s.log.Warn("envoy refused a module; its last good config keeps serving", "node", nodeID,
		"plugin", plugin, "sha256", e.sha, "reason", v.reason)
	var siblings []string
	s.mu.Lock()
	// A refusal that arrives after the module left the Input (a rollout
	// halted meanwhile) needs no recording: nobody is sent it any more.
	if g != nil && s.input != nil && inputCarries(*s.input, plugin, e.sha) {
		byPlugin := s.refusals[g.labelsKey]
		if byPlugin == nil {
			byPlugin = map[string]map[string]bool{}
			s.refusals[g.labelsKey] = byPlugin
		}
		if byPlugin[plugin] == nil {
			byPlugin[plugin] = map[string]bool{}
		}
		byPlugin[plugin][e.sha] = true
		for key, o := range s.groups {
			if o != g && o.labelsKey == g.labelsKey {
				siblings = append(siblings, key)
			}
		}
	}
	s.mu.Unlock()
	s.repush.schedule(k, "", 0)
	// The label set's other groups stop sending the module too.
	for _, key := range siblings {
		s.repush.schedule(repushKey{group: key, plugin: plugin, refresh: true}, "", 0)
	}
	if s.onRefused != nil {
		s.onRefused(nodeID, plugin, e.sha, v.reason)
	}
	return false
}

// ecdsRejected reports, for a NACK of extension configs that is not about
// creating a plugin (Envoy refused the config itself), each plugin the
// error names whose config in the rejected version carries a module: the
// node did not take that module.
func (s *Server) ecdsRejected(nodeID, group string, nack *Nack) {
	if s.onRefused == nil {
		return
	}
	s.mu.Lock()
	var entries map[string]ecdsEntry
	if g := s.groups[group]; g != nil {
		entries = g.ecds[nack.Version]
	}
	s.mu.Unlock()
	seen := map[string]bool{}
	for _, m := range namedPlugin.FindAllStringSubmatch(nack.Error, -1) {
		name := m[1]
		if e, ok := entries[name]; ok && e.sha != "" && !seen[name] {
			seen[name] = true
			s.onRefused(nodeID, name, e.sha, "Envoy rejected the extension config: "+nack.Error)
		}
	}
}

// namedPlugin finds extension config names (wasmxds.<plugin>) in Envoy's
// error messages; plugin names are DNS-1123 names.
var namedPlugin = regexp.MustCompile(`wasmxds\.([a-z0-9](?:[-a-z0-9.]*[a-z0-9])?)`)
