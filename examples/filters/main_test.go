package filters_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// filterNames are the example filters, one main package each.
var filterNames = []string{"add-header", "config-echo", "rate-limit", "header-logger", "tcp-prefix"}

// moduleDir holds the filters built for this test run, <name>.wasm.
var moduleDir string

// TestMain builds every filter for wasip1 once, as `make filters` does, so
// the tests exercise exactly what users deploy.
func TestMain(m *testing.M) {
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
