package xds

import (
	"fmt"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"github.com/wasmxds/wasmxds/internal/catalog"
)

// The plan of a group's build: how each plugin's extension config is sent
// (fetched as a listener warms or as a swap, marked with a re-push attempt,
// or replaced with the last good config or a stand-in for a refused module).

// refusalStep is what happens to one extension config of a translation
// in one group (see planRefusalsLocked).
type refusalStep struct {
	nackOff bool                         // fetch the module as a listener warms, not with a cache-miss NACK
	attempt int                          // > 0: mark the config with this re-push attempt
	good    *corev3.TypedExtensionConfig // replace the config with the last good one
	standIn bool                         // replace the config with the failure policy's stand-in
}

// planRefusalsLocked decides, per extension config of tr, how the group
// gets it: re-pushed configs are marked with their attempt, and the config
// of a module a node of the group's label set refused is replaced with the
// plugin's last good config or, if it never ran there, with the stand-in
// its failure policy calls for. One refused module thus never holds up the
// other plugins, and Envoy is not asked again and again to start a VM that
// fails. A module that leaves the Input is no longer refused (see
// liftRefusalsLocked). It also resets a
// plugin's re-push count when its module changes. The key names the plan,
// so that groups with equal plans share the work of applying it.
func (s *Server) planRefusalsLocked(g *group, tr *translation) ([]refusalStep, string) {
	plan := make([]refusalStep, len(tr.entries))
	var key strings.Builder
	for i, entry := range tr.entries {
		name := tr.names[i]
		if name == "" {
			continue
		}
		if g.retryOf[name] != entry.sha {
			g.retryOf[name], g.retries[name] = entry.sha, 0
		}
		refused := s.refusedLocked(g.labelsKey, name, entry.sha)
		if sha, ok := g.unconfirmed[name]; ok && (sha != entry.sha || refused) {
			delete(g.unconfirmed, name)
			delete(g.confirming, name)
		}
		step := &plan[i]
		switch {
		case !refused:
			// A plugin's first module (or the one the group already
			// runs) is fetched the way a new listener warms: Envoy keeps
			// its previous listener until the module is loaded. A
			// cache-miss NACK here would end that warming and put the
			// failure policy's stand-in in front of traffic meanwhile
			// (403 for FAIL_CLOSE): an outage a healthy path never had.
			// Its confirmation is a swap (see confirm.go).
			step.nackOff = !swapping(g, name, entry.sha) && g.confirming[name] != entry.sha
			step.attempt = g.retries[name]
		default:
			// The module the group's nodes ran, else the one nodes of the
			// same translation ran, else the failure policy's stand-in.
			usable := func(sha string) bool { return !s.refusedLocked(g.labelsKey, name, sha) }
			if good, ok := g.lastGood[name].newest(usable); ok {
				step.good = good.ext
			} else if good, ok := s.familyGood[g.family][name].newest(usable); ok {
				step.good = good.ext
			} else {
				step.standIn = true
			}
		}
		fmt.Fprintf(&key, "%d:%t:%d:%p:%t;", i, step.nackOff, step.attempt, step.good, step.standIn)
	}
	return plan, key.String()
}

// applyPlan returns exts with plan applied; exts itself is left as it is.
func applyPlan(exts []*corev3.TypedExtensionConfig, plan []refusalStep) []*corev3.TypedExtensionConfig {
	out := slices.Clone(exts)
	for i, step := range plan {
		e := out[i]
		switch {
		case step.good != nil:
			out[i] = step.good
		case step.standIn:
			if alt := standInExtension(e); alt != nil {
				out[i] = alt
			}
		default:
			if step.nackOff {
				e = withNackOnMiss(e, false)
			}
			if step.attempt > 0 {
				e = withAttempt(e, step.attempt)
			}
			out[i] = e
		}
	}
	return out
}

// standInExtension is the failure-policy stand-in for a Wasm extension
// config, nil if it cannot be built.
func standInExtension(e *corev3.TypedExtensionConfig) *corev3.TypedExtensionConfig {
	pc := wasmPluginConfig(e.GetTypedConfig())
	if pc == nil {
		return nil
	}
	strategy := catalog.FailClose
	if pc.GetFailurePolicy() == wasmv3.FailurePolicy_FAIL_OPEN {
		strategy = catalog.FailOpen
	}
	cfg, err := standInFor(wasmPluginType(e.GetTypedConfig()), strategy)
	if err != nil {
		return nil
	}
	return &corev3.TypedExtensionConfig{Name: e.Name, TypedConfig: cfg}
}

// swapping reports whether the group runs another module of plugin name
// than sha: only then does a cache-miss NACK keep the running filter
// serving while Envoy fetches the new module in the background.
func swapping(g *group, name, sha string) bool {
	if good, ok := g.lastGood[name].newest(func(string) bool { return true }); ok {
		return good.sha != sha
	}
	// The first module, ACKed after its download, may still wait for its
	// confirmation: the listener warmed with it all the same, and Envoy
	// fetches another module, outside a listener's warming, only on a
	// cache-miss NACK. Sent as a first module, it would be ACKed and never
	// fetched.
	if first, ok := g.warmed[name]; ok && first != sha {
		return true
	}
	// A node that came with the plugin running (say, from another
	// replica) swaps the module it runs for any other: Envoy must confirm
	// the new one. Its listener is warm: sent as a first module, the new
	// one would be ACKed and never fetched.
	held, ok := g.held[name]
	return ok && held != sha
}

// withNackOnMiss sets the Wasm config's nack_on_code_cache_miss.
func withNackOnMiss(e *corev3.TypedExtensionConfig, nack bool) *corev3.TypedExtensionConfig {
	pc := wasmPluginConfig(e.GetTypedConfig())
	if pc.GetVmConfig() == nil || pc.GetVmConfig().GetNackOnCodeCacheMiss() == nack {
		return e
	}
	pc.GetVmConfig().NackOnCodeCacheMiss = nack
	cfg, err := repackWasm(e.GetTypedConfig(), pc)
	if err != nil {
		return e
	}
	return &corev3.TypedExtensionConfig{Name: e.Name, TypedConfig: cfg}
}

// withAttempt marks a re-pushed Wasm config with its attempt number in the
// module URL's query, which the module server ignores. It must differ from
// the config NACKed before: Envoy records a config it rejects as its
// latest, so the same config sent again is ACKed without a VM being made.
// A different config also gets a new version, so SotW (which parks a NACKed
// version) and delta (which does not resend a resource version) send it.
// Envoy caches code by sha256, so the URL change downloads nothing.
func withAttempt(e *corev3.TypedExtensionConfig, attempt int) *corev3.TypedExtensionConfig {
	pc := wasmPluginConfig(e.GetTypedConfig())
	uri := pc.GetVmConfig().GetCode().GetRemote().GetHttpUri()
	if uri == nil {
		return e
	}
	base, _, _ := strings.Cut(uri.Uri, "?")
	uri.Uri = fmt.Sprintf("%s?attempt=%d", base, attempt)
	cfg, err := repackWasm(e.GetTypedConfig(), pc)
	if err != nil {
		return e
	}
	return &corev3.TypedExtensionConfig{Name: e.Name, TypedConfig: cfg}
}
