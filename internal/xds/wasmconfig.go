package xds

import (
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	netwasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/wasm/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/wasmxds/wasmxds/internal/catalog"
)

// wasmPluginConfig returns the plugin config inside an HTTP or network Wasm
// filter config, and nil for anything else (a stand-in). Module delivery
// reads and re-marks both kinds alike.
func wasmPluginConfig(a *anypb.Any) *wasmv3.PluginConfig {
	switch a.GetTypeUrl() {
	case wasmTypeURL:
		w := &wasmfilterv3.Wasm{}
		if a.UnmarshalTo(w) == nil {
			return w.GetConfig()
		}
	case netWasmTypeURL:
		w := &netwasmv3.Wasm{}
		if a.UnmarshalTo(w) == nil {
			return w.GetConfig()
		}
	}
	return nil
}

// repackWasm packs pc into a filter config of the same kind as a.
func repackWasm(a *anypb.Any, pc *wasmv3.PluginConfig) (*anypb.Any, error) {
	if a.GetTypeUrl() == netWasmTypeURL {
		return PackValid(&netwasmv3.Wasm{Config: pc})
	}
	return PackValid(&wasmfilterv3.Wasm{Config: pc})
}

// wasmPluginType is the plugin type of a Wasm filter config.
func wasmPluginType(a *anypb.Any) catalog.PluginType {
	if a.GetTypeUrl() == netWasmTypeURL {
		return catalog.PluginNetwork
	}
	return catalog.PluginHTTP
}
