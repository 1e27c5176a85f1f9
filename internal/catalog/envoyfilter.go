package catalog

import (
	"maps"
	"math"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/wasmxds/wasmxds/internal/modref"
)

// The names Istio matched for the HTTP connection manager and the router,
// old and current.
var (
	hcmNames    = []string{"envoy.http_connection_manager", "envoy.filters.network.http_connection_manager"}
	routerNames = []string{"envoy.router", "envoy.filters.http.router"}
)

const (
	wasmFilterTypeURL = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
	onlyWasmPatch     = "wasmxds takes an EnvoyFilter that inserts one Wasm HTTP filter before the router " +
		"(applyTo: HTTP_FILTER, operation: INSERT_BEFORE, subFilter envoy.router)"
)

// parseEnvoyFilter decodes an Istio EnvoyFilter whose one config patch
// inserts a Wasm HTTP filter before the router: workloadSelector.labels
// select the Envoys, match.listener.portNumber limits it to the listeners
// on that port, and the filter's Wasm config (the older config: form, or
// typed_config, bare or in a TypedStruct) gives the module, root id, VM id
// and configuration.
//
// Patches apply by ascending priority, each inserted just before the
// router, so a lower priority runs earlier: the plugin's priority is the
// EnvoyFilter's negated.
func parseEnvoyFilter(spec *fields, dir string) (*Plugin, pluginParse) {
	pl := &Plugin{Phase: PhaseUnspecified, FailStrategy: FailClose}
	var pp pluginParse
	spec.reject("targetRefs", noTargets)
	if v := spec.value("workloadSelector"); v != nil {
		ws := spec.p.mapping(v, "spec.workloadSelector")
		pl.Selector = ws.stringMap("labels")
		ws.finish()
	}
	if n, _, ok := spec.integer("priority", -math.MaxInt32, math.MaxInt32); ok {
		pl.Priority = int32(-n)
	}
	items, seqNode := spec.seq("configPatches")
	switch {
	case len(items) == 0 && emptyList(seqNode):
		spec.p.add(orNode(seqNode, spec.line("configPatches")), "spec.configPatches: missing; %s", onlyWasmPatch)
	case len(items) > 1:
		spec.p.add(items[1], "spec.configPatches: %d patches; %s: give each filter an EnvoyFilter of its own",
			len(items), onlyWasmPatch)
	case len(items) == 1:
		cp := spec.p.mapping(items[0], "spec.configPatches[0]")
		parsePatch(cp, pl, &pp, dir)
		cp.finish()
	}
	return pl, pp
}

func parsePatch(cp *fields, pl *Plugin, pp *pluginParse, dir string) {
	if at, n := cp.str("applyTo"); at != "HTTP_FILTER" {
		cp.p.add(orNode(n, cp.line("applyTo")), "%s: %q is not supported: %s", cp.sub("applyTo"), at, onlyWasmPatch)
	}
	if cp.missing("match") {
		cp.p.add(cp.line("match"), "%s: missing; %s", cp.sub("match"), onlyWasmPatch)
	}
	mf := cp.p.mapping(cp.value("match"), cp.sub("match"))
	parsePatchMatch(mf, pl, pp)
	mf.finish()
	pf := cp.p.mapping(cp.value("patch"), cp.sub("patch"))
	if op, n := pf.str("operation"); op != "INSERT_BEFORE" {
		cp.p.add(orNode(n, pf.line("operation")), "%s: %q is not supported: %s; to place a filter elsewhere in the chain, "+
			"convert it to a WasmPlugin with a phase", pf.sub("operation"), op, onlyWasmPatch)
	}
	pf.reject("filterClass", "convert the EnvoyFilter to a WasmPlugin (wasmxds convert) and give it a phase")
	vf := pf.p.mapping(pf.value("value"), pf.sub("value"))
	if pf.isMap() && pf.missing("value") {
		pf.p.add(pf.line("value"), "%s: missing (the Wasm HTTP filter)", pf.sub("value"))
	}
	if vf.isMap() {
		parseFilterValue(vf, pl, dir)
	}
	vf.finish()
	pf.finish()
}

