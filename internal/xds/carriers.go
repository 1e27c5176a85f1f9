package xds

import (
	"github.com/wasmxds/wasmxds/internal/catalog"
)

// The one place that decides which listeners a node gets and which plugins
// each of them carries: translation builds filter chains from it, and the
// control plane reads runtime health per plugin from the listeners it
// names.

// nodeListeners returns the listeners whose selector matches the node's
// labels, in spec order.
func nodeListeners(all []catalog.Listener, labels map[string]string) []catalog.Listener {
	var out []catalog.Listener
	for _, l := range all {
		if catalog.Matches(l.Selector, labels) {
			out = append(out, l)
		}
	}
	return out
}

// pluginsOn returns the plugins of a node (selectPlugins, in chain order)
// that apply to listener l.
func pluginsOn(plugins []catalog.Plugin, l catalog.Listener) []catalog.Plugin {
	var out []catalog.Plugin
	for _, p := range plugins {
		if p.OnListener(l) {
			out = append(out, p)
		}
	}
	return out
}

// PluginListeners returns, per plugin, the HTTP listeners that carry it on
// a node with these labels: their request and 5xx counts are the plugin's
// runtime health on that node (Envoy names them http.<listener>.*, the
// listener's name being its stat prefix). TCP listeners are left out: they
// count no requests.
func PluginListeners(st *catalog.State, labels map[string]string) map[string][]string {
	out := map[string][]string{}
	if st == nil {
		return out
	}
	plugins := selectPlugins(st.Plugins, labels)
	for _, l := range nodeListeners(st.Listeners, labels) {
		if l.Protocol == catalog.ProtocolTCP {
			continue
		}
		for _, p := range pluginsOn(plugins, l) {
			out[p.Name] = append(out[p.Name], l.Name)
		}
	}
	return out
}
