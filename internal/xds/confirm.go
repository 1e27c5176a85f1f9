package xds

// First module confirmation.
//
// A plugin's first module in a group is sent without
// nack_on_code_cache_miss, so that Envoy fetches it the way a listener
// warms (see planRefusalsLocked). Envoy then ACKs the config as soon as it
// has started the download, before the VM exists, and a VM that fails to
// start later is never NACKed: Envoy serves the plugin as failed (503 for
// FAIL_CLOSE, no filter for FAIL_OPEN) while it reports the config
// accepted. When Envoy has the module cached, it creates the VM before it
// answers, and NACKs one that fails.
//
// So a node that downloaded a first module it ACKed is sent the module once
// more, marked with an attempt (see withAttempt) and with
// nack_on_code_cache_miss: Envoy finds the code in its cache, creates the
// plugin before it answers and NACKs a VM that fails. The node shows the
// plugin pending until it answers; its ACK makes the plugin running (and
// the config a good one), its NACKs fail it as they fail a module swap
// (see ecdsNack): the module is refused and the group falls back to the
// plugin's last good config or its failure policy's stand-in. Once every
// node runs it, the mark is dropped again (see settleLater).
//
// The confirmation waits for the node's download, seen by the module
// server: sent while Envoy is still fetching the module, it would be
// NACKed as not cached yet and start a second fetch, which delays the
// listener's warming. A download is the node's when it comes from the
// node's address, or from an address no node connects from: a proxy in
// front of the module server (an L7 load balancer, say), through which it
// may be any node's, so it counts for every node waiting for that module
// (see deliveries.nodeAddr). A node the module server never sees download
// the module had it cached: its ACK came after its VM was created, and the
// plugin runs.

// confirmedLocked reports whether nodes of g have confirmed that plugin's
// module sha runs: g holds it as a good config and has not a first module
// of it to confirm, or a node came to g running it.
func confirmedLocked(g *group, plugin, sha string) bool {
	if g.unconfirmed[plugin] == sha {
		return false
	}
	if g.held[plugin] == sha {
		return true
	}
	_, ok := g.lastGood[plugin].newest(func(s string) bool { return s == sha })
	return ok
}

// startConfirmLocked marks the confirmation of plugin's first module in g
// sent, and reports whether there is one to send: none when the module was
// confirmed, refused or replaced meanwhile, or is being confirmed already.
func startConfirmLocked(g *group, plugin string) bool {
	sha, ok := g.unconfirmed[plugin]
	if !ok || g.confirming[plugin] == sha {
		return false
	}
	g.confirming[plugin] = sha
	return true
}

// confirmDownloaded schedules the confirmation of first module sha for the
// groups of the nodes at ip that ACKed it before the module server saw
// their download finish.
func (s *Server) confirmDownloaded(sha, ip string) {
	for _, f := range s.deliveries.downloaded(sha, ip) {
		s.repush.schedule(repushKey{group: f.group, plugin: f.plugin, confirm: true}, sha, downloadSettle)
	}
}
