package xds

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// Extension configs are interned: every build of an equal config (the same
// plugin, module and pluginConfig, whatever label set it was built for)
// yields one shared message. Groups keep the configs they sent and their
// nodes ACKed long after their snapshot is gone (see releaseIdleLocked), so
// without interning each label set that ever connected held its own copy of
// every plugin's config — pluginConfig bytes included — and memory grew
// with the label sets seen rather than with distinct content.

// internExts returns exts with each config replaced by the interned equal
// one, interning those not seen yet. The caller holds buildMu.
func (s *Server) internExts(exts []*corev3.TypedExtensionConfig) []*corev3.TypedExtensionConfig {
	for i, e := range exts {
		h := resourceHash(e)
		if h == "" {
			continue
		}
		if cur, ok := s.interned[h]; ok {
			exts[i] = cur
			continue
		}
		s.interned[h] = e
	}
	return exts
}

// pruneInternedLocked forgets interned configs no group, family or shared
// build refers to any more. The caller holds buildMu and mu.
func (s *Server) pruneInternedLocked() {
	used := map[*corev3.TypedExtensionConfig]bool{}
	mark := func(entries map[string]ecdsEntry) {
		for _, e := range entries {
			used[e.ext] = true
		}
	}
	markGood := func(good map[string]goodConfigs) {
		for _, l := range good {
			for _, e := range l {
				used[e.ext] = true
			}
		}
	}
	for _, g := range s.groups {
		for _, entries := range g.ecds {
			mark(entries)
		}
		mark(g.current)
		markGood(g.lastGood)
	}
	for _, fam := range s.familyGood {
		markGood(fam)
	}
	if s.shared != nil {
		for _, b := range s.shared.built {
			for _, e := range b.exts {
				used[e] = true
			}
		}
	}
	for h, e := range s.interned {
		if !used[e] {
			delete(s.interned, h)
		}
	}
}
