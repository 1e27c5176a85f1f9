package xds

import (
	"net"
)

// ModuleServed tells the server that the module server sent module sha256
// whole to remote (host:port): an Envoy that NACKed it as not cached now
// has it, so its re-push is brought forward, and an Envoy that ACKed it as
// a first module is sent its confirmation. A remote no node connects from
// is a proxy, and the download may be any node's.
func (s *Server) ModuleServed(sha256, remote string) {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	proxied := !s.deliveries.nodeAddr(host)
	s.downloads.record(sha256, host, s.clock.Now(), proxied)
	s.repush.served(sha256)
	if proxied {
		host = "" // any node's
	}
	s.confirmDownloaded(sha256, host)
}

// repushPlugin sends a plugin's config to a group again, marked with the
// attempt (see withAttempt) so that Envoy does not take it for the config
// it already has.
func (s *Server) repushPlugin(k repushKey) {
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	s.mu.Lock()
	g, in := s.groups[k.group], s.input
	if g == nil || in == nil {
		s.mu.Unlock()
		return
	}
	switch {
	case k.refresh:
	case k.confirm:
		if !startConfirmLocked(g, k.plugin) {
			s.mu.Unlock()
			return
		}
		g.retries[k.plugin]++
		g.repushed[k.plugin] = s.clock.Now()
		s.metrics.confirmations.Inc()
	case k.settle:
		g.retries[k.plugin] = 0
	default:
		g.retries[k.plugin]++
		g.repushed[k.plugin] = s.clock.Now()
		s.metrics.repushes.Inc()
	}
	s.mu.Unlock()
	s.rebuild(k.group, *in, s.shared)
}

// settleLater drops the attempt mark of plugins that every node of the
// group now runs: their config goes back to the plain one, a function of
// the specs and modules alone, so that versions are again the same in every
// replica and after restarts. Envoy takes the plain config as a config
// change: it finds the code cached and the VM running, and only
// reconfigures the plugin.
func (s *Server) settleLater(group string) {
	s.mu.Lock()
	g := s.groups[group]
	var marked []string
	if g != nil {
		for name, n := range g.retries {
			if refused := len(s.refusals[g.labelsKey][name]) > 0; n > 0 && !refused {
				marked = append(marked, name)
			}
		}
	}
	s.mu.Unlock()
	if len(marked) == 0 {
		return
	}
	members := s.tracker.members(group)
	for _, name := range marked {
		if s.deliveries.allRunning(members, name) {
			s.repush.schedule(repushKey{group: group, plugin: name, settle: true}, "", 0)
		}
	}
}
