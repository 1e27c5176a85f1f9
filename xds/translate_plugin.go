package xds

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/wasmxds/wasmxds/catalog"
	"github.com/wasmxds/wasmxds/internal/modref"
)

const (
	wasmRuntime = "envoy.wasm.runtime.v8"
	wasmTypeURL = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
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
)

// pluginFilter is one plugin's translation, shared by every listener of the
// node that uses the plugin (its config does not depend on the listener).
type pluginFilter struct {
	filter *hcmv3.HttpFilter            // nil: left out of the chain
	ext    *corev3.TypedExtensionConfig // the ECDS resource filter refers to; nil inline
	err    error                        // the fail-closed stand-in could not be built
	// held: a FAIL_CLOSE plugin whose first module is still pending.
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
	pm := t.in.Modules[p.Name]
	if pm.Module == nil && pm.Pending && t.moduleOK {
		// Pending is not failed: nothing runs the plugin yet, so nothing
		// is taken away by waiting, while a deny-all would be an outage.
		return pluginFilter{held: p.FailStrategy != catalog.FailOpen}
	}
	if pm.Module == nil || !t.moduleOK {
		return unavailable(p)
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
	f, err := denyAllFilter(FilterNamePrefix + p.Name + unavailableSuffix)
	return pluginFilter{filter: f, err: err}
}

// denyAllFilter refuses every request with 403. It is always inline, never
// ECDS, so that it guards the listener from the first request on.
func denyAllFilter(name string) (*hcmv3.HttpFilter, error) {
	rbac := &rbacfilterv3.RBAC{Rules: &rbacv3.RBAC{
		Action: rbacv3.RBAC_DENY,
		Policies: map[string]*rbacv3.Policy{"plugin-unavailable": {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
			Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}},
		}},
	}}
	a, err := PackValid(rbac)
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}}, nil
}

// wasmFilter builds the plugin's Wasm filter, inline or through ECDS.
func (t *translator) wasmFilter(p catalog.Plugin, m Module) (pluginFilter, error) {
	w, err := wasmConfig(p, m)
	if err != nil {
		return pluginFilter{}, err
	}
	cfg, err := PackValid(w)
	if err != nil {
		return pluginFilter{}, err
	}
	name := FilterNamePrefix + p.Name
	if t.in.Delivery != DeliveryECDS {
		return pluginFilter{filter: &hcmv3.HttpFilter{
			Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: cfg},
		}}, nil
	}
	name = ecdsName(p, m)
	ext := &corev3.TypedExtensionConfig{Name: name, TypedConfig: cfg}
	if err := ext.ValidateAll(); err != nil {
		return pluginFilter{}, fmt.Errorf("invalid extension config: %w", err)
	}
	return pluginFilter{filter: ecdsFilter(name), ext: ext}, nil
}

// ecdsName names a plugin's ECDS resource after the plugin and its module.
// Envoy applies an ECDS update to an existing filter without fetching new
// remote code: an update that only swaps the module leaves the filter with no
// VM at all. With the module digest in the name, a new module changes the
// listener, which warms (and downloads the module) before it takes traffic,
// while a pluginConfig edit stays an ECDS-only update with no listener drain.
func ecdsName(p catalog.Plugin, m Module) string {
	return FilterNamePrefix + p.Name + "." + shortDigest(m.SHA256)
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
// It has no default_config on purpose. The only usable default would be the
// Wasm config itself, which would put the filter config back into the
// listener, so every filter edit would drain the listener again. Without one,
// a new listener warms until its filter configs arrive (they are in the same
// snapshot, on the same ADS stream), and a filter whose config never arrives
// answers 500: it fails closed rather than letting traffic pass unfiltered.
//
// Envoy does not warm ECDS updates: a module an Envoy has not cached yet is
// downloaded after the update is applied, and until the download completes
// the plugin behaves as its failure policy says.
func ecdsFilter(name string) *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_ConfigDiscovery{
		ConfigDiscovery: &corev3.ExtensionConfigSource{
			ConfigSource: adsConfigSource(),
			TypeUrls:     []string{wasmTypeURL},
		},
	}}
}

func wasmConfig(p catalog.Plugin, m Module) (*wasmfilterv3.Wasm, error) {
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
			Runtime:              wasmRuntime,
			Code:                 code,
			EnvironmentVariables: env,
		}},
	}
	if p.Config != "" {
		pc.Configuration = &anypb.Any{}
		if err := anypb.MarshalFrom(pc.Configuration, wrapperspb.String(p.Config), stableMarshal); err != nil {
			return nil, fmt.Errorf("pluginConfig: %w", err)
		}
	}
	return &wasmfilterv3.Wasm{Config: pc}, nil
}

// failurePolicy maps the fail strategy; anything but FAIL_OPEN fails closed,
// which is also Envoy's and Istio's default.
func failurePolicy(s catalog.FailStrategy) wasmv3.FailurePolicy {
	if s == catalog.FailOpen {
		return wasmv3.FailurePolicy_FAIL_OPEN
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
//   - the module digest is in the id: Envoy keys VMs for remote code before
//     the code is downloaded, so with an unchanged id a new module would
//     keep running in the old VM;
//   - environment variables are read when a VM starts and are not part of
//     Envoy's VM key, so they are hashed into the id: an env edit must start
//     a new VM to take effect.
func vmID(p catalog.Plugin, m Module) string {
	id := p.Name + "." + shortDigest(m.SHA256)
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
