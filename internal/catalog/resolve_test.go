package catalog

import (
	"path/filepath"
	"slices"
	"testing"
)

func listenerYAML(port, cluster string) string {
	return "apiVersion: wasmxds.dev/v1alpha1\nkind: Listener\nmetadata: {name: l}\n" +
		"spec:\n  port: " + port + "\n  routes:\n  - match: {prefix: /}\n    cluster: " + cluster + "\n"
}

// An edit that points a listener at a cluster that does not exist is a bad
// edit: the listener keeps serving its last good version, the error names
// the route's line, and fixing the edit applies it.
func TestWatchListenerEditToMissingClusterKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "cluster.yaml"), clusterYAML("up", "up:80"))
	l := filepath.Join(dir, "listener.yaml")
	write(t, l, listenerYAML("10000", "up"))
	h, st := startWatch(t, dir)
	if len(st.Listeners) != 1 {
		t.Fatalf("initial listeners %+v", st.Listeners)
	}

	atomicWrite(t, l, listenerYAML("10001", "nope"))
	st = h.waitFor("error reported", func(s *State) bool { return hasErrorIn(s, "listener.yaml") })
	if len(st.Listeners) != 1 || st.Listeners[0].Port != 10000 || st.Listeners[0].Routes[0].Cluster != "up" {
		t.Errorf("want the last good listener (port 10000 → up) in force, got %+v", st.Listeners)
	}
	want := SpecError{File: "listener.yaml", Line: 8,
		Message: `spec.routes[0].cluster: cluster "nope" does not exist; listener "l" keeps its last good version`}
	if !slices.Contains(st.Errors, want) {
		t.Errorf("errors %v, want %v", st.Errors, want)
	}

	atomicWrite(t, l, listenerYAML("10001", "up"))
	st = h.waitFor("fixed edit applied", func(s *State) bool {
		return len(s.Listeners) == 1 && s.Listeners[0].Port == 10001
	})
	if len(st.Errors) != 0 {
		t.Errorf("errors after the fix: %v", st.Errors)
	}
}

// A listener that never had a version whose clusters exist is left out.
func TestLoadListenerWithMissingClusterIsLeftOut(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "listener.yaml"), listenerYAML("10000", "nope"))
	st, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Listeners) != 0 {
		t.Errorf("listeners %+v, want none", st.Listeners)
	}
	want := SpecError{File: "listener.yaml", Line: 8, Message: `spec.routes[0].cluster: cluster "nope" does not exist`}
	if !slices.Contains(st.Errors, want) {
		t.Errorf("errors %v, want %v", st.Errors, want)
	}
}

// A spec file truncated to zero bytes (an in-place save caught between the
// truncate and the write) keeps its documents in force with a warning; the
// content written next applies, and deleting the file removes its specs.
func TestWatchEmptiedFileKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	c := filepath.Join(dir, "cluster.yaml")
	write(t, c, clusterYAML("up", "up:80"))
	h, _ := startWatch(t, dir)

	write(t, c, "")
	st := h.waitFor("warning", func(s *State) bool { return len(s.Warnings) > 0 })
	if endpointOf(st, "up") != "up:80" {
		t.Errorf("emptied file dropped its cluster: %+v", st.Clusters)
	}
	want := SpecError{File: "cluster.yaml", Line: 1,
		Message: "file is empty; its last good specs stay in force (delete the file to remove them)"}
	if !slices.Contains(st.Warnings, want) {
		t.Errorf("warnings %v, want %v", st.Warnings, want)
	}

	write(t, c, clusterYAML("up", "up:81"))
	st = h.waitFor("new content", func(s *State) bool { return endpointOf(s, "up") == "up:81" })
	if len(st.Warnings) != 0 {
		t.Errorf("warnings after the write: %v", st.Warnings)
	}

	write(t, c, "# nothing here any more\n")
	h.waitFor("comment-only file removes its specs", func(s *State) bool { return len(s.Clusters) == 0 })
}
