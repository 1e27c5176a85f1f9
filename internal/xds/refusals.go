package xds

import "maps"

// Module refusals: per label set, the modules a node of the set refused.
// Every group of the set is sent the plugin's last good config instead
// while the module is in the Input (see plan.go). Not to be confused with
// a node denied by NodeAccess (see binding.go).

// liftRefusalsLocked forgets refused modules that are no longer any
// plugin's module or rollout module in in: a module that comes back later
// is tried again.
func (s *Server) liftRefusalsLocked(in Input) {
	for labels, byPlugin := range s.refusals {
		for plugin, shas := range byPlugin {
			for sha := range shas {
				if !inputCarries(in, plugin, sha) {
					delete(shas, sha)
				}
			}
			if len(shas) == 0 {
				delete(byPlugin, plugin)
			}
		}
		if len(byPlugin) == 0 {
			delete(s.refusals, labels)
		}
	}
}

func inputCarries(in Input, plugin, sha string) bool {
	if m := in.Modules[plugin].Module; m != nil && m.SHA256 == sha {
		return true
	}
	r, ok := in.Rollouts[plugin]
	return ok && r.Module != nil && r.Module.SHA256 == sha
}

// refusedLocked reports whether a node of the label set refused plugin's
// module sha.
func (s *Server) refusedLocked(labelsKey, plugin, sha string) bool {
	return s.refusals[labelsKey][plugin][sha]
}

// refusalsOfLocked is a copy of the label set's refused modules.
func (s *Server) refusalsOfLocked(labelsKey string) map[string]map[string]bool {
	out := make(map[string]map[string]bool, len(s.refusals[labelsKey]))
	for plugin, shas := range s.refusals[labelsKey] {
		out[plugin] = maps.Clone(shas)
	}
	return out
}
