package xds

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	netwasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/wasm/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wasmxds/wasmxds/internal/catalog"
	"github.com/wasmxds/wasmxds/internal/modref"
)

const (
	wasmRuntime = "envoy.wasm.runtime.v8"
	wasmTypeURL = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
	rbacTypeURL = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
	// Envoy retries a failed module download only once by default, and a
	// filter whose download failed stays failed (open or closed) until its
	// config changes, so downloads get several retries with backoff.
	moduleFetchTimeout   = 10 * time.Second
	moduleFetchRetries   = 5
	moduleFetchBaseDelay = 500 * time.Millisecond
	moduleFetchMaxDelay  = 5 * time.Second
	// unavailableSuffix names the filter that stands in for a fail-closed
	// plugin that cannot run.
	unavailableSuffix = ".unavailable"
	// reloadBackoff is the reload_config base_interval of a FAIL_RELOAD
	// plugin (Envoy's default, set explicitly): a worker whose VM failed
	// at run time makes a new VM once the failed one is older than a
	// random 1–1.5 times this, and fails closed until then. Envoy reads no
	// max_interval for reloads.
	reloadBackoff = time.Second
)

// pluginFilter is one plugin's translation, shared by every listener of the
// node that uses the plugin (its config does not depend on the listener).
// An HTTP plugin has filter, a NETWORK plugin network.
type pluginFilter struct {
	filter  *hcmv3.HttpFilter            // nil: left out of the chain
	network *listenerv3.Filter           // nil: left out of the chain
	ext     *corev3.TypedExtensionConfig // the ECDS resource filter refers to; nil inline
	err     error                        // the fail-closed stand-in could not be built
	// held: a plugin that does not fail open whose first module is still pending.
	held bool
}

// pluginFilter returns the plugin's filter, translating it once per call.
func (t *translator) pluginFilter(p catalog.Plugin) pluginFilter {
	if f, ok := t.filters[p.Name]; ok {
		return f
	}
	f := t.buildPluginFilter(p)
	t.filters[p.Name] = f
	return f
}

// buildPluginFilter translates a plugin. A plugin that cannot run (module
// unresolved, or its filter invalid) is handled like a failing module in
// Envoy: left out when FAIL_OPEN, replaced by a deny-all filter otherwise.
// An unresolved module is not a Problem; the caller reports module errors.
func (t *translator) buildPluginFilter(p catalog.Plugin) pluginFilter {
	if !p.HasModule() {
		f, err := luaFilter(p)
		if err != nil {
			t.problem(p.Source, kindWasmPlugin, p.Name, err)
			return unavailable(p)
		}
		return pluginFilter{filter: f}
	}
	pm := t.in.Modules[p.Name]
	if pm.Module == nil && pm.Pending && t.moduleOK {
		// Pending is not failed: nothing runs the plugin yet, so nothing
		// is taken away by waiting, while a deny-all would be an outage.
		return pluginFilter{held: p.FailStrategy != catalog.FailOpen}
	}
	if pm.Module == nil || !t.moduleOK {
		return unavailable(p)
	}
	if pm.Config != "" {
		p.Config = pm.Config
	}
	f, err := t.wasmFilter(p, *pm.Module)
	if err != nil {
		t.problem(p.Source, kindWasmPlugin, p.Name, err)
		return unavailable(p)
	}
	return f
}

func unavailable(p catalog.Plugin) pluginFilter {
	if p.FailStrategy == catalog.FailOpen {
		return pluginFilter{}
	}
	name := FilterNamePrefix + p.Name + unavailableSuffix
	if p.Type == catalog.PluginNetwork {
		f, err := denyAllNetworkFilter(name)
		return pluginFilter{network: f, err: err}
	}
	f, err := denyAllFilter(name)
	return pluginFilter{filter: f, err: err}
}

// denyAllFilter refuses every request with 403. It is always inline, never
// ECDS, so that it guards the listener from the first request on.
func denyAllFilter(name string) (*hcmv3.HttpFilter, error) {
	a, err := PackValid(denyAllRBAC())
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}}, nil
}

// denyAllRBAC refuses every request with 403.
func denyAllRBAC() *rbacfilterv3.RBAC {
	return &rbacfilterv3.RBAC{Rules: &rbacv3.RBAC{
		Action: rbacv3.RBAC_DENY,
		Policies: map[string]*rbacv3.Policy{"plugin-unavailable": {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
			Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}},
		}},
	}}
}

