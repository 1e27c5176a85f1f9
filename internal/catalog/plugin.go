package catalog

import (
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/wasmxds/wasmxds/internal/modref"
	"gopkg.in/yaml.v3"
)

// envNameRE is a C identifier, the rule Istio applies to VM env var names.
var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

const noTargets = "wasmxds has no Kubernetes Gateways or Services to attach to; " +
	"select Envoys with selector.matchLabels (matched against node metadata labels)"

// pluginParse is what parsing a plugin finds besides the Plugin: values
// other documents must agree with, and fields only wasmxds.dev/v1alpha1
// has, for the caller to refuse under another apiVersion.
type pluginParse struct {
	ports []ref
	// targetsAt is the first match[].hosts or match[].paths.
	targetsAt *yaml.Node
	// native are other fields wasmxds.dev/v1alpha1 alone has.
	native []nativeField
}

// nativeField is a field that only wasmxds.dev/v1alpha1 has.
type nativeField struct {
	at   *yaml.Node
	what string
}

// parsePlugin decodes a WasmPlugin spec; the field set is Istio's
// extensions.istio.io/v1alpha1 WasmPlugin.
func parsePlugin(spec *fields, dir string) (*Plugin, pluginParse) {
	pl := newPlugin(spec)
	var pp pluginParse
	parsePlacement(spec, pl, "UNSPECIFIED_PHASE")
	parseWasmModule(spec, pl, dir, &pp)
	pl.Ports, pp.ports, pl.Targets, pp.targetsAt = parseMatch(spec)
	parsePluginType(spec, pl, pp.targetsAt)
	return pl, pp
}

// newPlugin starts a plugin with the defaults and the selector; targetRefs
// are refused.
func newPlugin(spec *fields) *Plugin {
	pl := &Plugin{Selector: parseSelector(spec), Phase: PhaseUnspecified, FailStrategy: FailClose}
	spec.reject("targetRef", noTargets)
	spec.reject("targetRefs", noTargets)
	return pl
}

// parsePlacement reads phase and priority; unspecified is the spelling of
// the unspecified phase (WasmPlugin's UNSPECIFIED_PHASE, TrafficExtension's
// UNSPECIFIED).
func parsePlacement(spec *fields, pl *Plugin, unspecified string) {
	if v, _ := spec.enum("phase", unspecified, "AUTHN", "AUTHZ", "STATS"); v != "" {
		pl.Phase = map[string]Phase{unspecified: PhaseUnspecified, "AUTHN": PhaseAuthn,
			"AUTHZ": PhaseAuthz, "STATS": PhaseStats}[v]
	}
	if n, _, ok := spec.integer("priority", math.MinInt32, math.MaxInt32); ok {
		pl.Priority = int32(n)
	}
}

// parseWasmModule reads the module and VM fields, which a WasmPlugin has in
// its spec and a TrafficExtension under spec.wasm.
func parseWasmModule(f *fields, pl *Plugin, dir string, pp *pluginParse) {
	latest := parsePluginURL(f, pl, dir)
	parseVerificationKey(f, pl, dir)
	pl.PullPolicy = parsePullPolicy(f, latest && pl.SHA256 == "")
	pl.PullSecret = boundedString(f, "imagePullSecret", 253)
	checkPullSecretRegistry(f, "imagePullSecret", f.sub("url"), pl)
	pl.Rollout = parseRollout(f, pl, dir)
	var stringAt *yaml.Node
	pl.Config, stringAt = parsePluginConfig(f)
	if stringAt != nil {
		pp.native = append(pp.native, nativeField{stringAt, f.sub("pluginConfig") + " as a string"})
		if f.has("secretRefs") {
			f.p.add(f.line("secretRefs"), "%s: needs pluginConfig as a mapping to fill values in", f.sub("secretRefs"))
		}
	}
	pl.SecretRefs = parseSecretRefs(f, pl.Config, dir)
	pl.RootID = boundedString(f, "pluginName", 256)
	pl.FailStrategy = parseFailStrategy(f)
	var vmIDAt *yaml.Node
	pl.Env, pl.VMID, vmIDAt = parseVMConfig(f)
	if vmIDAt != nil {
		pp.native = append(pp.native, nativeField{vmIDAt, f.sub("vmConfig.vmId")})
	}
}

// parsePluginType reads type: HTTP (the default) or NETWORK.
func parsePluginType(f *fields, pl *Plugin, targetsAt *yaml.Node) {
	if v, n := f.enum("type", "UNSPECIFIED_PLUGIN_TYPE", "HTTP", "NETWORK"); v == "NETWORK" {
		pl.Type = PluginNetwork
		if targetsAt != nil {
			f.p.add(n, "%s: a NETWORK plugin applies to whole TCP connections, so match hosts and paths "+
				"(HTTP routes) cannot limit it; use ports", f.sub("type"))
		}
	}
}

// enum reads a string field that must be one of allowed.
func (f *fields) enum(key string, allowed ...string) (string, *yaml.Node) {
	v, n := f.str(key)
	if n == nil {
		return "", nil
	}
	if !slices.Contains(allowed, v) {
		f.p.add(n, "%s: unknown value %q (want %s)", f.sub(key), v, strings.Join(allowed, ", "))
		return "", n
	}
	return v, n
}

func boundedString(f *fields, key string, max int) string {
	v, n := f.str(key)
	if len(v) > max {
		f.p.add(n, "%s: longer than %d characters", f.sub(key), max)
	}
	return v
}

