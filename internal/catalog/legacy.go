package catalog

import (
	"encoding/base64"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/wasmxds/wasmxds/internal/modref"
)

// The type URLs of the configurations the older manifests give a filter
// (a google.protobuf.Any). Envoy hands a StringValue's or a BytesValue's
// content to the filter as it is, and a Struct as its JSON.
const (
	stringValueType = "type.googleapis.com/google.protobuf.StringValue"
	bytesValueType  = "type.googleapis.com/google.protobuf.BytesValue"
	structType      = "type.googleapis.com/google.protobuf.Struct"
)

const noWorkloadKinds = "there are no Kubernetes workloads here; the filter goes to every Envoy whose node labels match labels"

// parseFilterDeployment decodes a wasme FilterDeployment:
// spec.filter {id, image, config, rootID, imagePullOptions, patchContext}
// and spec.deployment.istio {kind, labels, istioNamespace}.
func parseFilterDeployment(spec *fields, dir string) (*Plugin, pluginParse) {
	pl := &Plugin{Phase: PhaseUnspecified, FailStrategy: FailClose}
	ff := spec.p.mapping(spec.value("filter"), "spec.filter")
	if spec.missing("filter") {
		spec.p.add(spec.line("filter"), "spec.filter: missing (the filter to deploy: image, config, rootID)")
	}
	parseLegacyFilter(ff, pl, dir, "config")
	if pc, n := ff.enum("patchContext", "", "inbound", "outbound", "gateway", "any"); pc == "outbound" {
		spec.p.add(n, "spec.filter.patchContext: outbound is not supported: wasmxds listeners only serve "+
			"downstream (inbound) traffic, so there is no outbound listener to patch; use inbound or omit it")
	}
	ff.finish()
	df := spec.p.mapping(spec.value("deployment"), "spec.deployment")
	if spec.missing("deployment") {
		spec.p.add(spec.line("deployment"), "spec.deployment: missing (istio: {labels} selects the Envoys)")
	}
	if df.isMap() && df.missing("istio") {
		spec.p.add(df.line("istio"), "spec.deployment.istio: missing (labels select the Envoys; empty labels select every Envoy)")
	}
	inf := spec.p.mapping(df.value("istio"), "spec.deployment.istio")
	pl.Selector = inf.stringMap("labels")
	warnMoot(inf, "kind", noWorkloadKinds)
	if ns, n := inf.str("istioNamespace"); n != nil && ns != "istio-system" {
		spec.p.add(n, "spec.deployment.istio.istioNamespace: not supported: %q names an Istio control plane inside a "+
			"cluster, and wasmxds is the control plane here; remove it", ns)
	} else {
		warnMoot(inf, "istioNamespace", "wasmxds is the control plane; there is no Istio namespace")
	}
	inf.finish()
	df.finish()
	return pl, pluginParse{}
}

// parseASMFilterDeployment decodes an Alibaba Cloud ASM ASMFilterDeployment:
// spec.workload {kind, labels} and spec.filter {id, image, parameters,
// rootID, imagePullOptions}.
func parseASMFilterDeployment(spec *fields, dir string) (*Plugin, pluginParse) {
	pl := &Plugin{Phase: PhaseUnspecified, FailStrategy: FailClose}
	ff := spec.p.mapping(spec.value("filter"), "spec.filter")
	if spec.missing("filter") {
		spec.p.add(spec.line("filter"), "spec.filter: missing (the filter to deploy: image, parameters, rootID)")
	}
	parseLegacyFilter(ff, pl, dir, "parameters")
	ff.finish()
	wf := spec.p.mapping(spec.value("workload"), "spec.workload")
	pl.Selector = wf.stringMap("labels")
	warnMoot(wf, "kind", noWorkloadKinds)
	wf.finish()
	return pl, pluginParse{}
}

// parseLegacyFilter reads the filter fields wasme and ASM share: id (kept as
// the VM id), image (an OCI reference), the configuration under configKey
// (wasme's config, ASM's parameters), rootID and imagePullOptions.
func parseLegacyFilter(ff *fields, pl *Plugin, dir, configKey string) {
	if !ff.isMap() {
		return
	}
	if id, n := ff.str("id"); n != nil && id != "" {
		pl.VMID = id
		if len(id) > 253 {
			ff.p.add(n, "%s: longer than 253 characters", ff.sub("id"))
		}
	}
	parseImage(ff, pl, dir)
	if configKey == "config" {
		pl.Config = parseAnyConfig(ff, configKey)
	} else {
		pl.Config, _ = ff.str(configKey) // ASM passed the JSON string to the filter as it is
	}
	pl.RootID = boundedString(ff, "rootID", 256)
	parsePullOptions(ff, pl)
}

// parseImage reads image, an OCI reference written without a scheme.
func parseImage(ff *fields, pl *Plugin, dir string) {
	raw, n := ff.str("image")
	if raw == "" {
		if n != nil || ff.missing("image") {
			ff.p.add(orNode(n, ff.line("image")), "%s: missing (the filter's OCI image, e.g. webassemblyhub.io/user/filter:v1)", ff.sub("image"))
		}
		return
	}
	ref, err := modref.Parse(raw, dir)
	switch {
	case err != nil:
		ff.p.add(n, "%s: %v", ff.sub("image"), err)
	case ref.Kind != modref.KindOCI:
		ff.p.add(n, "%s: %q is not an OCI image reference", ff.sub("image"), raw)
	default:
		pl.URL = ref.String()
		pl.PullPolicy = PullIfNotPresent
		if ref.Latest() {
			pl.PullPolicy = PullAlways
		}
	}
}

