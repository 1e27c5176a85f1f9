package e2e

// The fault suite: registries that are slow, hang, are down, answer 503 or
// cut a blob off (a fault-injecting proxy in front of the real registry),
// wasmxds killed with -9, a corrupt cache file, a config directory deleted,
// an unwritable cache. Each test asserts what a user sees: status codes
// through a real Envoy, /readyz, /debug/status and `wasmxds status`.

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wasmxds/wasmxds/internal/faultproxy"
	"github.com/wasmxds/wasmxds/internal/testproc"
)

// faultyRegistry is the shared registry seen through a fault-injecting
// proxy: specs name the proxy's address.
type faultyRegistry struct {
	*faultproxy.Proxy
}

// startFaultyRegistry puts a proxy, passing everything, in front of the
// shared registry.
func startFaultyRegistry(t *testing.T) faultyRegistry {
	t.Helper()
	p, err := faultproxy.Start("http://" + shared.registry.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return faultyRegistry{p}
}

// url is the oci:// URL of repoTag through the proxy.
func (r faultyRegistry) url(repoTag string) string { return "oci://" + r.Addr() + "/" + repoTag }

// pluginReport is a plugin's entry in /debug/status.
type pluginReport struct {
	Name         string     `json:"name"`
	URL          string     `json:"url"`
	State        string     `json:"state"`
	PendingSince *time.Time `json:"pendingSince"`
	SHA256       string     `json:"sha256"`
	Error        string     `json:"error"`
}

// faultStatus is the part of /debug/status the fault scenarios read.
type faultStatus struct {
	ConfigDirError string         `json:"configDirError"`
	CacheDegraded  string         `json:"cacheDegraded"`
	Plugins        []pluginReport `json:"plugins"`
	ModuleProblems []struct {
		SHA256     string   `json:"sha256"`
		Refs       []string `json:"refs"`
		Error      string   `json:"error"`
		Quarantine string   `json:"quarantine"`
	} `json:"moduleProblems"`
}

func faultStatusOf(s *server) (faultStatus, error) {
	var st faultStatus
	err := s.get("/debug/status", &st)
	return st, err
}

// pluginOf returns plugin name from /debug/status.
func pluginOf(s *server, name string) (pluginReport, error) {
	st, err := faultStatusOf(s)
	if err != nil {
		return pluginReport{}, err
	}
	for _, p := range st.Plugins {
		if p.Name == name {
			return p, nil
		}
	}
	return pluginReport{}, fmt.Errorf("plugin %s not in /debug/status: %+v", name, st.Plugins)
}

// pluginState polls until plugin name is in state.
func pluginState(s *server, name, state string) func() error {
	return func() error {
		p, err := pluginOf(s, name)
		if err == nil && p.State != state {
			err = fmt.Errorf("plugin %s is %s (error %q), want %s", name, p.State, p.Error, state)
		}
		return err
	}
}

// refused reports whether err is a refused connection: nothing listens.
func refused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// TestFaultPendingIsNotFailed: a new FAIL_CLOSE plugin whose registry takes
// 8 s to send the module is pending, not failed. The listener Envoy already
// runs keeps answering 200 without it (never 403), a new listener that needs
// it is not there at all (connection refused: never 403, never an unguarded
// 200), and once the pull is done the filter applies on both, with no 403
// in between in either delivery mode: a plugin's first module warms with
// its listener, so Envoy keeps the previous listener until the VM runs.
func TestFaultPendingIsNotFailed(t *testing.T) {
	requireFull(t)
	t.Parallel()
	for _, mode := range []string{"ecds", "lds"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			pendingIsNotFailed(t, mode)
		})
	}
}

