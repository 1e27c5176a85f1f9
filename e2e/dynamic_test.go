package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

const pluginFile = "plugin.yaml"

// TestRemoveSpecRemovesBehaviourAndAddingBackRestoresIt: deleting a plugin's
// spec file takes the filter out; writing it again puts it back.
func TestRemoveSpecRemovesBehaviourAndAddingBackRestoresIt(t *testing.T) {
	requireFull(t)
	t.Parallel()
	spec := plugin{name: "removable", app: "remove", url: oci(refAddHeader),
		config: addHeader("x-removable", "here")}.spec()
	f := newSingle(t, serverOptions{}, "remove", map[string]string{pluginFile: spec})
	f.waitFor(t, expectHeader(f.port, "x-removable", "here"))

	f.srv.removeSpec(pluginFile)
	f.waitFor(t, expectHeader(f.port, "x-removable", ""))

	f.srv.writeSpec(pluginFile, spec)
	f.waitFor(t, expectHeader(f.port, "x-removable", "here"))
}

// TestSHA256PinMismatchRejectsPluginAndKeepsPreviousState: a pin that does not
// match what the registry serves is reported in /debug/status and the last
// good module stays in force.
func TestSHA256PinMismatchRejectsPluginAndKeepsPreviousState(t *testing.T) {
	requireFull(t)
	t.Parallel()
	p := plugin{name: "pinned", app: "pin", url: oci(refAddHeader), config: addHeader("x-pinned", "v1")}
	f := newSingle(t, serverOptions{}, "pin", map[string]string{pluginFile: p.spec()})
	f.waitFor(t, expectHeader(f.port, "x-pinned", "v1"))

	p.sha256 = strings.Repeat("0", 64)
	f.srv.writeSpec(pluginFile, p.spec())
	var served string
	eventually(t, applyTimeout, pluginError(f.srv, "pinned", &served, "sha256"))
	if want := moduleSHA256(t, "add-header"); served != want {
		t.Errorf("after the bad pin the plugin is served with module %q, want the previous %q", served, want)
	}
	holds(t, "after the bad pin", expectHeader(f.port, "x-pinned", "v1"))

	// The right pin (the module's own digest) is accepted and the error clears.
	p.sha256 = moduleSHA256(t, "add-header")
	p.config = addHeader("x-pinned", "v2")
	f.srv.writeSpec(pluginFile, p.spec())
	f.waitFor(t, expectHeader(f.port, "x-pinned", "v2"))
}

// TestInvalidYAMLEditKeepsLastGoodConfigAndFixApplies: a broken file does not
// take anything away; once fixed, its new content applies.
func TestInvalidYAMLEditKeepsLastGoodConfigAndFixApplies(t *testing.T) {
	requireFull(t)
	t.Parallel()
	p := plugin{name: "edited", app: "yaml", url: oci(refAddHeader), config: addHeader("x-edited", "one")}
	f := newSingle(t, serverOptions{}, "yaml", map[string]string{pluginFile: p.spec()})
	f.waitFor(t, expectHeader(f.port, "x-edited", "one"))

	broken := strings.Replace(plugin{name: "edited", app: "yaml", url: oci(refAddHeader),
		config: addHeader("x-edited", "broken")}.spec(), "pluginConfig:", "pluginConfig: {", 1)
	f.srv.writeSpec(pluginFile, broken)
	eventually(t, applyTimeout, func() error {
		st, err := debugStatus(f.srv)
		if err != nil {
			return err
		}
		for _, e := range st.SpecErrors {
			if strings.HasPrefix(e, pluginFile+":") {
				return nil
			}
		}
		return fmt.Errorf("/debug/status specErrors do not report the broken %s: %q", pluginFile, st.SpecErrors)
	})
	holds(t, "after the broken edit", expectHeader(f.port, "x-edited", "one"))

	p.config = addHeader("x-edited", "two")
	f.srv.writeSpec(pluginFile, p.spec())
	f.waitFor(t, expectHeader(f.port, "x-edited", "two"))
}

// TestUnfetchableModuleFailStrategy: a module that cannot be fetched refuses
// traffic with FAIL_CLOSE and is skipped with FAIL_OPEN.
func TestUnfetchableModuleFailStrategy(t *testing.T) {
	requireFull(t)
	t.Parallel()
	f := newSingle(t, serverOptions{}, "unfetchable", nil)
	f.waitFor(t, expectHeader(f.port, "x-echo-user-agent", "wasmxds-e2e"))

	p := plugin{name: "missing", app: "unfetchable", url: oci(refNeverPushed), failStrategy: "FAIL_CLOSE",
		config: addHeader("x-missing", "never")}
	f.srv.writeSpec(pluginFile, p.spec())
	var refused string
	f.waitFor(t, func() error {
		r, err := get(f.port, "/")
		if err == nil && r.status == http.StatusOK {
			return fmt.Errorf("FAIL_CLOSE plugin with no module: request passed: %v", r.header)
		}
		refused = fmt.Sprintf("%d %q %v", r.status, r.body, err)
		return nil
	})
	t.Logf("FAIL_CLOSE with no module: refused with %s", refused)

	p.failStrategy = "FAIL_OPEN"
	f.srv.writeSpec(pluginFile, p.spec())
	f.waitFor(t, expectHeader(f.port, "x-missing", ""))
}
