package e2e

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmxds/wasmxds/internal/testproc"
)

// serverOptions configures a wasmxds serve process.
type serverOptions struct {
	delivery  string   // --filter-delivery; empty keeps the default
	configDir string   // serve this directory instead of a new empty one
	env       []string // extra environment, e.g. DOCKER_CONFIG
	insecure  []string // registries spoken to over plain HTTP
	args      []string // more serve flags
	scheme    string   // of --advertise-url; empty: http
}

// server is a running `wasmxds serve` with its own config and cache
// directories and ports.
type server struct {
	t         testing.TB
	opts      serverOptions
	configDir string
	cacheDir  string
	xdsAddr   string
	httpAddr  string // modules
	adminAddr string // health, status, metrics
	logPath   string
	proc      *testproc.Proc
}

// startServer starts wasmxds on free ports with an empty config directory
// (write specs with writeSpec) and waits until it is ready.
func startServer(t testing.TB, opts serverOptions) *server {
	t.Helper()
	return startServerWith(t, opts, nil)
}

// startServerWith is startServer with a hook that writes the initial specs
// before the process starts.
func startServerWith(t testing.TB, opts serverOptions, before func(*server)) *server {
	t.Helper()
	dir := t.TempDir()
	s := &server{t: t, opts: opts,
		configDir: filepath.Join(dir, "configs"), cacheDir: filepath.Join(dir, "cache"),
		xdsAddr:   fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		httpAddr:  fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		adminAddr: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		logPath:   filepath.Join(dir, "wasmxds.log")}
	if opts.configDir != "" {
		s.configDir = opts.configDir
	}
	for _, d := range []string{s.configDir, s.cacheDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	testproc.DumpOnFailure(t, "wasmxds", s.logPath)
	t.Cleanup(func() {
		if s.proc != nil {
			s.proc.Stop()
		}
	})
	if before != nil {
		before(s)
	}
	s.start()
	return s
}

// start (re)starts the process on the same ports and directories.
func (s *server) start() {
	s.t.Helper()
	args := []string{tools.wasmxds, "serve",
		"--config-dir", s.configDir, "--cache-dir", s.cacheDir,
		"--xds-listen", s.xdsAddr, "--http-listen", s.httpAddr, "--admin-listen", s.adminAddr,
		"--advertise-url", cmp.Or(s.opts.scheme, "http") + "://" + s.httpAddr}
	args = append(args, s.opts.args...)
	if s.opts.delivery != "" {
		args = append(args, "--filter-delivery", s.opts.delivery)
	}
	for _, r := range append([]string{shared.registry.addr}, s.opts.insecure...) {
		args = append(args, "--insecure-registry", r)
	}
	p, err := testproc.Start("wasmxds", s.logPath, s.opts.env, args...)
	if err != nil {
		s.t.Fatal(err)
	}
	s.proc = p
	eventually(s.t, 30*time.Second, func() error {
		if err := p.Alive(); err != nil {
			return err
		}
		return s.get("/readyz", nil)
	})
}

// restart stops the process and starts it again with the same flags.
func (s *server) restart() {
	s.t.Helper()
	s.proc.Stop()
	s.start()
}

// url returns an http URL on the server's admin listener.
func (s *server) url(path string) string { return "http://" + s.adminAddr + path }

// get fetches path and, when into is not nil, decodes its JSON body.
func (s *server) get(path string, into any) error {
	resp, err := http.Get(s.url(path))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	if into != nil {
		return json.Unmarshal(b, into)
	}
	return nil
}

// writeSpec atomically replaces a spec file, as an editor saving it would,
// so the server never reads half a file.
func (s *server) writeSpec(name, content string) {
	s.t.Helper()
	tmp := filepath.Join(s.configDir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(s.configDir, name)); err != nil {
		s.t.Fatal(err)
	}
}

// removeSpec deletes a spec file.
func (s *server) removeSpec(name string) {
	s.t.Helper()
	if err := os.Remove(filepath.Join(s.configDir, name)); err != nil {
		s.t.Fatal(err)
	}
}

// statusText runs `wasmxds status` against this server, as a user would.
func (s *server) statusText(args ...string) (string, error) {
	return run(nil, append([]string{tools.wasmxds, "status", "--server", s.url("")}, args...)...)
}