func pendingIsNotFailed(t *testing.T, mode string) {
	reg := startFaultyRegistry(t)
	app := "pending-" + mode
	f := newSingle(t, serverOptions{delivery: mode}, app, nil)
	f.waitFor(t, expectHeader(f.port, "x-echo-user-agent", "wasmxds-e2e"))

	reg.Set(faultproxy.Fault{Mode: faultproxy.Slow, Delay: 8 * time.Second, Match: "/blobs/"})
	port2 := freePort(t)
	f.srv.writeSpec("pending.yaml", docs(listenerSpec(app+"-new", app, port2, app+"-upstream"),
		plugin{name: "slow", app: app, url: reg.url(refAddHeader), failStrategy: "FAIL_CLOSE",
			config: addHeader("x-slow", "arrived")}.spec()))
	eventually(t, applyTimeout, pluginState(f.srv, "slow", "pending"))
	p, err := pluginOf(f.srv, "slow")
	if err != nil || p.PendingSince == nil {
		t.Fatalf("pending plugin without pendingSince: %+v %v", p, err)
	}
	out, err := f.srv.statusText()
	if err != nil || !strings.Contains(out, "pending") {
		t.Errorf("`wasmxds status` does not show the plugin pending: %v\n%s", err, out)
	}

	checked := whilePending(t, f.srv, "slow", func() error {
		r, err := get(f.port, "/")
		if err != nil || r.status != http.StatusOK || r.header.Get("x-slow") != "" {
			return fmt.Errorf("established listener while pending: status %d, x-slow %q, err %v; want 200 without the filter",
				r.status, r.header.Get("x-slow"), err)
		}
		if r, err := get(port2, "/"); !refused(err) {
			return fmt.Errorf("new listener while pending: status %d, err %v; want connection refused", r.status, err)
		}
		return nil
	})
	t.Logf("%s: %d checks while pending: 200 on the established listener, refused on the new one", mode, checked)
	if checked == 0 {
		t.Fatal("the module arrived before anything was checked: the registry was not slow")
	}
	denied := untilFilterApplies(t, f, port2)
	for i, name := range []string{"established", "new"} {
		d := denied[i]
		if d.n == 0 {
			continue
		}
		msg := fmt.Sprintf("%s: the %s listener answered 403 %d times over %v while Envoy created the plugin's VM",
			mode, name, d.n, d.last.Sub(d.first))
		t.Error(msg) // the listener warms with its module: nothing to deny
	}
}

// denials are the 403s a listener answered.
type denials struct {
	n           int
	first, last time.Time
}

func (d *denials) add(r reply, err error) {
	if err != nil || r.status != http.StatusForbidden {
		return
	}
	if d.n++; d.n == 1 {
		d.first = time.Now()
	}
	d.last = time.Now()
}

// untilFilterApplies polls the established listener (f.port) and the new
// one (port2) until both run the slow plugin, and returns the 403s each
// answered meanwhile. The new listener must never answer 200 without it.
func untilFilterApplies(t *testing.T, f *single, port2 int) [2]denials {
	t.Helper()
	var d [2]denials
	f.waitFor(t, func() error {
		r, err := get(port2, "/")
		if err == nil && r.status == http.StatusOK && r.header.Get("x-slow") == "" {
			t.Fatal("the new listener answered 200 without its FAIL_CLOSE filter")
		}
		d[1].add(r, err)
		d[0].add(get(f.port, "/"))
		if err := expectHeader(port2, "x-slow", "arrived")(); err != nil {
			return err
		}
		return expectHeader(f.port, "x-slow", "arrived")()
	})
	return d
}

