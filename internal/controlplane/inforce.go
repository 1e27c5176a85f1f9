package controlplane

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"

	"github.com/wasmxds/wasmxds/internal/atomicfile"
)

// inForce is the module a plugin is served with, as recorded in StateFile.
type inForce struct {
	SHA256 string `json:"sha256"`
	URL    string `json:"url"` // the reference it was resolved from
}

// stateFile is StateFile's document.
type stateFile struct {
	Plugins map[string]inForce `json:"plugins"`
	// HaltedRollouts keeps halted rollouts halted across restarts: a
	// restart is not an edit of the rollout.
	HaltedRollouts map[string]halt `json:"haltedRollouts,omitempty"`
	// RolloutSteps keeps a stepped rollout at the step it reached across
	// restarts, for the same arming and module.
	RolloutSteps map[string]savedStep `json:"rolloutSteps,omitempty"`
}

// restore seeds each recorded plugin with its module in force, if the
// cache still holds it. The plugin's reference is resolved again as usual;
// should that fail (say, the registry is down), the restored module keeps
// serving, as it did before the restart.
func (c *controller) restore() {
	if c.opts.StateFile == "" {
		return
	}
	b, err := os.ReadFile(c.opts.StateFile)
	if os.IsNotExist(err) {
		return
	}
	var doc stateFile
	if err == nil {
		err = json.Unmarshal(b, &doc)
	}
	if err != nil {
		c.log.Warn("modules in force not restored", "file", c.opts.StateFile, "error", err)
		return
	}
	for name, f := range doc.Plugins {
		m, ok := c.opts.Modules.CachedModule(f.SHA256)
		if !ok {
			c.log.Warn("module in force left the cache", "plugin", name, "sha256", f.SHA256, "url", f.URL)
			continue
		}
		m.URL = f.URL
		c.res[name] = &resolution{module: &m}
		c.inForce[name] = f
	}
	c.rollouts.restore(doc.HaltedRollouts, doc.RolloutSteps)
	maps.Copy(c.savedHalts, doc.HaltedRollouts)
	for name, st := range doc.RolloutSteps {
		if st.Step > 0 {
			c.savedSteps[name] = st
		}
	}
	c.log.Info("modules in force restored", "file", c.opts.StateFile, "plugins", len(c.res))
}

// inForceLocked is every plugin's module in force.
func (c *controller) inForceLocked() map[string]inForce {
	out := make(map[string]inForce, len(c.res))
	for name, r := range c.res {
		if r.module != nil {
			out[name] = inForce{SHA256: r.module.SHA256, URL: r.module.URL}
		}
	}
	return out
}

// persist writes the modules in force, the halts and the steps reached
// when they changed. Only the loop calls it. A failed write is logged: the
// modules keep being served, only a restart with registries down would
// lose them.
func (c *controller) persist(forced map[string]inForce, halted map[string]halt, steps map[string]savedStep) {
	if c.opts.StateFile == "" ||
		(maps.Equal(forced, c.inForce) && maps.Equal(halted, c.savedHalts) && maps.Equal(steps, c.savedSteps)) {
		return
	}
	doc := stateFile{Plugins: forced, HaltedRollouts: halted, RolloutSteps: steps}
	if err := writeJSONAtomic(c.opts.StateFile, doc); err != nil {
		c.log.Warn("modules in force not recorded", "file", c.opts.StateFile, "error", err)
		return
	}
	c.inForce, c.savedHalts, c.savedSteps = forced, halted, steps
}

// writeJSONAtomic replaces path with v's JSON so that a crash leaves either
// the old or the new document, never a torn one.
func writeJSONAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return atomicfile.WriteFile(path, b, 0o600)
}
