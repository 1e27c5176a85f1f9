package xds

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// emptyGroup is the group key of nodes without labels. It is not empty so
// that it reads well in logs and status output.
const emptyGroup = "_"

// servedTypes are the resource types a snapshot carries, in the order ADS
// wants them delivered.
var servedTypes = []string{
	resource.ClusterType,
	resource.ListenerType,
	resource.RouteType,
	resource.ExtensionConfigType,
	resource.SecretType,
}

// GroupKey returns the canonical key of a label set: "k=v" pairs sorted by
// key and joined by commas ("app=httpbin,zone=a"), "_" for no labels. The
// characters ',', '=' and '\' are backslash-escaped so that distinct label
// sets never share a key.
func GroupKey(labels map[string]string) string {
	if len(labels) == 0 {
		return emptyGroup
	}
	esc := labelEscaper
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(labels)) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(esc.Replace(k))
		b.WriteByte('=')
		b.WriteString(esc.Replace(labels[k]))
	}
	return b.String()
}

// labelEscaper is built once: GroupKey runs on every discovery request
// (the cache hashes the node each time), and building a Replacer per call
// showed in profiles of large fleets.
var labelEscaper = strings.NewReplacer(`\`, `\\`, `,`, `\,`, `=`, `\=`)

// groupHash makes the SnapshotCache key its snapshots by label set and
// rollout bucket (nodeGroupKey), so every node of a group reads one shared
// snapshot.
type groupHash struct{}

// ID implements cache.NodeHash.
func (groupHash) ID(node *corev3.Node) string { return nodeGroupKey(node.GetId(), NodeLabels(node)) }

// typeVersions is the version of each served type in one snapshot.
type typeVersions map[string]string

// buildSnapshot turns a group's resources into a snapshot whose per-type
// version is a hash of that type's content, so unchanged types keep their
// version and Envoy is sent nothing for them.
func buildSnapshot(res *Resources) (*cache.Snapshot, typeVersions, error) {
	if res == nil {
		res = &Resources{}
	}
	byType := map[string][]types.Resource{
		resource.ClusterType:         toResources(res.Clusters),
		resource.ListenerType:        toResources(res.Listeners),
		resource.RouteType:           toResources(res.Routes),
		resource.ExtensionConfigType: toResources(res.Extensions),
		resource.SecretType:          toResources(res.Secrets),
	}
	snap := &cache.Snapshot{}
	versions := make(typeVersions, len(byType))
	for typeURL, items := range byType {
		v := typeVersion(items)
		snap.Resources[cache.GetResponseType(typeURL)] = cache.NewResources(v, items)
		versions[typeURL] = v
	}
	if err := snap.Consistent(); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errInconsistent, err)
	}
	return snap, versions, nil
}

func toResources[T proto.Message](msgs []T) []types.Resource {
	out := make([]types.Resource, len(msgs))
	for i, m := range msgs {
		out[i] = m
	}
	return out
}

// typeVersion is the version of one type's resources: their content hash,
// so that equal content gives equal versions in every process. It is never
// empty, which a SotW Envoy would take for "nothing received yet".
func typeVersion(items []types.Resource) string {
	msgs := make([]proto.Message, len(items))
	for i, r := range items {
		msgs[i] = r
	}
	return ResourceHash(msgs...)
}
