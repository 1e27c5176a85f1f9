package catalog

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// A config directory that is deleted keeps its last State in force and is
// reported; recreated, it is read and watched again.
func TestWatchConfigDirRemovedThenRecreated(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "specs")
	write(t, filepath.Join(dir, "a.yaml"), clusterYAML("a", "a:1"))
	h, _ := startWatch(t, dir)

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	err := h.nextHealth()
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("OnHealth(%v), want an error naming %s", err, dir)
	}
	select {
	case st := <-h.states:
		t.Fatalf("a State was delivered because the directory vanished: %+v", st)
	default:
	}
	if got := h.metric("wasmxds_catalog_dir_unreadable"); got != 1 {
		t.Errorf("wasmxds_catalog_dir_unreadable = %v while the directory is missing, want 1", got)
	}

	write(t, filepath.Join(dir, "a.yaml"), clusterYAML("a", "a:2"))
	if err := h.nextHealth(); err != nil {
		t.Errorf("OnHealth(%v) after the directory came back, want nil", err)
	}
	if got := endpointOf(h.next(), "a"); got != "a:2" {
		t.Errorf("first State after the directory came back has a = %q, want a:2", got)
	}
	// Only a new watch on the recreated directory can see this edit.
	write(t, filepath.Join(dir, "a.yaml"), clusterYAML("a", "a:3"))
	h.waitFor("edit in the recreated directory", func(s *State) bool { return endpointOf(s, "a") == "a:3" })
	if got := h.metric("wasmxds_catalog_dir_unreadable"); got != 0 {
		t.Errorf("wasmxds_catalog_dir_unreadable = %v after the directory came back, want 0", got)
	}
}

// A directory replaced faster than the debounce (rm -rf, then a copy) is a
// new directory: its watch must be added again.
func TestWatchConfigDirReplacedWithinTheDebounce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "specs")
	write(t, filepath.Join(dir, "a.yaml"), clusterYAML("a", "a:1"))
	h, _ := startWatch(t, dir)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "a.yaml"), clusterYAML("a", "a:2"))
	h.waitFor("replaced directory read", func(s *State) bool { return endpointOf(s, "a") == "a:2" })
	write(t, filepath.Join(dir, "a.yaml"), clusterYAML("a", "a:3"))
	h.waitFor("edit in the replaced directory", func(s *State) bool { return endpointOf(s, "a") == "a:3" })
}

// A directory swapped for another by renames (mv specs specs.old; mv
// new specs) is watched at its new content, not followed to specs.old.
func TestWatchConfigDirSwappedByRename(t *testing.T) {
	parent := t.TempDir()
	dir, next := filepath.Join(parent, "specs"), filepath.Join(parent, "specs.new")
	write(t, filepath.Join(dir, "a.yaml"), clusterYAML("a", "a:1"))
	write(t, filepath.Join(next, "a.yaml"), clusterYAML("a", "a:2"))
	h, _ := startWatch(t, dir)
	if err := os.Rename(dir, filepath.Join(parent, "specs.old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, dir); err != nil {
		t.Fatal(err)
	}
	h.waitFor("swapped-in directory read", func(s *State) bool { return endpointOf(s, "a") == "a:2" })
	write(t, filepath.Join(parent, "specs.old", "a.yaml"), clusterYAML("a", "a:old"))
	write(t, filepath.Join(dir, "a.yaml"), clusterYAML("a", "a:3"))
	st := h.waitFor("edit in the swapped-in directory", func(s *State) bool { return endpointOf(s, "a") != "a:2" })
	if got := endpointOf(st, "a"); got != "a:3" {
		t.Errorf("cluster a = %q, want a:3 from the directory now at %s", got, dir)
	}
}

// A chmod alone makes the watcher read the file again, so that fixing the
// permissions of an unreadable spec applies it.
//
// Tests run as root, whom permission bits do not stop, so the test cannot
// make the file unreadable. It simulates what matters to the watcher: the
// content it can read changes with no event but the chmod. The new content
// is written through a hard link outside the watched tree (inotify reports
// a write to the directory of the path it was made through), then the file
// in the tree is chmodded.
func TestWatchChmodRereadsTheFile(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.yaml")
	write(t, a, clusterYAML("a", "a:1"))
	link := filepath.Join(t.TempDir(), "a-link.yaml")
	if err := os.Link(a, link); err != nil {
		t.Fatal(err)
	}
	h, _ := startWatch(t, dir)
	if err := os.WriteFile(link, []byte(clusterYAML("a", "a:2")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(a, 0o600); err != nil {
		t.Fatal(err)
	}
	h.waitFor("content seen after the chmod", func(s *State) bool { return endpointOf(s, "a") == "a:2" })
}

// A large file is parsed once: edits to other files apply without parsing
// it again, so its size never delays them.
func TestWatchEditBesideALargeFileDoesNotReparseIt(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "big.yaml"), configSpec("big", 40_000, "0123"), 0o644); err != nil {
		t.Fatal(err)
	}
	small := filepath.Join(dir, "small.yaml")
	write(t, small, clusterYAML("s", "s:1"))
	h, st := startWatch(t, dir)
	if len(st.Plugins) != 1 || len(st.Errors) != 0 {
		t.Fatalf("initial state: plugins %d, errors %v; want the big plugin", len(st.Plugins), st.Errors)
	}
	before := h.metric("wasmxds_catalog_file_parses_total")
	atomicWrite(t, small, clusterYAML("s", "s:2"))
	h.waitFor("small file edited", func(s *State) bool { return endpointOf(s, "s") == "s:2" })
	if n := h.metric("wasmxds_catalog_file_parses_total") - before; n != 1 {
		t.Errorf("%v files parsed for an edit of one small file, want 1", n)
	}
}

// A registry that already holds the catalog metrics makes Watch fail rather
// than leave them unreported.
func TestWatchFailsOnMetricsConflict(t *testing.T) {
	dir := t.TempDir()
	h, _ := startWatch(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	err := Watch(ctx, dir, WatchOptions{Registerer: h.reg}, func(*State) {
		t.Error("onChange called although the metrics could not be registered")
	})
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Errorf("second Watch on one registry returned %v, want an AlreadyRegisteredError", err)
	}
}

// Without a Logger, Watch writes nothing, not even to slog's default.
func TestWatchNilLoggerWritesNothing(t *testing.T) {
	var buf bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	defer slog.SetDefault(prev)
	dir := t.TempDir()
	write(t, filepath.Join(dir, "bad.yaml"), clusterYAML("a", "a:1")+"bogus: 1\n")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan *State, 1)
	done := make(chan error, 1)
	go func() { done <- Watch(ctx, dir, WatchOptions{}, func(s *State) { got <- s; cancel() }) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitLimit):
		t.Fatalf("Watch did not return within %v of its first State", waitLimit)
	}
	if st := <-got; len(st.Errors) != 1 {
		t.Fatalf("errors %v, want the one about bogus", st.Errors)
	}
	if buf.Len() != 0 {
		t.Errorf("Watch without a Logger wrote to slog's default logger:\n%s", buf.String())
	}
}
