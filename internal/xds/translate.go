package xds

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/wasmxds/wasmxds/internal/catalog"
)

// ModuleClusterName is the Envoy cluster through which every Wasm filter
// downloads its module from the module server.
const ModuleClusterName = "wasmxds_modules"

// XDSClusterName is the static cluster through which an Envoy bootstrapped
// by `wasmxds bootstrap` reaches the ADS server.
const XDSClusterName = "wasmxds_xds"

// FilterNamePrefix prefixes the HTTP filter name (and, with DeliveryECDS, the
// TypedExtensionConfig resource name) generated for each plugin.
const FilterNamePrefix = "wasmxds."

// Problem kinds, naming the spec kind that produced a dropped resource.
const (
	kindListener   = "Listener"
	kindCluster    = "Cluster"
	kindWasmPlugin = "WasmPlugin"
)

// stableMarshal is used for every marshal whose bytes are hashed or packed
// into an Any: the default marshal orders map entries randomly, which would
// make equal inputs produce different versions.
var stableMarshal = proto.MarshalOptions{Deterministic: true}

// Translate builds the Envoy resources for a node with the given labels.
// Pure: no I/O, no clock, no randomness; identical input → identical output.
//
// Resources that fail validation are dropped and reported as Problems; the
// rest still ship. A plugin whose module is unresolved is not a Problem (the
// caller reports module errors): a FAIL_OPEN plugin is left out of the chain,
// a FAIL_CLOSE plugin is replaced by a filter that denies every request.
func Translate(in Input, labels map[string]string) (*Resources, []Problem) {
	t := newTranslator(in, labels)
	t.run()
	return &t.res, t.problems
}

// translator holds the memoised per-call state of one Translate.
type translator struct {
	in       Input
	labels   map[string]string
	state    *catalog.State
	plugins  []catalog.Plugin // selected for the node, in chain order
	moduleOK bool             // the module cluster could be built

	specClusters map[string]catalog.Cluster
	clusters     map[string]*clusterv3.Cluster // nil value: invalid, reported
	filters      map[string]pluginFilter       // by plugin name
	extensions   map[string]*corev3.TypedExtensionConfig
	usedClusters map[string]bool
	addresses    map[string]string // host:port → listener name
	secrets      map[string]*tlsv3.Secret

	res      Resources
	problems []Problem
}

func newTranslator(in Input, labels map[string]string) *translator {
	state := in.State
	if state == nil {
		state = &catalog.State{}
	}
	t := &translator{
		in:           in,
		labels:       labels,
		state:        state,
		specClusters: make(map[string]catalog.Cluster, len(state.Clusters)),
		clusters:     make(map[string]*clusterv3.Cluster),
		filters:      make(map[string]pluginFilter),
		extensions:   make(map[string]*corev3.TypedExtensionConfig),
		usedClusters: make(map[string]bool),
		addresses:    make(map[string]string),
		secrets:      make(map[string]*tlsv3.Secret),
	}
	for _, c := range state.Clusters {
		t.specClusters[c.Name] = c
	}
	t.plugins = selectPlugins(state.Plugins, labels)
	return t
}

func (t *translator) run() {
	if mc, err := moduleCluster(t.in.ModuleServerURL, t.in.ModuleTLS); err != nil {
		t.problem(catalog.Source{}, kindCluster, ModuleClusterName, err)
	} else {
		t.moduleOK = true
		t.res.Clusters = append(t.res.Clusters, mc)
	}
	for _, l := range nodeListeners(t.state.Listeners, t.labels) {
		t.addListener(l)
	}
	t.addUnlistenedPlugins()
	for name := range t.usedClusters {
		t.res.Clusters = append(t.res.Clusters, t.clusters[name])
	}
	for _, e := range t.extensions {
		t.res.Extensions = append(t.res.Extensions, e)
	}
	sortResources(t.res.Listeners)
	sortResources(t.res.Routes)
	sortResources(t.res.Clusters)
	sortResources(t.res.Extensions)
	for _, s := range t.secrets {
		t.res.Secrets = append(t.res.Secrets, s)
	}
	sortResources(t.res.Secrets)
}

// addUnlistenedPlugins serves, with ECDS, the extension config of every
// plugin selecting the node that none of its listeners uses: an Envoy that
// keeps its own listeners names wasmxds.<plugin> in a config_discovery
// filter and gets the plugin's filter for its labels (filters-only mode).
func (t *translator) addUnlistenedPlugins() {
	if t.in.Delivery != DeliveryECDS || !t.moduleOK {
		return
	}
	for _, p := range t.plugins {
		if _, ok := t.extensions[ecdsName(p)]; ok {
			continue
		}
		if f := t.pluginFilter(p); f.ext != nil {
			t.extensions[f.ext.Name] = f.ext
		}
	}
}

// selectPlugins returns the plugins whose selector matches the node, in
// filter-chain order. The catalog already sorts them; sorting again keeps the
// chain order a property of translation rather than of its caller.
func selectPlugins(all []catalog.Plugin, labels map[string]string) []catalog.Plugin {
	var out []catalog.Plugin
	for _, p := range all {
		if catalog.Matches(p.Selector, labels) {
			out = append(out, p)
		}
	}
	slices.SortStableFunc(out, func(a, b catalog.Plugin) int {
		return cmp.Or(
			cmp.Compare(a.Phase, b.Phase),
			cmp.Compare(b.Priority, a.Priority),
			cmp.Compare(a.Name, b.Name),
		)
	})
	return out
}

func (t *translator) problem(src catalog.Source, kind, name string, err error) {
	t.problems = append(t.problems, Problem{Source: src, Kind: kind, Name: name, Message: err.Error()})
}

type namedResource interface{ GetName() string }

func sortResources[T namedResource](s []T) {
	slices.SortFunc(s, func(a, b T) int { return cmp.Compare(a.GetName(), b.GetName()) })
}

// ValidatingMessage is implemented by every generated Envoy message.
type ValidatingMessage interface {
	proto.Message
	ValidateAll() error
}

// PackValid validates m and wraps it in an Any with deterministic bytes.
func PackValid(m ValidatingMessage) (*anypb.Any, error) {
	if err := m.ValidateAll(); err != nil {
		return nil, fmt.Errorf("invalid %s: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, stableMarshal); err != nil {
		return nil, fmt.Errorf("packing %s: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	return a, nil
}

// ResourceHash returns the hex sha256 of the messages' deterministic
// encodings, in order. Each encoding is length-prefixed so that different
// splits of the same bytes hash differently.
func ResourceHash(msgs ...proto.Message) string {
	h := sha256.New()
	var n [8]byte
	for _, m := range msgs {
		b, err := stableMarshal.Marshal(m)
		if err != nil {
			// Only invalid UTF-8 or required-field errors can get here;
			// hashing the error text keeps the function total and still
			// distinguishes the input from a valid one.
			b = []byte("\x00marshal error: " + err.Error())
		}
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}
