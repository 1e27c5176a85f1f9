package xds

import (
	"crypto/sha256"
	"encoding/binary"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// rolloutBuckets is how finely a rollout's percent divides a fleet: every
// node falls in one bucket, and a rollout at p% reaches p buckets.
const rolloutBuckets = 100

// Rollout is a plugin's module sent to part of the nodes the plugin
// selects, those RolloutChosen picks; the others get the plugin's module.
type Rollout struct {
	Module  *Module
	Percent int // 0-100
}

// NodeBucket is the rollout bucket (0-99) of a node id: a hash of the id
// alone, so a node never changes bucket and every replica agrees on it.
func NodeBucket(nodeID string) int {
	return hashBucket(nodeID)
}

// RolloutChosen reports whether a rollout of plugin at percent sends its
// module to the node with id nodeID. The choice is a stable hash of node
// id and plugin name: the node's bucket shifted by the plugin's, so each
// plugin's rollout reaches its own part of the fleet, and raising percent
// only adds nodes.
func RolloutChosen(nodeID, plugin string, percent int) bool {
	return chosenIn(NodeBucket(nodeID), plugin, percent)
}

func chosenIn(bucket int, plugin string, percent int) bool {
	return (bucket+hashBucket(plugin))%rolloutBuckets < percent
}

func hashBucket(s string) int {
	sum := sha256.Sum256([]byte(s))
	return int(binary.BigEndian.Uint64(sum[:8]) % rolloutBuckets)
}

// nodeGroupKey is the snapshot key of a node: its label set's key and its
// rollout bucket. Nodes of one label set in different buckets share the
// translation (see forBucket) until a rollout tells them apart.
func nodeGroupKey(nodeID string, labels map[string]string) string {
	return GroupKey(labels) + "#" + strconv.Itoa(NodeBucket(nodeID))
}

// forBucket is in as the nodes of one bucket see it: each plugin whose
// rollout chooses the bucket, and that ran(plugin) allows, gets the
// rollout's module. variant names the plugins chosen ("" when none), so
// that groups of one label set that see the same Input share one
// translation.
func (in Input) forBucket(bucket int, ran func(plugin string) bool) (out Input, variant string) {
	var chosen []string
	for _, name := range slices.Sorted(maps.Keys(in.Rollouts)) {
		r := in.Rollouts[name]
		if r.Module != nil && chosenIn(bucket, name, r.Percent) && ran(name) {
			chosen = append(chosen, name)
		}
	}
	if len(chosen) == 0 {
		return in, ""
	}
	out = in
	out.Modules = maps.Clone(in.Modules)
	for _, name := range chosen {
		pm := out.Modules[name]
		pm.Module, pm.Err, pm.Pending = in.Rollouts[name].Module, "", false
		out.Modules[name] = pm
	}
	return out, strings.Join(chosen, ",")
}

// waitsForRollout reports whether plugin's rollout chooses the group but
// was held back because the group's nodes ran no module of it yet.
func (in Input) waitsForRollout(bucket int, plugin string) bool {
	r, ok := in.Rollouts[plugin]
	return ok && r.Module != nil && chosenIn(bucket, plugin, r.Percent)
}
