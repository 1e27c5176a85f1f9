package catalog

import (
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// MaxLuaBytes caps a TrafficExtension's lua.inlineCode, as Istio does.
const MaxLuaBytes = 64 << 10

// parseTrafficExtension decodes an Istio TrafficExtension: WasmPlugin's
// selector, phase, priority and match, then exactly one of wasm (a Wasm
// module, WasmPlugin's module fields) and lua (inline code for Envoy's Lua
// HTTP filter).
func parseTrafficExtension(spec *fields, dir string) (*Plugin, pluginParse) {
	pl := newPlugin(spec)
	var pp pluginParse
	parsePlacement(spec, pl, "UNSPECIFIED")
	pl.Ports, pp.ports, pl.Targets, pp.targetsAt = parseMatch(spec)
	wasm, lua := spec.value("wasm"), spec.value("lua")
	switch {
	case wasm != nil && lua != nil:
		spec.p.add(spec.line("lua"), "spec: set exactly one of wasm and lua, not both")
	case wasm == nil && lua == nil:
		spec.p.add(spec.node, "spec: set exactly one of wasm (a Wasm module) and lua (inline Lua code)")
	case wasm != nil:
		wf := spec.p.mapping(wasm, "spec.wasm")
		if wf.isMap() {
			parseWasmModule(wf, pl, dir, &pp)
			parsePluginType(wf, pl, pp.targetsAt)
		}
		wf.finish()
	default:
		pl.Lua = parseLua(spec.p, lua)
	}
	return pl, pp
}

// parseLua reads lua.inlineCode: required, at most MaxLuaBytes of UTF-8.
// Envoy compiles it when the listener carrying it loads; a script it cannot
// compile is its refusal (a NACK in status), and the listener keeps its
// last accepted version.
func parseLua(p *problems, lua *yaml.Node) string {
	lf := p.mapping(lua, "spec.lua")
	defer lf.finish()
	code, n := lf.str("inlineCode")
	switch {
	case n == nil && !lf.missing("inlineCode"):
		return "" // not a string; already reported
	case strings.TrimSpace(code) == "":
		p.add(orNode(n, lf.line("inlineCode")), "spec.lua.inlineCode: missing (Lua code defining envoy_on_request and/or envoy_on_response)")
	case len(code) > MaxLuaBytes:
		p.add(n, "spec.lua.inlineCode: longer than %d KiB; put larger filters in a Wasm module", MaxLuaBytes>>10)
	case !utf8.ValidString(code):
		p.add(n, "spec.lua.inlineCode: not valid UTF-8")
	case !strings.Contains(code, "envoy_on_request") && !strings.Contains(code, "envoy_on_response"):
		p.add(n, "spec.lua.inlineCode: defines neither envoy_on_request nor envoy_on_response, so it would never run")
	default:
		return code
	}
	return ""
}
