package xds

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	luav3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/lua/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/wasmxds/wasmxds/internal/catalog"
)

// luaFilter is a Lua plugin's filter: Envoy's own Lua HTTP filter running
// the plugin's inline code, at the plugin's place in the chain.
//
// It is always inline in the listener, whatever the delivery: ECDS exists
// so that a module download neither re-warms listeners nor fails a filter
// while it runs, and Lua code has nothing to download. An edit of the code
// is a listener update, and code Envoy cannot compile is refused with the
// listener (a NACK; Envoy keeps the listener it runs).
func luaFilter(p catalog.Plugin) (*hcmv3.HttpFilter, error) {
	cfg, err := PackValid(&luav3.Lua{DefaultSourceCode: &corev3.DataSource{
		Specifier: &corev3.DataSource_InlineString{InlineString: p.Lua},
	}})
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpFilter{Name: FilterNamePrefix + p.Name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: cfg}}, nil
}