// whilePending runs check for as long as plugin name is pending and returns
// how many times it ran. A check that fails while the plugin was pending both
// before and after it fails the test.
func whilePending(t *testing.T, s *server, name string, check func() error) int {
	t.Helper()
	n := 0
	deadline := time.Now().Add(applyTimeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for ; time.Now().Before(deadline); <-tick.C {
		if p, err := pluginOf(s, name); err != nil || p.State != "pending" {
			return n
		}
		err := check()
		if p, _ := pluginOf(s, name); p.State != "pending" {
			return n // the module arrived during the check: it proves nothing
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	t.Fatalf("plugin %s still pending after %v", name, applyTimeout)
	return n
}

// TestFaultHangingRegistryNeverStarvesOthers: six plugins whose registry
// accepts requests and never answers do not hold up a plugin on a healthy
// registry.
func TestFaultHangingRegistryNeverStarvesOthers(t *testing.T) {
	requireFull(t)
	t.Parallel()
	reg := startFaultyRegistry(t)
	reg.Set(faultproxy.Fault{Mode: faultproxy.Hang})
	f := newSingle(t, serverOptions{}, "starve", nil)
	f.waitFor(t, expectHeader(f.port, "x-echo-user-agent", "wasmxds-e2e"))

	var specs []string
	for i := range 6 {
		specs = append(specs, plugin{name: fmt.Sprintf("hung-%d", i), app: "starve",
			url: reg.url(fmt.Sprintf("filters/hung-%d:v1", i)), config: addHeader("x-hung", "never")}.spec())
	}
	f.srv.writeSpec("hung.yaml", docs(specs...))
	eventually(t, applyTimeout, func() error {
		if n := reg.Faulted(); n < 4 {
			return fmt.Errorf("%d requests hang at the registry, want the 4 pull slots of its host taken", n)
		}
		return nil
	})
	healthy := plugin{name: "healthy", app: "starve", url: oci(refAddHeader), config: addHeader("x-healthy", "yes")}
	f.srv.writeSpec("healthy.yaml", healthy.spec())
	// Resolved well within the 30 s a hanging response takes to time out;
	// then Envoy needs the time it takes to create the VM.
	eventually(t, 20*time.Second, pluginState(f.srv, "healthy", "ready"))
	f.waitFor(t, expectHeader(f.port, "x-healthy", "yes"))
	for i := range 6 {
		if err := pluginState(f.srv, fmt.Sprintf("hung-%d", i), "pending")(); err != nil {
			t.Errorf("after the healthy plugin applied: %v", err)
		}
	}
}

// TestFaultRegistryFailsNewTagKeepsLastGood: with the registry down, answering
// 503 or cutting the blob off, a plugin edited to a new tag keeps its last
// good module (traffic shows the old filter) and status names the reference
// and the reason. Once the registry is back, a new edit applies.
func TestFaultRegistryFailsNewTagKeepsLastGood(t *testing.T) {
	requireFull(t)
	t.Parallel()
	reg := startFaultyRegistry(t)
	cases := []struct {
		name  string
		fault faultproxy.Fault
		words []string // in the plugin's error besides the reference
	}{
		{"down", faultproxy.Fault{Mode: faultproxy.Down}, []string{"source unavailable"}},
		{"503", faultproxy.Fault{Mode: faultproxy.Unavailable}, []string{"source unavailable", "503"}},
		{"reset-mid-blob", faultproxy.Fault{Mode: faultproxy.ResetMidBody, Match: "/blobs/"}, []string{"source unavailable"}},
	}
	for _, c := range cases {
		if _, err := shared.registry.pushWasmxds(nil, filterPath("config-echo"), "filters/fault-"+c.name+":v2"); err != nil {
			t.Fatal(err)
		}
	}
	p := plugin{name: "kept", app: "kept", url: reg.url(refHotV1), failStrategy: "FAIL_CLOSE",
		config: addHeader("x-kept", "v1")}
	f := newSingle(t, serverOptions{}, "kept", map[string]string{pluginFile: p.spec()})
	f.waitFor(t, expectHeader(f.port, "x-kept", "v1"))
	want := moduleSHA256(t, "add-header")

	for _, c := range cases {
		reg.Set(c.fault)
		p.url = reg.url("filters/fault-" + c.name + ":v2")
		f.srv.writeSpec(pluginFile, p.spec())
		var served string
		ref := strings.TrimPrefix(p.url, "oci://")
		eventually(t, applyTimeout, pluginError(f.srv, "kept", &served, append([]string{ref}, c.words...)...))
		if served != want {
			t.Errorf("%s: plugin served with module %q, want the last good %q", c.name, served, want)
		}
		holds(t, c.name+": after the failed pull", expectHeader(f.port, "x-kept", "v1"))
		out, err := f.srv.statusText()
		if err != nil || !strings.Contains(out, ref) {
			t.Errorf("%s: `wasmxds status` does not name %s: %v\n%s", c.name, ref, err, out)
		}
	}

	reg.Set(faultproxy.Fault{})
	p.url = reg.url(refHotV2)
	f.srv.writeSpec(pluginFile, p.spec())
	f.waitFor(t, func() error {
		r, err := get(f.port, "/")
		if err == nil && (r.status != http.StatusOK || !strings.Contains(r.header.Get(configEchoHeader), "x-kept")) {
			err = fmt.Errorf("status %d, %s %q: want the new module's header", r.status, configEchoHeader, r.header.Get(configEchoHeader))
		}
		return err
	})
}

// kill9 ends wasmxds with SIGKILL, as a crash or the OOM killer would, and
// starts it again on the same ports and directories.
func (s *server) kill9() {
	s.t.Helper()
	s.proc.Kill()
	s.start()
}

// TestFaultKill9WithRegistryDownKeepsLastGood: a FAIL_CLOSE plugin running on
// its last good module (its edited reference fails) still runs that module
// after wasmxds is killed with -9 and restarted with the registry down: 200
// stays 200, never 403.
func TestFaultKill9WithRegistryDownKeepsLastGood(t *testing.T) {
	requireFull(t)
	t.Parallel()
	reg := startFaultyRegistry(t)
	p := plugin{name: "survivor", app: "kill9", url: reg.url(refAddHeader), failStrategy: "FAIL_CLOSE",
		config: addHeader("x-survivor", "v1")}
	f := newSingle(t, serverOptions{}, "kill9", map[string]string{pluginFile: p.spec()})
	f.waitFor(t, expectHeader(f.port, "x-survivor", "v1"))

	reg.Set(faultproxy.Fault{Mode: faultproxy.Down})
	p.url = reg.url(refHotV2)
	f.srv.writeSpec(pluginFile, p.spec())
	var served string
	eventually(t, applyTimeout, pluginError(f.srv, "survivor", &served, "source unavailable"))
	holds(t, "after the failed pull", expectHeader(f.port, "x-survivor", "v1"))
	before := waitAcked(t, f.srv, f.envoy.nodeID)
	if _, err := os.Stat(filepath.Join(f.srv.cacheDir, "plugins.json")); err != nil {
		t.Fatalf("modules in force not recorded: %v", err)
	}

	f.srv.kill9()
	eventually(t, applyTimeout, pluginError(f.srv, "survivor", &served, "source unavailable"))
	if want := moduleSHA256(t, "add-header"); served != want {
		t.Errorf("after kill -9 the plugin is served with %q, want the last good %q", served, want)
	}
	if after := waitAcked(t, f.srv, f.envoy.nodeID); !maps.Equal(after, before) {
		t.Errorf("after kill -9 Envoy ACKed %v, before %v", after, before)
	}
	holds(t, "after kill -9 and restart", expectHeader(f.port, "x-survivor", "v1"))
}

// moduleFile is the cache file of module hex.
func (s *server) moduleFile(hex string) string {
	return filepath.Join(s.cacheDir, "sha256", hex+".wasm")
}

// flipByte changes one byte of a file in place, keeping its size.
func flipByte(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// moduleReply GETs a module from the module server as Envoy would.
func moduleReply(s *server, hex string) (int, []byte, error) {
	resp, err := http.Get("http://" + s.httpAddr + "/modules/sha256/" + hex)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// neverBadBytes polls the module server until it serves module hex intact;
// every answer before that must be 503 (or 404 for a module not yet back in
// the set Envoys may download), never other bytes.
func neverBadBytes(t *testing.T, s *server, hex string) (unavailable int) {
	t.Helper()
	eventually(t, applyTimeout, func() error {
		code, b, err := moduleReply(s, hex)
		if err != nil {
			return err
		}
		if code == http.StatusOK {
			if sum := sha256.Sum256(b); hex != fmt.Sprintf("%x", sum) {
				t.Fatalf("the module server sent bytes hashing to %x for module %s", sum, hex)
			}
			return nil
		}
		if code != http.StatusServiceUnavailable && code != http.StatusNotFound {
			t.Fatalf("module %s: status %d, want 503 until it is pulled again", hex, code)
		}
		unavailable++
		return fmt.Errorf("module %s: %d", hex, code)
	})
	return unavailable
}

// TestFaultCorruptCachedModule: a cached module file altered on disk is never
// served. While its registry is down the module server answers 503 and
// status names the module under moduleProblems; the Envoy that loaded it
// keeps running it; once the registry is back it is pulled again and a
// fresh Envoy gets a working filter. The same holds for a file corrupted
// while wasmxds was stopped.
func TestFaultCorruptCachedModule(t *testing.T) {
	requireFull(t)
	t.Parallel()
	reg := startFaultyRegistry(t)
	p := plugin{name: "rot", app: "rot", url: reg.url(refAddHeader), failStrategy: "FAIL_CLOSE",
		config: addHeader("x-rot", "intact")}
	f := newSingle(t, serverOptions{args: []string{"--resync", "1s"}}, "rot", map[string]string{pluginFile: p.spec()})
	f.waitFor(t, expectHeader(f.port, "x-rot", "intact"))
	sum := moduleSHA256(t, "add-header")

	reg.Set(faultproxy.Fault{Mode: faultproxy.Down})
	flipByte(t, f.srv.moduleFile(sum))
	if code, b, err := moduleReply(f.srv, sum); err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("GET of the corrupt module = %d (%d bytes, %v), want 503", code, len(b), err)
	}
	eventually(t, applyTimeout, func() error {
		st, err := faultStatusOf(f.srv)
		if err != nil {
			return err
		}
		for _, mp := range st.ModuleProblems {
			if mp.SHA256 == sum && mp.Quarantine != "" {
				return nil
			}
		}
		return fmt.Errorf("moduleProblems %+v do not name %s", st.ModuleProblems, sum)
	})
	holds(t, "the Envoy that loaded the module", expectHeader(f.port, "x-rot", "intact"))

	reg.Set(faultproxy.Fault{})
	t.Logf("%d unavailable answers before the re-pull", neverBadBytes(t, f.srv, sum))
	eventually(t, applyTimeout, func() error {
		st, err := faultStatusOf(f.srv)
		if err == nil && len(st.ModuleProblems) > 0 {
			err = fmt.Errorf("moduleProblems after the re-pull: %+v", st.ModuleProblems)
		}
		return err
	})
	fresh := startEnvoy(t, f.srv, "rot-fresh", map[string]string{"app": "rot"})
	waitRunning(t, f.srv, fresh.nodeID, "rot")

	// Corrupt while stopped, the mtime put back: only hashing at startup
	// can tell.
	f.srv.proc.Stop()
	info, err := os.Stat(f.srv.moduleFile(sum))
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, f.srv.moduleFile(sum))
	if err := os.Chtimes(f.srv.moduleFile(sum), info.ModTime(), info.ModTime()); err != nil {
		t.Fatal(err)
	}
	f.srv.start()
	neverBadBytes(t, f.srv, sum)
	eventually(t, applyTimeout, func() error {
		return metricAtLeast(f.srv, `wasmxds_fetcher_cache_corrupt_total{check="startup"}`, 1)
	})
	f.waitFor(t, expectHeader(f.port, "x-rot", "intact"))
	fresh.restart()
	waitRunning(t, f.srv, fresh.nodeID, "rot")
}

// metricAtLeast checks a sample of /metrics.
func metricAtLeast(s *server, sample string, min float64) error {
	got, err := testproc.Metric(s.url("/metrics"), sample)
	if err != nil {
		return err
	}
	if got < min {
		return fmt.Errorf("%s = %v, want at least %v", sample, got, min)
	}
	return nil
}

// readyz returns /readyz's status code and body.
func readyz(s *server) (int, string, error) {
	resp, err := http.Get(s.url("/readyz"))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestFaultConfigDirDeletedAndRecreated: deleting the config directory makes
// /readyz answer 503 naming it while Envoy keeps serving the last good
// configuration; once the directory is back, its specs apply.
func TestFaultConfigDirDeletedAndRecreated(t *testing.T) {
	requireFull(t)
	t.Parallel()
	p := plugin{name: "dir", app: "dir", url: oci(refAddHeader), config: addHeader("x-dir", "before")}
	f := newSingle(t, serverOptions{}, "dir", map[string]string{pluginFile: p.spec()})
	f.waitFor(t, expectHeader(f.port, "x-dir", "before"))
	base, err := os.ReadFile(filepath.Join(f.srv.configDir, baseSpecFile))
	if err != nil {
		t.Fatal(err)
	}

	if err := os.RemoveAll(f.srv.configDir); err != nil {
		t.Fatal(err)
	}
	eventually(t, applyTimeout, func() error {
		code, body, err := readyz(f.srv)
		if err == nil && (code != http.StatusServiceUnavailable || !strings.Contains(body, f.srv.configDir)) {
			err = fmt.Errorf("/readyz = %d %q, want 503 naming %s", code, body, f.srv.configDir)
		}
		return err
	})
	st, err := faultStatusOf(f.srv)
	if err != nil || !strings.Contains(st.ConfigDirError, f.srv.configDir) {
		t.Errorf("/debug/status configDirError = %q (%v), want it to name %s", st.ConfigDirError, err, f.srv.configDir)
	}
	holds(t, "with the config directory gone", expectHeader(f.port, "x-dir", "before"))

	// Recreated in one step, as a ConfigMap volume update or a restore
	// would: never seen empty.
	next := f.srv.configDir + ".new"
	if err := os.MkdirAll(next, 0o755); err != nil {
		t.Fatal(err)
	}
	p.config = addHeader("x-dir", "after")
	for name, content := range map[string][]byte{baseSpecFile: base, pluginFile: []byte(p.spec())} {
		if err := os.WriteFile(filepath.Join(next, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(next, f.srv.configDir); err != nil {
		t.Fatal(err)
	}
	f.waitFor(t, expectHeader(f.port, "x-dir", "after"))
	eventually(t, applyTimeout, func() error { return f.srv.get("/readyz", nil) })
	f.srv.writeSpec(pluginFile, plugin{name: "dir", app: "dir", url: oci(refAddHeader), config: addHeader("x-dir", "edited")}.spec())
	f.waitFor(t, expectHeader(f.port, "x-dir", "edited"))
}

// TestFaultUnwritableCache: wasmxds starts on a cache it cannot write (the
// test's stand-in for a read-only or full disk, which stops root too: the
// cache's tmp directory, where every write starts, is a regular file). It
// serves what the cache holds, status says why the cache is degraded, and
// a module it would have to pull fails with a clear per-plugin error.
func TestFaultUnwritableCache(t *testing.T) {
	requireFull(t)
	t.Parallel()
	held := plugin{name: "held", app: "ro", url: oci(refAddHeader), failStrategy: "FAIL_CLOSE",
		config: addHeader("x-held", "cached")}
	f := newSingle(t, serverOptions{}, "ro", map[string]string{pluginFile: held.spec()})
	f.waitFor(t, expectHeader(f.port, "x-held", "cached"))

	f.srv.proc.Stop()
	tmp := filepath.Join(f.srv.cacheDir, "tmp")
	if err := os.RemoveAll(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tmp, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f.srv.start()
	st, err := faultStatusOf(f.srv)
	if err != nil || !strings.Contains(st.CacheDegraded, tmp) {
		t.Errorf("cacheDegraded = %q (%v), want it to name %s", st.CacheDegraded, err, tmp)
	}
	f.waitFor(t, expectHeader(f.port, "x-held", "cached"))
	fresh := startEnvoy(t, f.srv, "ro-fresh", map[string]string{"app": "ro"})
	waitRunning(t, f.srv, fresh.nodeID, "held")

	f.srv.writeSpec("new.yaml", plugin{name: "new", app: "ro", url: oci(refConfigEcho), failStrategy: "FAIL_OPEN",
		config: addHeader("x-new", "never")}.spec())
	var served string
	eventually(t, applyTimeout, pluginError(f.srv, "new", &served, refConfigEcho, "cannot write to the module cache", tmp))
	holds(t, "with a plugin that cannot be cached", expectHeader(f.port, "x-held", "cached"))
}
