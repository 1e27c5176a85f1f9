package xds

import "github.com/wasmxds/wasmxds/internal/catalog"

// Delivery says how Wasm filter configuration reaches Envoy.
type Delivery string

// Filter delivery modes.
const (
	// DeliveryLDS puts each Wasm filter's config inline in the listener.
	DeliveryLDS Delivery = "lds"
	// DeliveryECDS puts a config_discovery reference in the listener and the
	// filter config in a TypedExtensionConfig resource.
	DeliveryECDS Delivery = "ecds"
)

// Module is a verified module the module server holds and serves.
type Module struct {
	SHA256 string // the module's own sha256, 64 lowercase hex
	URL    string // where Envoy downloads it: <advertise-url>/modules/sha256/<hex>
}

// PluginModule is the resolution state of one plugin's module. Module is the
// module to push (the last good one when the newest resolution failed or is
// still running); Err says why the newest resolution failed, empty when it
// did not. Pending means a resolution is under way.
type PluginModule struct {
	Module  *Module
	Err     string
	Pending bool
	// Config, when set, replaces the plugin's catalog Config: its
	// pluginConfig with the values of its secretRefs filled in. It exists
	// only here, on the way to the Envoys the plugin selects.
	Config string
}

// Input is everything translation needs. Translation is a pure function of it
// and a node's labels.
type Input struct {
	State *catalog.State
	// Modules by plugin name. A plugin with no entry, or an entry with a nil
	// Module, is unresolved.
	Modules map[string]PluginModule
	// ModuleServerURL is the module server's advertised base URL, e.g.
	// http://127.0.0.1:18080. The module cluster is built from its host:port.
	ModuleServerURL string
	// ModuleTLS says how Envoys verify an https ModuleServerURL.
	ModuleTLS ModuleTLS
	Delivery  Delivery
	// Established names the listeners Envoys already run. While a
	// FAIL_CLOSE plugin's first module is pending, an established listener
	// keeps running without it (as it did before the plugin existed), and a
	// listener not yet established is held back until the module is ready
	// or its resolution failed.
	Established map[string]bool
	// Rollouts, by plugin name, send another module to the nodes of some
	// rollout buckets among those a plugin selects; the control plane
	// decides which (see Rollout). A rollout whose Module is nil reaches
	// nobody.
	Rollouts map[string]Rollout
}

// Problem is a resource translation dropped because it was invalid, reported
// against the spec that produced it.
type Problem struct {
	Source  catalog.Source // the spec document that produced the resource
	Kind    string         // Listener, Cluster or WasmPlugin
	Name    string         // the spec's name
	Message string
}