// parsePullOptions reads imagePullOptions {pullSecret, insecureSkipVerify,
// plainHttp}. Whether a registry is spoken to over plain HTTP is the
// server's setting (serve --insecure-registry; loopback registries always
// are), so plainHttp is a warning where it does not already hold; wasmxds
// never skips verifying a registry's TLS certificate, so
// insecureSkipVerify is refused unless the registry is spoken to over
// plain HTTP anyway.
func parsePullOptions(ff *fields, pl *Plugin) {
	of := ff.p.mapping(ff.value("imagePullOptions"), ff.sub("imagePullOptions"))
	defer of.finish()
	pl.PullSecret = boundedString(of, "pullSecret", 253)
	checkPullSecretRegistry(of, "pullSecret", ff.sub("image"), pl)
	host := ""
	if ref, err := modref.Parse(pl.URL, ""); err == nil && ref.Kind == modref.KindOCI {
		host = ref.Registry
	}
	plain, pn := boolField(of, "plainHttp")
	if plain && !modref.LoopbackRegistry(host) {
		of.p.warn(pn, "%s: wasmxds reaches %s over plain HTTP only when started with `serve --insecure-registry %s`; "+
			"a manifest cannot turn it on", of.sub("plainHttp"), host, host)
	}
	skip, sn := boolField(of, "insecureSkipVerify")
	switch {
	case skip && modref.LoopbackRegistry(host):
		of.p.warn(sn, "%s: moot: %s is a loopback registry, which wasmxds always reaches over plain HTTP", of.sub("insecureSkipVerify"), host)
	case skip && plain:
		of.p.warn(sn, "%s: moot with plainHttp (no TLS to verify)", of.sub("insecureSkipVerify"))
	case skip:
		of.p.add(sn, "%s: not supported: wasmxds always verifies a registry's TLS certificate; give the registry a "+
			"certificate the server trusts (SSL_CERT_FILE), or serve it over plain HTTP with `serve --insecure-registry %s`",
			of.sub("insecureSkipVerify"), host)
	}
}

// boolField reads a boolean.
func boolField(f *fields, key string) (bool, *yaml.Node) {
	v := f.value(key)
	if v == nil {
		return false, nil
	}
	if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" {
		f.p.add(v, "%s: must be true or false", f.sub(key))
		return false, v
	}
	return v.Value == "true" || v.Value == "True" || v.Value == "TRUE", v
}

// warnMoot accepts a field whose meaning wasmxds keeps without it, with a
// warning that says why it changes nothing.
func warnMoot(f *fields, key, why string) {
	f.use(key)
	if f.has(key) && !f.missing(key) {
		f.p.warn(f.keys[key], "%s: has no effect: %s", f.sub(key), why)
	}
}

// parseAnyConfig reads a filter configuration given as a google.protobuf.Any
// in its JSON form ({"@type": ..., value: ...}), or as a plain string (the
// older Envoy and Istio form). It returns what the filter received: a
// string's or BytesValue's content as it is, a Struct as compact JSON.
func parseAnyConfig(f *fields, key string) string {
	v := f.value(key)
	if v == nil {
		return ""
	}
	if v.Kind == yaml.ScalarNode {
		return v.Value
	}
	af := f.p.mapping(v, f.sub(key))
	defer af.finish()
	typ, tn := af.str("@type")
	val := af.value("value")
	switch {
	case tn == nil:
		f.p.add(v, "%s: missing @type (%s, %s or %s)", f.sub(key), stringValueType, bytesValueType, structType)
	case typ == stringValueType && (val == nil || val.Kind == yaml.ScalarNode):
		s, _ := af.str("value")
		return s
	case typ == bytesValueType:
		return bytesConfig(af)
	case typ == structType && val != nil && val.Kind == yaml.MappingNode:
		return structConfig(af, val)
	case typ == stringValueType || typ == structType:
		f.p.add(orNode(val, tn), "%s.value: must be a string for StringValue, a mapping for Struct", f.sub(key))
	default:
		f.p.add(tn, "%s: not supported: Envoy hands a %s to the filter as its protobuf encoding, which wasmxds "+
			"cannot reproduce; use %s or %s", f.sub(key+".@type"), typ, stringValueType, structType)
	}
	return ""
}

// bytesConfig decodes a BytesValue; the filter gets its bytes, which
// wasmxds passes on as a string, so they must be UTF-8.
func bytesConfig(af *fields) string {
	s, n := af.str("value")
	b, err := base64.StdEncoding.DecodeString(s)
	switch {
	case err != nil:
		af.p.add(n, "%s: not base64: %v", af.sub("value"), err)
	case !utf8.Valid(b):
		af.p.add(n, "%s: not supported: the bytes are not UTF-8 text, and wasmxds passes configurations as strings", af.sub("value"))
	default:
		return string(b)
	}
	return ""
}

func structConfig(af *fields, val *yaml.Node) string {
	out, err := encodePluginConfig(val)
	if err != nil {
		at := err.node
		if err.atKey || at == nil {
			at = af.line("value")
		}
		af.p.add(at, "%s: %s", af.sub("value"), err.msg)
		return ""
	}
	return out
}