// wasmFilter builds the plugin's Wasm filter, inline or through ECDS.
func (t *translator) wasmFilter(p catalog.Plugin, m Module) (pluginFilter, error) {
	w, err := wasmConfig(p, m, t.in.Delivery == DeliveryECDS)
	if err != nil {
		return pluginFilter{}, err
	}
	var cfg *anypb.Any
	if p.Type == catalog.PluginNetwork {
		cfg, err = PackValid(&netwasmv3.Wasm{Config: w.Config})
	} else {
		cfg, err = PackValid(w)
	}
	if err != nil {
		return pluginFilter{}, err
	}
	name := FilterNamePrefix + p.Name
	if t.in.Delivery != DeliveryECDS {
		return inlineFilter(p, name, cfg), nil
	}
	name = ecdsName(p)
	ext := &corev3.TypedExtensionConfig{Name: name, TypedConfig: cfg}
	if err := ext.ValidateAll(); err != nil {
		return pluginFilter{}, fmt.Errorf("invalid extension config: %w", err)
	}
	def, err := standInFor(p.Type, p.FailStrategy)
	if err != nil {
		return pluginFilter{}, err
	}
	if p.Type == catalog.PluginNetwork {
		return pluginFilter{network: ecdsNetworkFilter(name, def), ext: ext}, nil
	}
	return pluginFilter{filter: ecdsFilter(name, def), ext: ext}, nil
}

func inlineFilter(p catalog.Plugin, name string, cfg *anypb.Any) pluginFilter {
	if p.Type == catalog.PluginNetwork {
		return pluginFilter{network: &listenerv3.Filter{Name: name, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: cfg}}}
	}
	return pluginFilter{filter: &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: cfg}}}
}

// ecdsName names a plugin's ECDS resource: the plugin alone, so that a new
// module is an ECDS-only update and never changes the listener. Envoy fetches
// the module of such an update because the filter sets
// nack_on_code_cache_miss (see wasmConfig).
func ecdsName(p catalog.Plugin) string {
	return FilterNamePrefix + p.Name
}

// EcdsPluginName returns the plugin an ECDS resource name stands for, and
// false for names wasmxds does not generate.
func EcdsPluginName(resourceName string) (string, bool) {
	name, ok := strings.CutPrefix(resourceName, FilterNamePrefix)
	return name, ok && name != "" && !strings.HasSuffix(name, unavailableSuffix)
}

// shortDigest is enough of a module digest to tell modules apart in names.
func shortDigest(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

// ecdsFilter refers to the TypedExtensionConfig of the same name, which every
// listener using the plugin shares.
//
// Its default_config is what Envoy does with a module it cannot run, per the
// plugin's failure policy: an RBAC filter that lets everything through
// (FAIL_OPEN) or denies everything (FAIL_CLOSE, FAIL_RELOAD). Envoy applies
// it until the plugin's first Wasm config is accepted: an Envoy that has not
// cached the module yet NACKs the first update and fetches the module in
// the background, and without a default the filter would answer every
// request with 500 meanwhile. The default depends only on the failure
// policy, so neither a pluginConfig edit nor a new module changes the
// listener.
func ecdsFilter(name string, def *anypb.Any) *hcmv3.HttpFilter {
	urls := []string{wasmTypeURL}
	if def != nil {
		urls = append(urls, rbacTypeURL)
	}
	return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_ConfigDiscovery{
		ConfigDiscovery: &corev3.ExtensionConfigSource{
			ConfigSource:  adsConfigSource(),
			DefaultConfig: def,
			TypeUrls:      urls,
		},
	}}
}

// standInFor is standIn for an HTTP plugin and networkStandIn for a NETWORK
// plugin.
func standInFor(pt catalog.PluginType, s catalog.FailStrategy) (*anypb.Any, error) {
	if pt == catalog.PluginNetwork {
		return networkStandIn(s)
	}
	return standIn(s)
}

// standIn is the RBAC config that stands in for a plugin that cannot run:
// allow-all when it fails open, deny-all otherwise.
func standIn(s catalog.FailStrategy) (*anypb.Any, error) {
	if s == catalog.FailOpen {
		return PackValid(&rbacfilterv3.RBAC{})
	}
	return PackValid(denyAllRBAC())
}

// wasmConfig is the plugin's Wasm filter config. With nackOnMiss (ECDS
// delivery) Envoy NACKs an update whose module it has not cached, keeps the
// filter it runs and downloads the module in the background; a later push
// of the same config then creates the VM at once from the cache, so a VM
// that fails to load or start is NACKed too, and an ACK means the filter
// runs. Inline in a listener (LDS), the listener's warming downloads the
// module instead, and a NACK would reject the whole listener update.
func wasmConfig(p catalog.Plugin, m Module, nackOnMiss bool) (*wasmfilterv3.Wasm, error) {
	code, err := remoteCode(m)
	if err != nil {
		return nil, err
	}
	env, err := envVars(p.Env)
	if err != nil {
		return nil, err
	}
	pc := &wasmv3.PluginConfig{
		Name:          p.Name,
		RootId:        p.RootID,
		FailurePolicy: failurePolicy(p.FailStrategy),
		Vm: &wasmv3.PluginConfig_VmConfig{VmConfig: &wasmv3.VmConfig{
			VmId:                 vmID(p, m),
			NackOnCodeCacheMiss:  nackOnMiss,
			Runtime:              wasmRuntime,
			Code:                 code,
			EnvironmentVariables: env,
		}},
	}
	if pc.FailurePolicy == wasmv3.FailurePolicy_FAIL_RELOAD {
		pc.ReloadConfig = &wasmv3.ReloadConfig{Backoff: &corev3.BackoffStrategy{
			BaseInterval: durationpb.New(reloadBackoff),
		}}
	}
	if p.Config != "" {
		pc.Configuration = &anypb.Any{}
		if err := anypb.MarshalFrom(pc.Configuration, wrapperspb.String(p.Config), stableMarshal); err != nil {
			return nil, fmt.Errorf("pluginConfig: %w", err)
		}
	}
	return &wasmfilterv3.Wasm{Config: pc}, nil
}

