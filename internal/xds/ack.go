package xds

// ACKs and responses of extension configs: what each node runs, and the
// configs its group keeps as good ones.

// ecdsAck records the plugins of an ACKed version as running and keeps
// their configs as the group's last good ones.
func (s *Server) ecdsAck(nodeID string, a *ack) {
	s.mu.Lock()
	g := s.groups[a.group]
	if g == nil {
		s.mu.Unlock()
		return
	}
	entries := g.ecds[a.version]
	refused := s.refusalsOfLocked(g.labelsKey)
	ip := s.deliveries.addr(nodeID)
	var ready []string // plugins whose rollout waited for the group's first module
	var first map[string]bool
	var confirm []string
	for name, e := range entries {
		if e.sha == "" || refused[name][e.sha] {
			continue
		}
		if e.nackOff && !confirmedLocked(g, name, e.sha) {
			// A first module: Envoy ACKs it before its VM exists when it
			// fetches the module as its listener warms (see confirm.go).
			if first == nil {
				first = map[string]bool{}
			}
			g.unconfirmed[name] = e.sha
			// A download through a proxy since the node was sent the
			// module may be this node's: a node confirmed while still
			// fetching NACKs the confirmation as a cache miss, and is not
			// refused for it (see deliveries.nacked).
			now := s.clock.Now()
			if dl := s.downloads.before(e.sha, ip, s.deliveries.sentAt(nodeID, name, e.sha), now); dl.byNode || dl.proxied {
				g.warmed[name] = e.sha
				first[name] = true
				confirm = append(confirm, name)
				continue // a good config once confirmed
			}
			first[name] = false
		} else if !e.nackOff && g.unconfirmed[name] == e.sha {
			delete(g.unconfirmed, name) // the VM runs: confirmed
			delete(g.confirming, name)
		}
		if len(g.lastGood[name]) == 0 && s.input != nil && s.input.waitsForRollout(g.bucket, name) {
			ready = append(ready, name)
		}
		g.lastGood[name] = g.lastGood[name].add(e)
		fam := s.familyGood[g.family]
		if fam == nil {
			fam = map[string]goodConfigs{}
			s.familyGood[g.family] = fam
		}
		fam[name] = fam[name].add(e)
	}
	s.mu.Unlock()
	s.deliveries.acked(nodeID, a.group, entries, refused, first)
	for _, name := range confirm {
		s.repush.schedule(repushKey{group: a.group, plugin: name, confirm: true}, entries[name].sha, downloadSettle)
	}
	for _, name := range ready {
		s.repush.schedule(repushKey{group: a.group, plugin: name, refresh: true}, "", 0)
	}
	s.settleLater(a.group)
}

// ecdsSent records the plugins of a version sent to a node as pending.
func (s *Server) ecdsSent(nodeID, group, version string) {
	s.mu.Lock()
	var entries map[string]ecdsEntry
	var refused map[string]map[string]bool
	if g := s.groups[group]; g != nil {
		entries, refused = g.ecds[version], s.refusalsOfLocked(g.labelsKey)
	}
	s.mu.Unlock()
	if entries != nil {
		s.deliveries.sent(nodeID, entries, refused, s.clock.Now())
	}
}
