package bench

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/wasmxds/wasmxds/internal/catalog"
	"github.com/wasmxds/wasmxds/internal/fetcher"
	"github.com/wasmxds/wasmxds/internal/fetcher/fetchertest"
	"github.com/wasmxds/wasmxds/internal/xds"
)

// Fixture is the configuration every convergence run serves: three
// listeners, two clusters and six Wasm plugins, all selected by app=bench,
// so that every label group gets the same resources under its own
// snapshot. One plugin, in its own file, carries a marker in its
// pluginConfig; a change rewrites that file with a new marker.
type Fixture struct {
	ConfigDir  string
	ModulePath string
	ModuleHex  string // sha256 of the module the plugins use
	// PluginURL is every plugin's url; file:// of ModulePath unless
	// Retarget changed it.
	PluginURL string
}

// EditFile is the spec file a change rewrites.
const EditFile = "edit.yaml"

// basePlugins are the plugins that never change.
const basePlugins = 5

// NewFixture writes the module and the specs (with marker "initial")
// under dir.
func NewFixture(dir string) (*Fixture, error) {
	f := &Fixture{ConfigDir: filepath.Join(dir, "configs"), ModulePath: filepath.Join(dir, "modules", "bench.wasm")}
	for _, d := range []string{f.ConfigDir, filepath.Dir(f.ModulePath)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("fixture: %w", err)
		}
	}
	mod := fetchertest.ProxyWasm("bench")
	sum := sha256.Sum256(mod)
	f.ModuleHex = hex.EncodeToString(sum[:])
	f.PluginURL = "file://" + f.ModulePath
	if err := os.WriteFile(f.ModulePath, mod, 0o644); err != nil {
		return nil, fmt.Errorf("fixture: %w", err)
	}
	return f, f.write("initial")
}

func (f *Fixture) write(marker string) error {
	if err := writeAtomic(filepath.Join(f.ConfigDir, "base.yaml"), f.baseSpecs()); err != nil {
		return err
	}
	return f.Edit(marker)
}

// Retarget points every plugin at url, whose module is module, with a new
// marker in the edited plugin.
func (f *Fixture) Retarget(url string, module []byte, marker string) error {
	sum := sha256.Sum256(module)
	f.ModuleHex, f.PluginURL = hex.EncodeToString(sum[:]), url
	return f.write(marker)
}

func (f *Fixture) baseSpecs() string {
	var b strings.Builder
	for i := range 3 {
		fmt.Fprintf(&b, `apiVersion: wasmxds.dev/v1alpha1
kind: Listener
metadata: {name: ingress-%d}
spec:
  selector: {matchLabels: {app: bench}}
  port: %d
  routes:
  - match: {prefix: /api}
    cluster: backend-b
  - match: {prefix: /}
    cluster: backend-a
---
`, i, 10000+i)
	}
	for _, c := range []string{"a", "b"} {
		fmt.Fprintf(&b, "apiVersion: wasmxds.dev/v1alpha1\nkind: Cluster\nmetadata: {name: backend-%s}\n"+
			"spec:\n  endpoints: [\"127.0.0.1:18081\", \"127.0.0.1:18082\"]\n---\n", c)
	}
	for i := range basePlugins {
		fmt.Fprintf(&b, "%s---\n", f.plugin(fmt.Sprintf("plugin-%d", i), fmt.Sprintf(`{header: x-plugin-%d, value: v%d}`, i, i)))
	}
	return b.String()
}

func (f *Fixture) plugin(name, config string) string {
	return fmt.Sprintf(`apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: %s}
spec:
  selector: {matchLabels: {app: bench}}
  url: %s
  phase: STATS
  pluginConfig: %s
`, name, f.PluginURL, config)
}

func (f *Fixture) editSpec(marker string) string {
	return f.plugin("edited", fmt.Sprintf("{round: %q}", marker))
}

// Edit rewrites the edited plugin's file with a new marker, atomically as
// an editor saving it would.
func (f *Fixture) Edit(marker string) error {
	return writeAtomic(filepath.Join(f.ConfigDir, EditFile), f.editSpec(marker))
}

// Resources returns what wasmxds serves a group for the given marker: the
// specs loaded by the catalog and translated by xds, with the module
// resolved as the module server advertises it.
func (f *Fixture) Resources(marker, moduleServerURL string, delivery xds.Delivery) (*xds.Resources, error) {
	dir, err := os.MkdirTemp("", "bench-specs-")
	if err != nil {
		return nil, fmt.Errorf("resources: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "base.yaml"), []byte(f.baseSpecs()), 0o644); err != nil {
		return nil, fmt.Errorf("resources: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, EditFile), []byte(f.editSpec(marker)), 0o644); err != nil {
		return nil, fmt.Errorf("resources: %w", err)
	}
	state, err := catalog.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("resources: %w", err)
	}
	if len(state.Errors) > 0 {
		return nil, fmt.Errorf("resources: spec errors: %v", state.Errors)
	}
	mod := &xds.Module{SHA256: f.ModuleHex, URL: fetcher.ModuleURL(moduleServerURL, f.ModuleHex)}
	in := xds.Input{State: state, Modules: map[string]xds.PluginModule{}, ModuleServerURL: moduleServerURL, Delivery: delivery}
	for _, p := range state.Plugins {
		in.Modules[p.Name] = xds.PluginModule{Module: mod}
	}
	res, problems := xds.Translate(in, DefaultLabels(0))
	if len(problems) > 0 {
		return nil, fmt.Errorf("resources: translation problems: %v", problems)
	}
	return res, nil
}

func writeAtomic(path, content string) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return fmt.Errorf("write spec: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write spec: %w", err)
	}
	return nil
}