// failurePolicy maps the fail strategy to an explicit failure_policy,
// never UNSPECIFIED; anything else fails closed, which is also Envoy's and
// Istio's default.
func failurePolicy(s catalog.FailStrategy) wasmv3.FailurePolicy {
	switch s {
	case catalog.FailOpen:
		return wasmv3.FailurePolicy_FAIL_OPEN
	case catalog.FailReload:
		return wasmv3.FailurePolicy_FAIL_RELOAD
	}
	return wasmv3.FailurePolicy_FAIL_CLOSED
}

// vmID gives every plugin its own VM. Envoy shares one VM among filters with
// equal vm_id, VM configuration and code, so:
//   - no sharing across plugins keeps one plugin's crash from failing the
//     others (a failure policy applies to every plugin in the VM) and keeps
//     their environments apart;
//   - pluginConfig, root_id and the failure policy stay out of the id, so a
//     config-only edit reuses the running VM (Envoy only re-configures the
//     plugin);
//   - the module digest is in the id: with nack_on_code_cache_miss Envoy
//     only creates a VM from cached code and keys it by the code too, but
//     with the filter inline (DeliveryLDS) Envoy keys VMs for remote code
//     before the download, so with an unchanged id a new module would keep
//     running in the old VM;
//   - environment variables are read when a VM starts and are not part of
//     Envoy's VM key, so they are hashed into the id: an env edit must start
//     a new VM to take effect.
//
// A plugin with a VMID (the vm id an older manifest gave) has it lead the id
// in place of its name, so plugins that named one VM share it, as Envoy
// shared it before.
func vmID(p catalog.Plugin, m Module) string {
	id := cmp.Or(p.VMID, p.Name) + "." + shortDigest(m.SHA256)
	if len(p.Env) == 0 {
		return id
	}
	env := slices.Clone(p.Env)
	slices.SortFunc(env, func(a, b catalog.EnvVar) int { return cmp.Compare(a.Name, b.Name) })
	h := sha256.New()
	for _, e := range env {
		fmt.Fprintf(h, "%q=%q,%t\n", e.Name, e.Value, e.FromHost)
	}
	return id + "." + hex.EncodeToString(h.Sum(nil))[:12]
}

// envVars maps the VM environment. Envoy rejects the whole listener when a
// name appears twice, so duplicates are caught here and cost only the plugin.
func envVars(env []catalog.EnvVar) (*wasmv3.EnvironmentVariables, error) {
	if len(env) == 0 {
		return nil, nil
	}
	ev := &wasmv3.EnvironmentVariables{}
	seen := make(map[string]bool, len(env))
	for _, e := range env {
		if e.Name == "" {
			return nil, errors.New("environment variable with an empty name")
		}
		if seen[e.Name] {
			return nil, fmt.Errorf("environment variable %s is set twice", e.Name)
		}
		seen[e.Name] = true
		if e.FromHost {
			ev.HostEnvKeys = append(ev.HostEnvKeys, e.Name)
			continue
		}
		if ev.KeyValues == nil {
			ev.KeyValues = make(map[string]string)
		}
		ev.KeyValues[e.Name] = e.Value
	}
	return ev, nil
}

// remoteCode points Envoy at the module server. Envoy checks the download
// against sha256 and caches modules by it, so a malformed digest would make
// the plugin fail on every Envoy; it is rejected here instead.
func remoteCode(m Module) (*corev3.AsyncDataSource, error) {
	if !modref.ValidHex(m.SHA256) {
		return nil, fmt.Errorf("module sha256 %q is not 64 lowercase hex digits", m.SHA256)
	}
	if u, err := url.Parse(m.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("module URL %q is not an http(s) URL", m.URL)
	}
	return &corev3.AsyncDataSource{Specifier: &corev3.AsyncDataSource_Remote{Remote: &corev3.RemoteDataSource{
		HttpUri: &corev3.HttpUri{
			Uri:              m.URL,
			HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: ModuleClusterName},
			Timeout:          durationpb.New(moduleFetchTimeout),
		},
		Sha256: m.SHA256,
		RetryPolicy: &corev3.RetryPolicy{
			NumRetries: wrapperspb.UInt32(moduleFetchRetries),
			RetryBackOff: &corev3.BackoffStrategy{
				BaseInterval: durationpb.New(moduleFetchBaseDelay),
				MaxInterval:  durationpb.New(moduleFetchMaxDelay),
			},
		},
	}}}, nil
}