// parsePatchMatch reads match: context, and listener {portNumber,
// filterChain.filter {name: the HTTP connection manager, subFilter.name:
// the router}}.
func parsePatchMatch(mf *fields, pl *Plugin, pp *pluginParse) {
	if c, n := mf.enum("context", "ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND", "GATEWAY"); c == "SIDECAR_OUTBOUND" {
		mf.p.add(n, "%s: SIDECAR_OUTBOUND is not supported: wasmxds listeners only serve downstream (inbound) traffic, "+
			"so there is no outbound listener to patch", mf.sub("context"))
	}
	mf.reject("proxy", "there are no Istio proxy versions or metadata to match; workloadSelector.labels select the Envoys")
	mf.reject("routeConfiguration", onlyWasmPatch)
	mf.reject("cluster", onlyWasmPatch)
	if mf.isMap() && mf.missing("listener") {
		mf.p.add(mf.line("listener"), "%s: missing; %s", mf.sub("listener"), onlyWasmPatch)
	}
	lf := mf.p.mapping(mf.value("listener"), mf.sub("listener"))
	defer lf.finish()
	if n, node, ok := lf.integer("portNumber", 1, 65535); ok {
		pl.Ports = []uint32{uint32(n)}
		pp.ports = []ref{{value: strconv.Itoa(int(n)), path: lf.sub("portNumber"), line: node.Line}}
	}
	lf.reject("name", "wasmxds names its own listeners; match a port with portNumber")
	lf.reject("portName", "match the port with portNumber")
	if lf.isMap() && lf.missing("filterChain") {
		lf.p.add(lf.line("filterChain"), "%s: missing; %s", lf.sub("filterChain"), onlyWasmPatch)
	}
	fc := lf.p.mapping(lf.value("filterChain"), lf.sub("filterChain"))
	defer fc.finish()
	for _, k := range []string{"name", "sni", "transportProtocol", "applicationProtocols", "destinationPort"} {
		fc.reject(k, "wasmxds applies a plugin to whole listeners, selected by portNumber")
	}
	ff := fc.p.mapping(fc.value("filter"), fc.sub("filter"))
	defer ff.finish()
	if name, n := ff.str("name"); !slices.Contains(hcmNames, name) {
		ff.p.add(orNode(n, orNode(ff.line("name"), fc.line("filter"))), "%s: %q is not supported: %s", ff.sub("name"), name, onlyWasmPatch)
	}
	sf := ff.p.mapping(ff.value("subFilter"), ff.sub("subFilter"))
	defer sf.finish()
	if name, n := sf.str("name"); !slices.Contains(routerNames, name) {
		sf.p.add(orNode(n, orNode(sf.line("name"), ff.line("subFilter"))), "%s: %q is not supported: %s", sf.sub("name"), name, onlyWasmPatch)
	}
}

// parseFilterValue reads the patch's filter: name, and config (the older
// form: the Wasm filter's fields as a Struct) or typed_config.
func parseFilterValue(vf *fields, pl *Plugin, dir string) {
	name, nn := vf.str("name")
	typed := vf.either("typedConfig", "typed_config")
	switch {
	case vf.has("config") && vf.has(typed):
		vf.p.add(vf.line(typed), "%s: set config or %s, not both", vf.path, typed)
	case vf.has("config"):
		if name != "envoy.filters.http.wasm" && name != "envoy.wasm" {
			vf.p.add(orNode(nn, vf.line("name")), "%s: %q is not supported: with config, the filter must be "+
				"envoy.filters.http.wasm (or envoy.wasm); %s", vf.sub("name"), name, onlyWasmPatch)
		}
		parseWasmFilter(vf.p.mapping(vf.value("config"), vf.sub("config")), pl, dir)
	case vf.has(typed):
		parseTypedConfig(vf.p.mapping(vf.value(typed), vf.sub(typed)), pl, dir)
	default:
		vf.p.add(vf.node, "%s: missing config or typed_config (the Wasm filter's configuration)", vf.path)
	}
}

// parseTypedConfig reads typed_config: the Wasm filter as a TypedStruct
// ({type_url, value}) or bare ({"@type": ...Wasm, config}).
func parseTypedConfig(tf *fields, pl *Plugin, dir string) {
	typ, tn := tf.str("@type")
	switch typ {
	case "type.googleapis.com/udpa.type.v1.TypedStruct", "type.googleapis.com/xds.type.v3.TypedStruct":
		key := tf.either("typeUrl", "type_url")
		if u, n := tf.str(key); u != wasmFilterTypeURL {
			tf.p.add(orNode(n, tf.line(key)), "%s: %q is not supported: %s (%s)", tf.sub(key), u, onlyWasmPatch, wasmFilterTypeURL)
		}
		parseWasmFilter(tf.p.mapping(tf.value("value"), tf.sub("value")), pl, dir)
		tf.finish()
	case wasmFilterTypeURL:
		parseWasmFilter(tf, pl, dir)
	default:
		tf.p.add(orNode(tn, tf.node), "%s: %q is not supported: %s (%s, or a TypedStruct of it)",
			tf.sub("@type"), typ, onlyWasmPatch, wasmFilterTypeURL)
		tf.finish()
	}
}

