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

// parsePlugin decodes a WasmPlugin spec; the field set is Istio's
// extensions.istio.io/v1alpha1 WasmPlugin.
//
// targetsAt is the first match[].hosts or match[].paths, which only
// wasmxds.dev/v1alpha1 has; nil when there is none.
func parsePlugin(spec *fields, dir string) (pl *Plugin, ports []ref, targetsAt *yaml.Node) {
	pl = &Plugin{Selector: parseSelector(spec), Phase: PhaseUnspecified, FailStrategy: FailClose}
	spec.reject("targetRef", noTargets)
	spec.reject("targetRefs", noTargets)
	latest := parsePluginURL(spec, pl, dir)
	parseVerificationKey(spec, pl, dir)
	pl.PullPolicy = parsePullPolicy(spec, latest && pl.SHA256 == "")
	pl.PullSecret = boundedString(spec, "imagePullSecret", 253)
	checkPullSecretRegistry(spec, pl)
	pl.Rollout = parseRollout(spec, pl, dir)
	pl.Config = parsePluginConfig(spec)
	pl.SecretRefs = parseSecretRefs(spec, pl.Config, dir)
	pl.RootID = boundedString(spec, "pluginName", 256)
	if v, _ := spec.enum("phase", "UNSPECIFIED_PHASE", "AUTHN", "AUTHZ", "STATS"); v != "" {
		pl.Phase = map[string]Phase{"UNSPECIFIED_PHASE": PhaseUnspecified, "AUTHN": PhaseAuthn,
			"AUTHZ": PhaseAuthz, "STATS": PhaseStats}[v]
	}
	if n, _, ok := spec.integer("priority", math.MinInt32, math.MaxInt32); ok {
		pl.Priority = int32(n)
	}
	pl.FailStrategy = parseFailStrategy(spec)
	pl.Env = parseVMConfig(spec)
	pl.Ports, ports, pl.Targets, targetsAt = parseMatch(spec)
	if v, n := spec.enum("type", "UNSPECIFIED_PLUGIN_TYPE", "HTTP", "NETWORK"); v == "NETWORK" {
		pl.Type = PluginNetwork
		if targetsAt != nil {
			spec.p.add(n, "spec.type: a NETWORK plugin applies to whole TCP connections, so match hosts and paths "+
				"(HTTP routes) cannot limit it; use ports")
		}
	}
	return pl, ports, targetsAt
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
// that equal configs always give equal bytes (and equal xDS versions).
func parsePluginConfig(spec *fields) string {
	v := spec.value("pluginConfig")
	if v == nil {
		return ""
	}
	if v.Kind != yaml.MappingNode {
		spec.p.add(v, "spec.pluginConfig: must be a mapping")
		return ""
	}
	out, err := encodePluginConfig(v)
	if err != nil {
		at := err.node
		if err.atKey || at == nil {
			at = spec.line("pluginConfig")
		}
		spec.p.add(at, "spec.pluginConfig: %s", err.msg)
		return ""
	}
	return out
}

// parseVMConfig reads vmConfig.env.
func parseVMConfig(spec *fields) []EnvVar {
	v := spec.value("vmConfig")
	if v == nil {
		return nil
	}
	vm := spec.p.mapping(v, "spec.vmConfig")
	items, _ := vm.seq("env")
	vm.finish()
	var env []EnvVar
	seen := map[string]int{}
	for i, it := range items {
		ef := spec.p.mapping(it, "spec.vmConfig.env["+strconv.Itoa(i)+"]")
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
	return env
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
func checkPullSecretRegistry(spec *fields, pl *Plugin) {
	secretHost, ok := modref.PullSecretRegistry(pl.PullSecret)
	if !ok || pl.URL == "" {
		return
	}
	ref, err := modref.Parse(pl.URL, "")
	if err != nil || ref.Kind != modref.KindOCI {
		if err == nil && ref.Kind != modref.KindFile {
			spec.p.add(spec.line("imagePullSecret"), "spec.imagePullSecret: %q holds registry credentials; "+
				"they are only sent to OCI registries, not to %s", pl.PullSecret, pl.URL)
		}
		return
	}
	if !modref.SameRegistry(secretHost, ref.Registry) {
		spec.p.add(spec.line("imagePullSecret"), "spec.imagePullSecret: %q holds credentials for registry %s, "+
			"not for %s, the registry of spec.url", pl.PullSecret, secretHost, ref.Registry)
	}
}
