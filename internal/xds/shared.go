package xds

import (
	"maps"
	"slices"
)

// LabelSetRefusals returns the modules a node refused, per label set key
// (GroupKey) and plugin, as sorted sha256 lists: what this server holds back
// from every node of those label sets while the modules are in the Input.
func (s *Server) LabelSetRefusals() map[string]map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]map[string][]string, len(s.refusals))
	for labels, byPlugin := range s.refusals {
		plugins := make(map[string][]string, len(byPlugin))
		for plugin, shas := range byPlugin {
			plugins[plugin] = slices.Sorted(maps.Keys(shas))
		}
		out[labels] = plugins
	}
	return out
}

// AddRefusals records modules refused by nodes this server does not serve
// (another replica's), as LabelSetRefusals returns them. A module is taken
// only while the Input carries it for the plugin, as a refusal seen here
// would be; the label set's groups are then rebuilt without it. It returns
// how many refusals were new.
func (s *Server) AddRefusals(refused map[string]map[string][]string) int {
	type added struct{ labels, plugin string }
	var fresh []added
	s.mu.Lock()
	for labels, byPlugin := range refused {
		for plugin, shas := range byPlugin {
			for _, sha := range shas {
				if s.input == nil || !inputCarries(*s.input, plugin, sha) || s.refusedLocked(labels, plugin, sha) {
					continue
				}
				if s.refusals[labels] == nil {
					s.refusals[labels] = map[string]map[string]bool{}
				}
				if s.refusals[labels][plugin] == nil {
					s.refusals[labels][plugin] = map[string]bool{}
				}
				s.refusals[labels][plugin][sha] = true
				fresh = append(fresh, added{labels, plugin})
			}
		}
	}
	var keys []repushKey
	for _, a := range fresh {
		for key, g := range s.groups {
			if g.labelsKey == a.labels {
				keys = append(keys, repushKey{group: key, plugin: a.plugin, refresh: true})
			}
		}
	}
	s.mu.Unlock()
	for _, k := range keys {
		s.repush.schedule(k, "", 0)
	}
	return len(fresh)
}
