package xds

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// DefaultMaxLabelSetsPerSource is the label sets one source address may
// bring into being without a client certificate (ServerOptions
// .MaxLabelSetsPerSource): far more than a fleet behind one address uses,
// far fewer than would exhaust memory.
const DefaultMaxLabelSetsPerSource = 256

// checkLabelSets refuses a node without a client certificate whose label
// set is new when its source address already made the most label sets
// allowed that are still kept. A label set that exists is always joined.
func (s *Server) checkLabelSets(source string, node *corev3.Node) error {
	if s.maxSets < 0 || source == "" {
		return nil
	}
	labels, _ := nodeLabels(node)
	key := GroupKey(labels)
	s.mu.Lock()
	defer s.mu.Unlock()
	made := map[string]bool{}
	for _, g := range s.groups {
		if g.labelsKey == key {
			return nil
		}
		if g.creator == source {
			made[g.labelsKey] = true
		}
	}
	if len(made) >= s.maxSets {
		return fmt.Errorf("source %s already brought %d label sets into being without a client certificate, the most allowed "+
			"(--max-label-sets-per-source); idle ones are forgotten after the group idle timeout", source, len(made))
	}
	return nil
}
