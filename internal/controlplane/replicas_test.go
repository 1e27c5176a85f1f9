package controlplane

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/wasmxds/wasmxds/catalog"
	"github.com/wasmxds/wasmxds/xds"
)

// Replicas started at different moments resync at the same wall-clock
// moments.
func TestResyncsFallOnWallClockMultiples(t *testing.T) {
	every := 5 * time.Minute
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, started := range []time.Duration{0, time.Nanosecond, 17 * time.Second, 4*time.Minute + 59*time.Second} {
		now := base.Add(started)
		at := now.Add(nextResync(now, every))
		if want := base.Add(every); !at.Equal(want) {
			t.Errorf("started %v after 12:00: next resync at %v, want %v", started, at.Format(time.TimeOnly), want.Format(time.TimeOnly))
		}
	}
	// A timer firing on the boundary schedules the next one a whole period on.
	if d := nextResync(base, every); d != every {
		t.Errorf("on the boundary: next resync in %v, want %v", d, every)
	}
}

// A request for a digest this replica does not serve re-resolves Always
// plugins at once (another replica saw the tag move first), and a flood
// of such requests resolves once.
func TestUnknownModuleResyncsEarlyOnce(t *testing.T) {
	mods := &fakeModules{sums: map[string]string{"oci://r/a:latest": "aa", "oci://r/b:v1": "bb"}}
	c, sink := newTestController(t, mods, controllerOptions{Resync: time.Hour})
	c.onChange(plugins(plugin("a", "oci://r/a:latest", catalog.PullAlways), plugin("b", "oci://r/b:v1", catalog.PullIfNotPresent)))
	sink.until(t, "a and b resolved", func(in xds.Input) bool { return resolved("a")(in) && resolved("b")(in) })

	mods.mu.Lock()
	mods.sums["oci://r/a:latest"] = "cc" // the tag moved; another replica resolved it
	mods.requests = nil
	mods.mu.Unlock()
	for range 50 {
		c.unknownModule("cc")
	}
	sink.until(t, "the moved tag's module", func(in xds.Input) bool {
		return in.Modules["a"].Module != nil && in.Modules["a"].Module.SHA256 == "cc"
	})
	c.unknownModule("cc")
	mods.mu.Lock()
	defer mods.mu.Unlock()
	if len(mods.requests) != 1 || mods.requests[0].URL != "oci://r/a:latest" || !mods.requests[0].Always {
		t.Errorf("resolutions after 51 unknown-digest requests = %+v, want one, of the Always plugin", mods.requests)
	}
}

// A replica is not ready while a plugin's first module is being resolved:
// a load balancer would send it Envoys it could only give a configuration
// without that plugin.
func TestNotWarmUntilFirstResolutions(t *testing.T) {
	gate := make(chan struct{})
	mods := &fakeModules{sums: map[string]string{"oci://r/a:v1": "aa", "oci://r/b:v1": "bb"},
		cached: map[string]string{"oci://r/b:v1": "bb"}, gates: map[string]chan struct{}{"oci://r/a:v1": gate}}
	c, sink := newTestController(t, mods, controllerOptions{})
	if c.warm() {
		t.Fatal("warm before any desired state")
	}
	c.onChange(plugins(plugin("a", "oci://r/a:v1", catalog.PullIfNotPresent), plugin("b", "oci://r/b:v1", catalog.PullIfNotPresent)))
	sink.until(t, "the first push", func(in xds.Input) bool { return in.Modules["a"].Pending })
	if c.warm() {
		t.Error("warm while a's first resolution runs")
	}
	close(gate)
	sink.until(t, "a resolved", resolved("a"))
	if !c.warm() {
		t.Error("not warm once every first resolution finished")
	}
}

// A replica restarted after the spec moved to another module is not ready
// with the module its state file recorded: Envoys moving to it would go
// back to the module they left.
func TestNotWarmWithRestoredModuleOfAnotherReference(t *testing.T) {
	state := filepath.Join(t.TempDir(), "plugins.json")
	mods := &fakeModules{sums: map[string]string{"oci://r/a:v1": "aa", "oci://r/a:v2": "a2"}}
	c, sink := newTestController(t, mods, controllerOptions{StateFile: state})
	c.onChange(plugins(plugin("a", "oci://r/a:v1", catalog.PullIfNotPresent)))
	sink.until(t, "a resolved", resolved("a"))
	// The loop records the module in force after it pushes: one more push
	// means the state file has it.
	c.onChange(plugins(plugin("a", "oci://r/a:v1", catalog.PullIfNotPresent)))
	sink.until(t, "another push", func(xds.Input) bool { return true })

	gate := make(chan struct{})
	restarted := &fakeModules{sums: mods.sums, cached: map[string]string{"oci://r/a:v1": "aa"}, gates: map[string]chan struct{}{"oci://r/a:v2": gate}}
	c2, sink2 := newTestController(t, restarted, controllerOptions{StateFile: state})
	c2.onChange(plugins(plugin("a", "oci://r/a:v2", catalog.PullIfNotPresent)))
	sink2.until(t, "the first push, with the restored module", func(in xds.Input) bool {
		return in.Modules["a"].Pending && in.Modules["a"].Module != nil && in.Modules["a"].Module.SHA256 == "aa"
	})
	if c2.warm() {
		t.Error("warm while serving the restored v1 module for a spec naming v2")
	}
	close(gate)
	sink2.until(t, "v2", func(in xds.Input) bool { return in.Modules["a"].Module != nil && in.Modules["a"].Module.SHA256 == "a2" })
	if !c2.warm() {
		t.Error("not warm once v2 resolved")
	}
}
