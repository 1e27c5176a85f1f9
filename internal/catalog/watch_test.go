package catalog

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const waitLimit = 10 * time.Second

type watchHarness struct {
	t      *testing.T
	dir    string
	states chan *State
	health chan error // what OnHealth was told
	reg    *prometheus.Registry
}

// startWatch runs Watch on dir and returns once the initial State arrived.
func startWatch(t *testing.T, dir string) (*watchHarness, *State) {
	t.Helper()
	return startWatchDebounced(t, dir, 20*time.Millisecond)
}

// startWatchDebounced is startWatch with the given quiet period.
func startWatchDebounced(t *testing.T, dir string, debounce time.Duration) (*watchHarness, *State) {
	t.Helper()
	return startWatchWith(t, dir, func(o *WatchOptions) { o.Debounce = debounce })
}

// startWatchWith is startWatch with options changed by set.
func startWatchWith(t *testing.T, dir string, set func(*WatchOptions)) (*watchHarness, *State) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h := &watchHarness{t: t, dir: dir, states: make(chan *State, 64), health: make(chan error, 64),
		reg: prometheus.NewRegistry()}
	done := make(chan error, 1)
	opts := WatchOptions{Debounce: 20 * time.Millisecond, Registerer: h.reg,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OnHealth: func(err error) {
			select {
			case h.health <- err:
			case <-ctx.Done():
			}
		}}
	set(&opts)
	go func() {
		done <- Watch(ctx, dir, opts, func(s *State) {
			select {
			case h.states <- s:
			case <-ctx.Done():
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch returned %v", err)
		}
	})
	return h, h.next()
}

func (h *watchHarness) next() *State {
	h.t.Helper()
	select {
	case s := <-h.states:
		return s
	case <-time.After(waitLimit):
		h.t.Fatalf("no State within %v", waitLimit)
		return nil
	}
}

// waitFor consumes States until one satisfies ok.
func (h *watchHarness) waitFor(what string, ok func(*State) bool) *State {
	h.t.Helper()
	deadline := time.After(waitLimit)
	for {
		select {
		case s := <-h.states:
			if ok(s) {
				return s
			}
		case <-deadline:
			h.t.Fatalf("no State with %s within %v", what, waitLimit)
			return nil
		}
	}
}

// nextHealth returns what OnHealth is told next.
func (h *watchHarness) nextHealth() error {
	h.t.Helper()
	select {
	case err := <-h.health:
		return err
	case <-time.After(waitLimit):
		h.t.Fatalf("OnHealth not called within %v", waitLimit)
		return nil
	}
}

// reloads reads wasmxds_catalog_reloads_total{result}.
func (h *watchHarness) reloads(result string) float64 {
	return h.metric("wasmxds_catalog_reloads_total", result)
}