// parsePullPolicy applies Istio's default: IfNotPresent, except Always for an
// OCI reference by the latest tag, mirroring Kubernetes.
func parsePullPolicy(spec *fields, latest bool) PullPolicy {
	v, _ := spec.enum("imagePullPolicy", "UNSPECIFIED_POLICY", string(PullIfNotPresent), string(PullAlways))
	switch {
	case v == string(PullAlways), (v == "" || v == "UNSPECIFIED_POLICY") && latest:
		return PullAlways
	default:
		return PullIfNotPresent
	}
}

// parseFailStrategy reads failStrategy, the same under both apiVersions;
// unset means FAIL_CLOSE, as in Istio.
func parseFailStrategy(spec *fields) FailStrategy {
	v, _ := spec.enum("failStrategy", string(FailClose), string(FailOpen), string(FailReload))
	if v == "" {
		return FailClose
	}
	return FailStrategy(v)
}

// parsePluginConfig renders pluginConfig as compact JSON with sorted keys so
// that equal configs always give equal bytes (and equal xDS versions). A
// string is kept as written (wasmxds.dev/v1alpha1 only); stringAt is then
// its node.
func parsePluginConfig(spec *fields) (cfg string, stringAt *yaml.Node) {
	v := spec.value("pluginConfig")
	if v == nil {
		return "", nil
	}
	if v.Kind == yaml.ScalarNode && v.Tag == "!!str" {
		if len(v.Value) > MaxPluginConfigBytes {
			spec.p.add(v, "%s: longer than %d KiB", spec.sub("pluginConfig"), MaxPluginConfigBytes>>10)
			return "", v
		}
		return v.Value, v
	}
	if v.Kind != yaml.MappingNode {
		spec.p.add(v, "%s: must be a mapping", spec.sub("pluginConfig"))
		return "", nil
	}
	out, err := encodePluginConfig(v)
	if err != nil {
		at := err.node
		if err.atKey || at == nil {
			at = spec.line("pluginConfig")
		}
		spec.p.add(at, "%s: %s", spec.sub("pluginConfig"), err.msg)
		return "", nil
	}
	return out, nil
}

// parseVMConfig reads vmConfig.env and vmConfig.vmId; vmIDAt is the
// latter's node, which only wasmxds.dev/v1alpha1 has.
func parseVMConfig(spec *fields) (env []EnvVar, vmID string, vmIDAt *yaml.Node) {
	v := spec.value("vmConfig")
	if v == nil {
		return nil, "", nil
	}
	vm := spec.p.mapping(v, spec.sub("vmConfig"))
	items, _ := vm.seq("env")
	vmID, vmIDAt = vm.str("vmId")
	if vmIDAt != nil && (vmID == "" || len(vmID) > 253) {
		spec.p.add(vmIDAt, "%s: must be 1-253 characters", vm.sub("vmId"))
	}
	vm.finish()
	seen := map[string]int{}
	for i, it := range items {
		ef := spec.p.mapping(it, vm.sub("env")+"["+strconv.Itoa(i)+"]")
		e, n := parseEnvVar(ef)
		ef.finish()
		if n == nil {
			continue
		}
		if first, dup := seen[e.Name]; dup {
			spec.p.add(n, "%s: duplicate env var %q (first at line %d)", ef.sub("name"), e.Name, first)
			continue
		}
		seen[e.Name] = n.Line
		env = append(env, e)
	}
	return env, vmID, vmIDAt
}

func parseEnvVar(ef *fields) (EnvVar, *yaml.Node) {
	name, n := ef.str("name")
	value, vn := ef.str("value")
	from, _ := ef.enum("valueFrom", "INLINE", "HOST")
	switch {
	case n == nil && !ef.missing("name"):
		return EnvVar{}, nil // not a string; already reported
	case n == nil || name == "":
		ef.p.add(orNode(n, ef.line("name")), "%s: missing", ef.sub("name"))
		return EnvVar{}, nil
	case len(name) > 256 || !envNameRE.MatchString(name):
		ef.p.add(n, "%s: %q is not a valid variable name (letters, digits and '_', not starting with a digit)", ef.sub("name"), name)
	case from == "HOST" && vn != nil:
		ef.p.add(vn, "%s: value may only be set when valueFrom is INLINE", ef.sub("value"))
	case len(value) > 2048:
		ef.p.add(vn, "%s: longer than 2048 characters", ef.sub("value"))
	}
	return EnvVar{Name: name, Value: value, FromHost: from == "HOST"}, n
}

// checkPullSecretRegistry refuses an imagePullSecret that names a docker
// config entry of another registry than the url's: credentials only ever go
// to the registry they belong to.
func checkPullSecretRegistry(spec *fields, key, urlField string, pl *Plugin) {
	secretHost, ok := modref.PullSecretRegistry(pl.PullSecret)
	if !ok || pl.URL == "" {
		return
	}
	ref, err := modref.Parse(pl.URL, "")
	if err != nil || ref.Kind != modref.KindOCI {
		if err == nil && ref.Kind != modref.KindFile {
			spec.p.add(spec.line(key), "%s: %q holds registry credentials; "+
				"they are only sent to OCI registries, not to %s", spec.sub(key), pl.PullSecret, pl.URL)
		}
		return
	}
	if !modref.SameRegistry(secretHost, ref.Registry) {
		spec.p.add(spec.line(key), "%s: %q holds credentials for registry %s, "+
			"not for %s, the registry of %s", spec.sub(key), pl.PullSecret, secretHost, ref.Registry, urlField)
	}
}
