package filters_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// filterNames are the example filters, one main package each, as listed in
// FILTERS (which the Makefile and the Dockerfile read too).
var filterNames []string

// moduleDir holds the filters built for this test run, <name>.wasm.
var moduleDir string

// TestMain builds every filter for wasip1 once, as `make filters` does, so
// the tests exercise exactly what users deploy.
func TestMain(m *testing.M) {
	names, err := readFilterList("FILTERS")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	filterNames = names
	dir, err := os.MkdirTemp("", "wasmxds-filters-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	moduleDir = dir
	code := 1
	if err := buildFilters(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// readFilterList reads a FILTERS file: one name a line, # comments.
func readFilterList(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var names []string
	for line := range strings.Lines(string(b)) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			names = append(names, line)
		}
	}
	return names, nil
}

func buildFilters(dir string) error {
	for _, name := range filterNames {
		cmd := exec.Command("go", "build", "-buildmode=c-shared",
			"-o", filepath.Join(dir, name+".wasm"), "./"+name)
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building %s: %w\n%s", name, err, out)
		}
	}
	return nil
}

func modulePath(name string) string { return filepath.Join(moduleDir, name+".wasm") }

// TestFilterListIsComplete: every directory here with a main.go is in
// FILTERS, so `make filters` and the image build every filter.
func TestFilterListIsComplete(t *testing.T) {
	mains, err := filepath.Glob("*/main.go")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, m := range mains {
		dirs = append(dirs, filepath.Dir(m))
	}
	listed := slices.Sorted(slices.Values(filterNames))
	if !slices.Equal(dirs, listed) {
		t.Errorf("directories with a main.go: %v; FILTERS lists %v", dirs, listed)
	}
}
