package catalog

import (
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// caseNames lists the cases in a testdata directory: each top-level file or
// directory (hidden ones excluded) is one case.
func caseNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		t.Fatalf("no cases in %s", dir)
	}
	return names
}

// loadCase loads one case of root in isolation, with paths relative to root
// as a whole-directory load would report them.
func loadCase(t *testing.T, root, name string) *State {
	t.Helper()
	tr, err := newTracker(root, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	tr.include = func(rel string) bool { return rel == name || strings.HasPrefix(rel, name+"/") }
	st, err := tr.refresh(nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// checkGolden compares got with the golden file, or rewrites it with -update.
func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./catalog -run %s -update to create it)", err, t.Name())
	}
	if string(want) != got {
		t.Errorf("%s differs from the golden file (run with -update after checking the change)\n--- want\n%s\n--- got\n%s",
			path, want, got)
	}
}

func TestValidCasesMatchGoldenIR(t *testing.T) {
	root := filepath.Join("testdata", "valid")
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range caseNames(t, root) {
		t.Run(name, func(t *testing.T) {
			st := loadCase(t, root, name)
			if len(st.Errors) != 0 {
				t.Errorf("valid case has errors: %v", st.Errors)
			}
			if len(st.Listeners)+len(st.Clusters)+len(st.Plugins)+len(st.NodeAccess) == 0 {
				t.Errorf("valid case produced nothing")
			}
			out, err := json.MarshalIndent(st, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			// Resolved file: urls are absolute; keep goldens machine-independent.
			got := strings.ReplaceAll(string(out), abs, "$TESTDATA/valid") + "\n"
			checkGolden(t, filepath.Join("testdata", "golden", "valid", trimExt(name)+".json"), got)
		})
	}
}

func TestInvalidCasesMatchGoldenErrors(t *testing.T) {
	root := filepath.Join("testdata", "invalid")
	for _, name := range caseNames(t, root) {
		t.Run(name, func(t *testing.T) {
			st := loadCase(t, root, name)
			if len(st.Errors) == 0 {
				t.Fatalf("invalid case reported no error")
			}
			var b strings.Builder
			for _, e := range st.Errors {
				b.WriteString(e.Error() + "\n")
			}
			for _, w := range st.Warnings {
				b.WriteString("warning: " + w.Error() + "\n")
			}
			checkGolden(t, filepath.Join("testdata", "golden", "invalid", name+".txt"), b.String())
		})
	}
}

func trimExt(name string) string {
	return strings.TrimSuffix(name, filepath.Ext(name))
}
