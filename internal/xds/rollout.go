package xds

import (
	"crypto/sha256"
	"encoding/binary"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Rollouts as the engine applies them. Which nodes a rollout reaches is
// decided by the control plane, which hands over, per plugin, the rollout
// module and the set of rollout buckets whose nodes take it. The engine
// only puts each node in its bucket (NodeBucket), keeps nodes of different
// buckets in different groups, and builds each group with the modules its
// bucket is given. It reports back the modules nodes refused
// (ServerOptions.OnModuleRefused), never whether a node was chosen.

// RolloutBuckets is how finely rollouts divide a fleet: every node falls
// in one of this many buckets.
const RolloutBuckets = 100

// Buckets is a set of rollout buckets, 0 to RolloutBuckets-1.
type Buckets [2]uint64

// Add puts bucket in the set; a bucket out of range is ignored.
func (b *Buckets) Add(bucket int) {
	if bucket >= 0 && bucket < RolloutBuckets {
		b[bucket/64] |= 1 << (bucket % 64)
	}
}

// Has reports whether bucket is in the set.
func (b Buckets) Has(bucket int) bool {
	return bucket >= 0 && bucket < RolloutBuckets && b[bucket/64]&(1<<(bucket%64)) != 0
}

// Rollout is a plugin's module sent, instead of the plugin's own, to the
// nodes in Buckets among those the plugin selects.
type Rollout struct {
	Module  *Module
	Buckets Buckets
}

// NodeBucket is the rollout bucket (0-99) of a node id: the first 8 bytes
// of the id's sha256, big-endian, mod 100. It depends on the id alone, so
// a node never changes bucket and every replica agrees on it.
func NodeBucket(nodeID string) int {
	sum := sha256.Sum256([]byte(nodeID))
	return int(binary.BigEndian.Uint64(sum[:8]) % RolloutBuckets)
}

// nodeGroupKey is the snapshot key of a node: its label set's key and its
// rollout bucket. Nodes of one label set in different buckets share the
// translation (see forBucket) until a rollout tells them apart.
func nodeGroupKey(nodeID string, labels map[string]string) string {
	return GroupKey(labels) + "#" + strconv.Itoa(NodeBucket(nodeID))
}

// forBucket is in as the nodes of one bucket see it: each plugin whose
// rollout takes the bucket, and that ran(plugin) allows, gets the
// rollout's module. variant names the plugins chosen ("" when none), so
// that groups of one label set that see the same Input share one
// translation.
func (in Input) forBucket(bucket int, ran func(plugin string) bool) (out Input, variant string) {
	var chosen []string
	for _, name := range slices.Sorted(maps.Keys(in.Rollouts)) {
		r := in.Rollouts[name]
		if r.Module != nil && r.Buckets.Has(bucket) && ran(name) {
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

// waitsForRollout reports whether plugin's rollout takes the group's
// bucket but was held back because the group's nodes ran no module of it
// yet.
func (in Input) waitsForRollout(bucket int, plugin string) bool {
	r, ok := in.Rollouts[plugin]
	return ok && r.Module != nil && r.Buckets.Has(bucket)
}
