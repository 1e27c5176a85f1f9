package xds

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
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

// labelEscaper is built once: GroupKey runs for every node that connects,
// and building a Replacer per call showed in profiles of large fleets.
var labelEscaper = strings.NewReplacer(`\`, `\\`, `,`, `\,`, `=`, `\=`)

// typeVersions is the version of each served type in one snapshot.
type typeVersions map[string]string

// servedSnapshot is a group's resources as the delivery cache serves them:
// per type, its version and each resource marshaled once, the bytes shared
// by every response that carries them, to every node of every group built
// from it.
type servedSnapshot struct {
	types map[string]*servedType
}

// servedType is one type of a servedSnapshot.
type servedType struct {
	version string
	items   []*servedResource // in the order they were built
	byName  map[string]*servedResource
}

// servedResource is one resource, marshaled.
type servedResource struct {
	name    string
	version string     // the hash of its bytes: what delta clients track
	any     *anypb.Any // state-of-the-world responses carry this
	delta   *discoverygrpc.Resource
}

// within reports whether every resource of the type is among names.
func (t *servedType) within(names []string) bool {
	set := nameSet(names)
	for _, r := range t.items {
		if !set[r.name] {
			return false
		}
	}
	return true
}

// buildSnapshot turns a group's resources into a snapshot whose per-type
// version is a hash of that type's content, so unchanged types keep their
// version and Envoy is sent nothing for them. Each resource is marshaled
// once, here.
func buildSnapshot(res *Resources) (*servedSnapshot, typeVersions, error) {
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
	// go-control-plane's consistency check: every route configuration a
	// listener names is present, and so on.
	check := &cache.Snapshot{}
	for typeURL, items := range byType {
		check.Resources[cache.GetResponseType(typeURL)] = cache.NewResources("", items)
	}
	if err := check.Consistent(); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errInconsistent, err)
	}
	snap := &servedSnapshot{types: make(map[string]*servedType, len(byType))}
	versions := make(typeVersions, len(byType))
	for typeURL, items := range byType {
		st, err := serveType(typeURL, items)
		if err != nil {
			return nil, nil, err
		}
		snap.types[typeURL] = st
		versions[typeURL] = st.version
	}
	return snap, versions, nil
}

// serveType marshals one type's resources. Its version is ResourceHash of
// them, computed from the same bytes.
func serveType(typeURL string, items []types.Resource) (*servedType, error) {
	st := &servedType{items: make([]*servedResource, 0, len(items)), byName: make(map[string]*servedResource, len(items))}
	h := sha256.New()
	var n [8]byte
	for _, item := range items {
		b, err := stableMarshal.Marshal(item)
		if err != nil {
			return nil, fmt.Errorf("marshal %s %q: %w", typeLabel(typeURL), cache.GetResourceName(item), err)
		}
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
		name := cache.GetResourceName(item)
		if st.byName[name] != nil {
			return nil, fmt.Errorf("two %s resources named %q", typeLabel(typeURL), name)
		}
		a := &anypb.Any{TypeUrl: typeURL, Value: b}
		r := &servedResource{name: name, version: cache.HashResource(b), any: a}
		r.delta = &discoverygrpc.Resource{Name: name, Version: r.version, Resource: a}
		st.items = append(st.items, r)
		st.byName[name] = r
	}
	st.version = hex.EncodeToString(h.Sum(nil))
	return st, nil
}

func toResources[T proto.Message](msgs []T) []types.Resource {
	out := make([]types.Resource, len(msgs))
	for i, m := range msgs {
		out[i] = m
	}
	return out
}
