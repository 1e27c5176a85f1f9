package controlplane

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wasmxds/wasmxds/internal/catalog"
	"github.com/wasmxds/wasmxds/internal/fetcher/fetchertest"
	"github.com/wasmxds/wasmxds/internal/xds"
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
	if !c.warm() {
		t.Fatal("not warm with every module resolved")
	}
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

// Two replicas on one spec directory with an Always plugin. The module
// behind its reference changes and replica A resolves it first (it
// resynced, B did not yet): an Envoy told by A downloads from B through
// the shared address. B tells it to retry, resolves at once, and serves
// the module; it never answers a bare 404.
func TestReplicaServesModuleAnotherReplicaResolvedFirst(t *testing.T) {
	root := t.TempDir()
	dir, modPath := filepath.Join(root, "configs"), filepath.Join(root, "filter.wasm")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, modPath, fetchertest.ProxyWasm("v1"))
	writeFile(t, filepath.Join(dir, "plugin.yaml"), []byte(fmt.Sprintf(pluginSpec, modPath, "x-replica")+"  imagePullPolicy: Always\n"))
	var cps []*ControlPlane
	for _, name := range []string{"a", "b"} {
		cp := newTestCP(t, Options{ConfigDir: dir, CacheDir: filepath.Join(root, "cache-"+name), Delivery: xds.DeliveryLDS})
		runCP(t, cp)
		cps = append(cps, cp)
	}
	a, b := cps[0], cps[1]
	v1 := sha256.Sum256(fetchertest.ProxyWasm("v1"))
	for _, cp := range cps {
		waitUntil(t, "ready", func() bool { return cp.notReady() == nil })
		if code := moduleStatus(t, cp, hex.EncodeToString(v1[:])); code != http.StatusOK {
			t.Fatalf("a ready replica answers %d for v1", code)
		}
	}

	v2mod := fetchertest.ProxyWasm("v2")
	writeFile(t, modPath, v2mod)
	sum := sha256.Sum256(v2mod)
	v2 := hex.EncodeToString(sum[:])
	a.ctrl.resyncSoon("test: A's resync came first")
	waitUntil(t, "A serving v2", func() bool { return moduleStatus(t, a, v2) == http.StatusOK })

	resp, err := http.Get(b.AdvertiseURL() + "/modules/sha256/" + v2)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("B asked for v2 before resolving it: %s, Retry-After %q; want 503 with Retry-After",
			resp.Status, resp.Header.Get("Retry-After"))
	}
	waitUntil(t, "B serving v2", func() bool { return moduleStatus(t, b, v2) == http.StatusOK })
}

func moduleStatus(t *testing.T, cp *ControlPlane, sha string) int {
	t.Helper()
	resp, err := http.Get(cp.AdvertiseURL() + "/modules/sha256/" + sha)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