// parseWasmFilter reads the Wasm filter message: {config: PluginConfig}.
// wf is finished here.
func parseWasmFilter(wf *fields, pl *Plugin, dir string) {
	wf.ignore("@type")
	if wf.isMap() && wf.missing("config") {
		wf.p.add(wf.line("config"), "%s: missing (the Wasm plugin: root_id, vm_config, configuration)", wf.sub("config"))
	}
	pc := wf.p.mapping(wf.value("config"), wf.sub("config"))
	parsePluginConfigMessage(pc, pl, dir)
	pc.finish()
	wf.finish()
}

// parsePluginConfigMessage reads Envoy's PluginConfig, in either spelling
// of its fields.
func parsePluginConfigMessage(pc *fields, pl *Plugin, dir string) {
	if name, n := pc.str("name"); n != nil && name != "" {
		pc.p.warn(n, "%s: %q is not kept: wasmxds names the plugin after metadata.name", pc.sub("name"), name)
	}
	pl.RootID = boundedString(pc, pc.either("rootId", "root_id"), 256)
	pl.Config = parseAnyConfig(pc, "configuration")
	parseFailure(pc, pl)
	pc.reject(pc.either("capabilityRestrictionConfig", "capability_restriction_config"),
		"wasmxds grants a filter every host capability")
	vmKey := pc.either("vmConfig", "vm_config")
	if pc.isMap() && pc.missing(vmKey) {
		pc.p.add(pc.line(vmKey), "%s: missing (the VM and its code)", pc.sub(vmKey))
	}
	vm := pc.p.mapping(pc.value(vmKey), pc.sub(vmKey))
	parseVMConfigMessage(vm, pl, dir)
	vm.finish()
}

// parseFailure reads fail_open and failure_policy (which wins).
func parseFailure(pc *fields, pl *Plugin) {
	if open, _ := boolField(pc, pc.either("failOpen", "fail_open")); open {
		pl.FailStrategy = FailOpen
	}
	key := pc.either("failurePolicy", "failure_policy")
	switch v, _ := pc.enum(key, "UNSPECIFIED", "FAIL_CLOSED", "FAIL_OPEN", "FAIL_RELOAD"); v {
	case "FAIL_CLOSED":
		pl.FailStrategy = FailClose
	case "FAIL_OPEN":
		pl.FailStrategy = FailOpen
	case "FAIL_RELOAD":
		pl.FailStrategy = FailReload
	}
}

// parseVMConfigMessage reads Envoy's VmConfig: vm_id (kept), runtime (V8,
// the one wasmxds runs), code (local filename or remote http_uri) and
// environment_variables.
func parseVMConfigMessage(vm *fields, pl *Plugin, dir string) {
	if id, n := vm.str(vm.either("vmId", "vm_id")); id != "" {
		pl.VMID = id
		if len(id) > 253 {
			vm.p.add(n, "%s: longer than 253 characters", vm.sub("vm_id"))
		}
	}
	if rt, n := vm.str("runtime"); rt != "" && rt != "envoy.wasm.runtime.v8" {
		vm.p.add(n, "%s: %q is not supported: wasmxds runs every module in V8 (envoy.wasm.runtime.v8)", vm.sub("runtime"), rt)
	}
	if pre, n := boolField(vm, vm.either("allowPrecompiled", "allow_precompiled")); pre {
		vm.p.warn(n, "%s: has no effect: wasmxds serves the module as it is", vm.sub("allow_precompiled"))
	}
	warnMoot(vm, vm.either("nackOnCodeCacheMiss", "nack_on_code_cache_miss"), "wasmxds sets it as its delivery needs")
	vm.reject("configuration", "the VM's own configuration (read in proxy_on_vm_start) cannot be set; "+
		"pass settings in the plugin's configuration")
	pl.Env = parseEnvMessage(vm)
	if vm.isMap() && vm.missing("code") {
		vm.p.add(vm.line("code"), "%s: missing (local filename or remote http_uri)", vm.sub("code"))
	}
	code := vm.p.mapping(vm.value("code"), vm.sub("code"))
	parseCode(code, pl, dir)
	code.finish()
	pl.PullPolicy = PullIfNotPresent
}

