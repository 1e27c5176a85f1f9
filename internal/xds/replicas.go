package xds

import "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

// reportedVersion checks the version a node reports on the first request
// of a type on a new stream. Envoy reports what it runs; a version this
// server never built for the node's group means that the node comes from
// another replica that built something else — typically a module it
// resolved first after a tag moved — and this replica may be behind.
// OnUnknownVersion hears of it so that the replica can resync at once
// instead of at its next periodic resync. The node is answered as usual:
// holding the response would leave it without updates for as long as the
// replica takes to catch up.
func (s *Server) reportedVersion(nodeID, group, typeURL, version string) {
	if s.onUnknown == nil || version == "" {
		return
	}
	s.mu.Lock()
	g := s.groups[group]
	known := g == nil || g.versions == nil || g.versions[typeURL] == version
	if !known && typeURL == resource.ExtensionConfigType {
		_, known = g.ecds[version]
	}
	s.mu.Unlock()
	if !known {
		s.onUnknown(nodeID, typeURL, version)
	}
}
