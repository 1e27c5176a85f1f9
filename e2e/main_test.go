// Package e2e runs wasmxds the way a user does — built from this tree, with a
// real OCI registry (Debian's docker-registry), real Envoys and the example
// Wasm filters — and asserts what a client sees through Envoy.
package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/wasmxds/wasmxds/internal/testproc"
)

// toolPaths are the external programs the suite runs.
type toolPaths struct {
	wasmxds  string // built from this tree by TestMain
	envoy    string
	registry string
	htpasswd string
	oras     string
}

var (
	tools toolPaths
	// filterDir holds the modules built by `make filters`.
	filterDir string
	// shared is the registry every scenario pulls from unless it needs one
	// of its own (stopped, or with auth).
	shared struct {
		registry *registry
	}
)

// filterNames are the example filters the suite needs.
var filterNames = []string{"add-header", "config-echo", "rate-limit", "header-logger", "tcp-prefix", "fail-on-header"}

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		// -short runs unit tests only; every test here calls requireFull.
		os.Exit(m.Run())
	}
	os.Exit(runSuite(m))
}

func runSuite(m *testing.M) int {
	dir, err := os.MkdirTemp("", "wasmxds-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := setup(dir); err != nil {
		fmt.Fprintf(os.Stderr, "e2e setup failed: %v\n", err)
		if shared.registry != nil {
			shared.registry.stop()
		}
		return 1
	}
	code := m.Run()
	shared.registry.stop()
	if code != 0 {
		fmt.Fprintf(os.Stderr, "---- shared registry log, last lines:\n%s\n",
			testproc.Tail(filepath.Join(shared.registry.dir, "registry.log"), 40))
	}
	return code
}

// setup finds the tools, builds wasmxds and fills the shared registry.
func setup(dir string) error {
	if err := findTools(); err != nil {
		return err
	}
	tools.wasmxds = filepath.Join(dir, "wasmxds")
	build := exec.Command("go", "build", "-o", tools.wasmxds, "./cmd/wasmxds")
	build.Dir = repoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/wasmxds: %w\n%s", err, out)
	}
	regDir := filepath.Join(dir, "registry")
	if err := os.MkdirAll(regDir, 0o755); err != nil {
		return err
	}
	r, err := startRegistry(regDir, "", "")
	if err != nil {
		return err
	}
	shared.registry = r
	return pushSharedModules(r)
}

// findTools locates every external program and module the suite needs and
// reports all that are missing at once.
func findTools() error {
	var missing []string
	look := func(env, name string, fallbacks ...string) string {
		if p := os.Getenv(env); env != "" && p != "" {
			if _, err := exec.LookPath(p); err != nil {
				missing = append(missing, fmt.Sprintf("%s (%s=%s: %v)", name, env, p, err))
			}
			return p
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		for _, f := range fallbacks {
			if st, err := os.Stat(f); err == nil && !st.IsDir() {
				return f
			}
		}
		missing = append(missing, name)
		return ""
	}
	root := repoRoot()
	tools.envoy = look("ENVOY_BIN", "envoy", filepath.Join(root, ".tools/envoy-venv/bin/envoy"))
	tools.registry = look("", "docker-registry")
	tools.htpasswd = look("", "htpasswd")
	tools.oras = look("ORAS_BIN", "oras", filepath.Join(root, ".tools/bin/oras"))
	filterDir = filepath.Join(root, "examples/filters/bin")
	for _, f := range filterNames {
		if _, err := os.Stat(filterPath(f)); err != nil {
			missing = append(missing, filterPath(f)+" (run `make filters`)")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %v: run `make deps` (Envoy, docker-registry, htpasswd, oras) "+
			"and `make filters`, or set ENVOY_BIN", missing)
	}
	return nil
}

// filterPath is the built module of an example filter.
func filterPath(name string) string { return filepath.Join(filterDir, name+".wasm") }

// repoRoot is the module root: this package lives in <root>/e2e.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// requireFull skips a test in -short mode, which runs unit tests only.
func requireFull(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test; runs without -short")
	}
}

// Shared module references, pushed once per run.
const (
	refAddHeader   = "filters/add-header:v1"
	refConfigEcho  = "filters/config-echo:v1"
	refRateLimit   = "filters/rate-limit:v1"
	refLogger      = "filters/header-logger:v1"
	refFailOn      = "filters/fail-on-header:v1"
	refOrasAdd     = "filters/add-header-oras:v1"          // pushed with the oras CLI
	refCompat      = "filters/add-header-compat:v1"        // OCI image
	refCompatDock  = "filters/add-header-compat-docker:v1" // Docker image
	refHotV1       = "filters/hot:v1"                      // add-header
	refHotV2       = "filters/hot:v2"                      // config-echo: a new tag, new behaviour
	refNeverPushed = "filters/never-pushed:v1"
)

func pushSharedModules(r *registry) error {
	for ref, file := range map[string]string{
		refAddHeader:  "add-header",
		refConfigEcho: "config-echo",
		refRateLimit:  "rate-limit",
		refLogger:     "header-logger",
		refFailOn:     "fail-on-header",
		refHotV1:      "add-header",
		refHotV2:      "config-echo",
	} {
		if _, err := r.pushWasmxds(nil, filterPath(file), ref); err != nil {
			return err
		}
	}
	if err := r.pushOras(filterPath("add-header"), refOrasAdd); err != nil {
		return err
	}
	if _, err := r.pushCompatImage(filterPath("add-header"), refCompat, ociImage); err != nil {
		return err
	}
	_, err := r.pushCompatImage(filterPath("add-header"), refCompatDock, dockerImage)
	return err
}