// parseEnvMessage reads environment_variables {host_env_keys, key_values}.
func parseEnvMessage(vm *fields) []EnvVar {
	ev := vm.p.mapping(vm.value(vm.either("environmentVariables", "environment_variables")), vm.sub("environment_variables"))
	defer ev.finish()
	var env []EnvVar
	hostKey := ev.either("hostEnvKeys", "host_env_keys")
	items, _ := ev.seq(hostKey)
	for _, it := range items {
		env = append(env, EnvVar{Name: it.Value, FromHost: true})
	}
	kv := ev.stringMap(ev.either("keyValues", "key_values"))
	for _, k := range slices.Sorted(maps.Keys(kv)) {
		env = append(env, EnvVar{Name: k, Value: kv[k]})
	}
	for _, e := range env {
		if !envNameRE.MatchString(e.Name) || len(e.Name) > 256 {
			ev.p.add(ev.node, "%s: %q is not a valid variable name (letters, digits and '_', not starting with a digit)", ev.path, e.Name)
		}
	}
	return env
}

// parseCode reads code: local {filename} becomes a file: module (relative
// names are relative to the spec's directory), remote {http_uri {uri},
// sha256} an http(s) module pinned by sha256.
func parseCode(code *fields, pl *Plugin, dir string) {
	switch {
	case code.has("local"):
		lf := code.p.mapping(code.value("local"), code.sub("local"))
		parseLocalCode(lf, pl, dir)
		lf.finish()
	case code.has("remote"):
		rf := code.p.mapping(code.value("remote"), code.sub("remote"))
		parseRemoteCode(rf, pl)
		rf.finish()
	case code.isMap():
		code.p.add(code.node, "%s: missing local or remote", code.path)
	}
}

func parseLocalCode(lf *fields, pl *Plugin, dir string) {
	for _, k := range []string{"inlineBytes", "inline_bytes", "inlineString", "inline_string", "environmentVariable", "environment_variable"} {
		lf.reject(k, "wasmxds serves modules from files, registries and URLs; use filename")
	}
	name, n := lf.str("filename")
	if name == "" {
		if lf.isMap() && len(lf.order) > 0 && !lf.has("filename") {
			return // the inline form, refused above
		}
		lf.p.add(orNode(n, lf.line("filename")), "%s: missing (the module's path)", lf.sub("filename"))
		return
	}
	raw := "file:" + filepath.ToSlash(name)
	if filepath.IsAbs(name) {
		raw = "file://" + filepath.ToSlash(name)
	}
	ref, err := modref.Parse(raw, dir)
	if err != nil {
		lf.p.add(n, "%s: %v", lf.sub("filename"), err)
		return
	}
	pl.URL = ref.String()
}

func parseRemoteCode(rf *fields, pl *Plugin) {
	hk := rf.either("httpUri", "http_uri")
	hf := rf.p.mapping(rf.value(hk), rf.sub(hk))
	uri, un := hf.str("uri")
	warnMoot(hf, "cluster", "wasmxds downloads the module itself and serves it to Envoy")
	warnMoot(hf, "timeout", "wasmxds downloads the module itself and serves it to Envoy")
	hf.finish()
	warnMoot(rf, rf.either("retryPolicy", "retry_policy"), "wasmxds downloads the module itself and retries on its own")
	ref, err := modref.Parse(uri, "")
	switch {
	case uri == "":
		rf.p.add(orNode(un, rf.line(hk)), "%s.uri: missing (the module's http(s) URL)", rf.sub(hk))
	case err != nil:
		rf.p.add(un, "%s.uri: %v", rf.sub(hk), err)
	case ref.Kind != modref.KindHTTP:
		rf.p.add(un, "%s.uri: %q is not an http(s) URL", rf.sub(hk), uri)
	default:
		pl.URL = ref.String()
	}
	if sum, sn := rf.str("sha256"); sum != "" {
		pin, err := modref.ParseSHA256(sum)
		if err != nil {
			rf.p.add(sn, "%s: %v", rf.sub("sha256"), err)
		}
		pl.SHA256 = pin
	}
}