// metric reads a counter or gauge, with the given label value if any.
func (h *watchHarness) metric(name string, label ...string) float64 {
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(label) > 0 && m.GetLabel()[0].GetValue() != label[0] {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// expectNoChange waits until the watcher has rescanned without finding a
// change, then checks that no State was delivered.
func (h *watchHarness) expectNoChange(act func()) {
	h.t.Helper()
	before := h.reloads(resultUnchanged)
	act()
	deadline := time.Now().Add(waitLimit)
	for h.reloads(resultUnchanged) <= before {
		if time.Now().After(deadline) {
			mfs, _ := h.reg.Gather()
			h.t.Fatalf("no unchanged rescan within %v: %v", waitLimit, mfs)
		}
		time.Sleep(5 * time.Millisecond) // polling a counter, not timing behaviour
	}
	select {
	case s := <-h.states:
		h.t.Fatalf("onChange called although nothing changed: %+v", s)
	default:
	}
}

func clusterYAML(name, endpoint string) string {
	return fmt.Sprintf("apiVersion: wasmxds.dev/v1alpha1\nkind: Cluster\nmetadata: {name: %s}\nspec: {endpoints: [%q]}\n", name, endpoint)
}

func pluginYAML(name, url string) string {
	return fmt.Sprintf("apiVersion: wasmxds.dev/v1alpha1\nkind: WasmPlugin\nmetadata: {name: %s}\nspec: {url: %q}\n", name, url)
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// atomicWrite replaces path the way editors save: write a temporary file,
// rename it over.
func atomicWrite(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	write(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// endpointOf returns the first endpoint of cluster name as host:port, or "".
func endpointOf(s *State, name string) string {
	for _, c := range s.Clusters {
		if c.Name == name && len(c.Endpoints) > 0 {
			return fmt.Sprintf("%s:%d", c.Endpoints[0].Host, c.Endpoints[0].Port)
		}
	}
	return ""
}

func hasErrorIn(s *State, file string) bool {
	return slices.ContainsFunc(s.Errors, func(e SpecError) bool { return e.File == file })
}

func TestWatchDeliversInitialState(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), clusterYAML("a", "a:1"))
	_, st := startWatch(t, dir)
	if endpointOf(st, "a") != "a:1" {
		t.Errorf("initial state %+v lacks cluster a", st)
	}
}

func TestWatchCreateWriteRemove(t *testing.T) {
	dir := t.TempDir()
	h, _ := startWatch(t, dir)
	write(t, filepath.Join(dir, "a.yaml"), clusterYAML("a", "a:1"))
	h.waitFor("created cluster", func(s *State) bool { return endpointOf(s, "a") == "a:1" })
	write(t, filepath.Join(dir, "a.yaml"), clusterYAML("a", "a:2"))
	h.waitFor("written cluster", func(s *State) bool { return endpointOf(s, "a") == "a:2" })
	if err := os.Remove(filepath.Join(dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	h.waitFor("cluster gone", func(s *State) bool { return len(s.Clusters) == 0 })
}

func TestWatchRename(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), clusterYAML("a", "a:1"))
	h, _ := startWatch(t, dir)
	if err := os.Rename(filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yml")); err != nil {
		t.Fatal(err)
	}
	h.waitFor("cluster from b.yml", func(s *State) bool {
		return len(s.Clusters) == 1 && s.Clusters[0].Source.File == "b.yml"
	})
	// Renamed to a backup name, it no longer applies and is flagged.
	if err := os.Rename(filepath.Join(dir, "b.yml"), filepath.Join(dir, "b.yml.bak")); err != nil {
		t.Fatal(err)
	}
	h.waitFor("cluster gone and backup flagged", func(s *State) bool {
		return len(s.Clusters) == 0 && hasErrorIn(s, "b.yml.bak")
	})
}

func TestWatchAtomicSave(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.yaml"), clusterYAML("a", "a:1"))
	h, _ := startWatch(t, dir)
	atomicWrite(t, filepath.Join(dir, "a.yaml"), clusterYAML("a", "a:2"))
	st := h.waitFor("saved cluster", func(s *State) bool { return endpointOf(s, "a") == "a:2" })
	if len(st.Errors) != 0 {
		t.Errorf("errors after atomic save: %v", st.Errors)
	}
}

// A burst of saves, in place and by rename, gives one State with the final
// content: no intermediate version reaches onChange.
func TestWatchBurstGivesOneStateWithFinalContent(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.yaml")
	write(t, a, clusterYAML("a", "a:1"))
	// A quiet period far above the burst's length keeps a busy machine from
	// splitting it; the default's margin is a matter for the benchmarks.
	h, _ := startWatchDebounced(t, dir, 300*time.Millisecond)
	before := h.reloads(resultChanged)
	for port := 2; port <= 40; port++ {
		if port%2 == 0 {
			write(t, a, clusterYAML("a", fmt.Sprintf("a:%d", port)))
		} else {
			atomicWrite(t, a, clusterYAML("a", fmt.Sprintf("a:%d", port)))
		}
	}
	if got := endpointOf(h.next(), "a"); got != "a:40" {
		t.Errorf("first State after the burst has a = %q, want a:40", got)
	}
	if n := h.reloads(resultChanged) - before; n != 1 {
		t.Errorf("%v changed reloads for one burst, want 1", n)
	}
	h.expectNoChange(func() { write(t, a, clusterYAML("a", "a:40")) })
}

func TestWatchNewSubdirectory(t *testing.T) {
	dir := t.TempDir()
	h, _ := startWatch(t, dir)
	write(t, filepath.Join(dir, "team", "deep", "c.yaml"), clusterYAML("c", "c:1"))
	h.waitFor("cluster in new subdirectory", func(s *State) bool { return endpointOf(s, "c") == "c:1" })
	// Only a watch on the new directory itself can see this write.
	write(t, filepath.Join(dir, "team", "deep", "c.yaml"), clusterYAML("c", "c:2"))
	h.waitFor("rewritten cluster in subdirectory", func(s *State) bool { return endpointOf(s, "c") == "c:2" })
	if err := os.RemoveAll(filepath.Join(dir, "team")); err != nil {
		t.Fatal(err)
	}
	h.waitFor("subdirectory removed", func(s *State) bool { return len(s.Clusters) == 0 })
}

// configMapVersion lays out a ConfigMap volume revision the way the kubelet
// does and atomically points ..data at it.
func configMapVersion(t *testing.T, dir, version string, files map[string]string) {
	t.Helper()
	tsDir := "..2024_06_01_" + version
	for rel, content := range files {
		write(t, filepath.Join(dir, tsDir, rel), content)
	}
	tmpLink := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(tsDir, tmpLink); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmpLink, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for rel := range files {
		top := strings.Split(rel, "/")[0]
		link := filepath.Join(dir, top)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", top), link); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWatchConfigMapSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	configMapVersion(t, dir, "v1", map[string]string{
		"clusters.yaml": clusterYAML("a", "a:1"), "nested/more.yaml": clusterYAML("n", "n:1")})
	h, st := startWatch(t, dir)
	if endpointOf(st, "a") != "a:1" || endpointOf(st, "n") != "n:1" || len(st.Clusters) != 2 {
		t.Fatalf("initial ConfigMap state: %+v", st.Clusters)
	}
	configMapVersion(t, dir, "v2", map[string]string{
		"clusters.yaml": clusterYAML("a", "a:2"), "nested/more.yaml": clusterYAML("n", "n:2")})
	if err := os.RemoveAll(filepath.Join(dir, "..2024_06_01_v1")); err != nil {
		t.Fatal(err)
	}
	st = h.waitFor("swapped ConfigMap", func(s *State) bool {
		return endpointOf(s, "a") == "a:2" && endpointOf(s, "n") == "n:2"
	})
	if len(st.Clusters) != 2 || len(st.Errors) != 0 {
		t.Errorf("after swap: clusters %+v errors %v; want each file once", st.Clusters, st.Errors)
	}
}

func TestWatchBadEditKeepsLastGoodDocuments(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	write(t, a, clusterYAML("a", "a:1"))
	write(t, b, clusterYAML("b", "b:1"))
	h, _ := startWatch(t, dir)

	// Atomic saves: a reader racing an in-place write could see an empty file.
	atomicWrite(t, a, clusterYAML("a", "a:2")+"bogus: true\n")
	st := h.waitFor("error in a.yaml", func(s *State) bool { return hasErrorIn(s, "a.yaml") })
	if endpointOf(st, "a") != "a:1" {
		t.Errorf("cluster a = %q after a bad edit, want the last good a:1", endpointOf(st, "a"))
	}
	if st.Errors[0].Line != 5 || !strings.Contains(st.Errors[0].Message, `unknown field "bogus"`) {
		t.Errorf("error %v, want a.yaml:5 about bogus", st.Errors[0])
	}

	atomicWrite(t, b, clusterYAML("b", "b:2")) // other files still apply
	st = h.waitFor("b updated", func(s *State) bool { return endpointOf(s, "b") == "b:2" })
	if endpointOf(st, "a") != "a:1" || !hasErrorIn(st, "a.yaml") {
		t.Errorf("a lost its last good version or its error: %+v", st)
	}

	atomicWrite(t, a, clusterYAML("a", "a:3")) // fixing the file applies it
	st = h.waitFor("a fixed", func(s *State) bool { return endpointOf(s, "a") == "a:3" })
	if len(st.Errors) != 0 {
		t.Errorf("errors after the fix: %v", st.Errors)
	}
}

func TestWatchNoChangeNoCallback(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.yaml")
	write(t, a, clusterYAML("a", "a:1"))
	h, _ := startWatch(t, dir)
	// Saving identical content (atomically, as editors do, so that no
	// half-written file can be read in between).
	h.expectNoChange(func() { atomicWrite(t, a, clusterYAML("a", "a:1")) })
	h.expectNoChange(func() { write(t, filepath.Join(dir, "README.txt"), "not a spec\n") })
	h.expectNoChange(func() { write(t, filepath.Join(dir, "envoy.yaml"), "admin: {}\n") })
	// A comment after the document moves nothing.
	h.expectNoChange(func() { atomicWrite(t, a, clusterYAML("a", "a:1")+"# trailing comment\n") })
}

func TestWatchConflictsKeepTheOlderDocument(t *testing.T) {
	dir := t.TempDir()
	z, b := filepath.Join(dir, "z.yaml"), filepath.Join(dir, "b.yaml")
	write(t, z, pluginYAML("x", "oci://r.local/z:v1"))
	h, _ := startWatch(t, dir)

	// b.yaml sorts first, but z.yaml's plugin was there before.
	write(t, b, pluginYAML("x", "oci://r.local/b:v1"))
	st := h.waitFor("duplicate reported", func(s *State) bool { return hasErrorIn(s, "b.yaml") })
	if len(st.Plugins) != 1 || st.Plugins[0].URL != "oci://r.local/z:v1" {
		t.Fatalf("plugins %+v, want z.yaml's to stay", st.Plugins)
	}
	if !strings.Contains(st.Errors[0].Message, "z.yaml:1") {
		t.Errorf("duplicate error %q does not name the other file:line", st.Errors[0].Message)
	}
	// Editing the older document does not make it lose its seniority.
	write(t, z, pluginYAML("x", "oci://r.local/z:v2"))
	h.waitFor("z edited", func(s *State) bool { return len(s.Plugins) == 1 && s.Plugins[0].URL == "oci://r.local/z:v2" })

	if err := os.Remove(z); err != nil {
		t.Fatal(err)
	}
	st = h.waitFor("b takes over", func(s *State) bool { return len(s.Plugins) == 1 && s.Plugins[0].URL == "oci://r.local/b:v1" })
	if len(st.Errors) != 0 {
		t.Errorf("errors after the conflict resolved: %v", st.Errors)
	}
}

func TestWatchDeletedClusterStaysWhileARouteUsesIt(t *testing.T) {
	dir := t.TempDir()
	c := filepath.Join(dir, "cluster.yaml")
	write(t, c, clusterYAML("up", "up:80"))
	l := filepath.Join(dir, "listener.yaml")
	write(t, l, "apiVersion: wasmxds.dev/v1alpha1\nkind: Listener\nmetadata: {name: l}\n"+
		"spec:\n  port: 10000\n  routes:\n  - match: {prefix: /}\n    cluster: up\n")
	h, st := startWatch(t, dir)
	if len(st.Listeners) != 1 {
		t.Fatalf("initial listeners %+v", st.Listeners)
	}
	if err := os.Remove(c); err != nil {
		t.Fatal(err)
	}
	st = h.waitFor("error reported", func(s *State) bool { return hasErrorIn(s, "listener.yaml") })
	if len(st.Listeners) != 1 || endpointOf(st, "up") != "up:80" {
		t.Errorf("the listener and the cluster it routes to must stay in force: listeners %+v clusters %+v", st.Listeners, st.Clusters)
	}
	want := SpecError{File: "listener.yaml", Line: 8,
		Message: `spec.routes[0].cluster: cluster "up" was removed but this route still uses it; it stays in force until no route does`}
	if !slices.Contains(st.Errors, want) {
		t.Errorf("errors %v, want %v", st.Errors, want)
	}

	// Once no route uses it, the removed cluster goes.
	if err := os.Remove(l); err != nil {
		t.Fatal(err)
	}
	st = h.waitFor("listener and cluster gone", func(s *State) bool { return len(s.Listeners) == 0 && len(s.Clusters) == 0 })
	if len(st.Errors) != 0 {
		t.Errorf("errors after the listener went: %v", st.Errors)
	}
}

func TestWatchMissingDirectoryFails(t *testing.T) {
	err := Watch(context.Background(), filepath.Join(t.TempDir(), "nope"), WatchOptions{}, func(*State) {
		t.Error("onChange called for a missing directory")
	})
	if err == nil {
		t.Error("Watch of a missing directory succeeded")
	}
}

// A large file's edit is parsed aside: an edit of another file made just
// after it applies without waiting for that parse, the large file's last
// documents staying in force meanwhile; then the large file's edit
// applies.
func TestWatchLargeFileDoesNotHoldOtherEdits(t *testing.T) {
	dir := t.TempDir()
	big, small := filepath.Join(dir, "big.yaml"), filepath.Join(dir, "small.yaml")
	pad := "# " + strings.Repeat("x", 2048) + "\n"
	write(t, big, clusterYAML("big", "big:1")+pad)
	write(t, small, clusterYAML("small", "small:1"))
	gate := make(chan struct{})
	h, st := startWatchWith(t, dir, func(o *WatchOptions) { o.largeFile = 1024; o.parseGate = func() { <-gate } })
	t.Cleanup(func() {
		select {
		case <-gate:
		default:
			close(gate)
		}
	})
	if endpointOf(st, "big") != "big:1" || endpointOf(st, "small") != "small:1" {
		t.Fatalf("initial state lacks a file: big %q, small %q", endpointOf(st, "big"), endpointOf(st, "small"))
	}

	atomicWrite(t, big, clusterYAML("big", "big:2")+pad)
	atomicWrite(t, small, clusterYAML("small", "small:2"))
	st = h.waitFor("small's edit", func(s *State) bool { return endpointOf(s, "small") == "small:2" })
	if endpointOf(st, "big") != "big:1" {
		t.Errorf("big = %q while its parse is held, want its last documents (big:1)", endpointOf(st, "big"))
	}
	close(gate)
	h.waitFor("big's edit", func(s *State) bool { return endpointOf(s, "big") == "big:2" && endpointOf(s, "small") == "small:2" })

	// A new large file applies once parsed, too.
	write(t, filepath.Join(dir, "new.yaml"), clusterYAML("new", "new:1")+pad)
	h.waitFor("the new large file", func(s *State) bool { return endpointOf(s, "new") == "new:1" })
}
