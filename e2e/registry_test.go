package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmxds/wasmxds/internal/testproc"
)

// registry is a running Debian docker-registry (distribution 2.x) on
// 127.0.0.1.
type registry struct {
	addr     string // host:port
	dir      string
	cfgPath  string
	user     string // set when htpasswd auth is on
	password string
	proc     *testproc.Proc
}

// startRegistry starts docker-registry with filesystem storage under dir.
// With user set, it requires htpasswd basic auth.
func startRegistry(dir, user, password string) (*registry, error) {
	port, err := testproc.FreePort()
	if err != nil {
		return nil, err
	}
	r := &registry{addr: fmt.Sprintf("127.0.0.1:%d", port), dir: dir, user: user, password: password,
		cfgPath: filepath.Join(dir, "config.yml")}
	if err := r.writeConfig(); err != nil {
		return nil, err
	}
	if err := r.start(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *registry) writeConfig() error {
	cfg := fmt.Sprintf(`version: 0.1
log: {level: info, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: %s}
  delete: {enabled: true}
http:
  addr: %s
`, filepath.Join(r.dir, "data"), r.addr)
	if r.user != "" {
		hp := filepath.Join(r.dir, "htpasswd")
		out, err := run(nil, tools.htpasswd, "-Bbn", r.user, r.password)
		if err != nil {
			return fmt.Errorf("htpasswd: %w", err)
		}
		if err := os.WriteFile(hp, []byte(out), 0o600); err != nil {
			return err
		}
		cfg += fmt.Sprintf("auth:\n  htpasswd: {realm: e2e, path: %s}\n", hp)
	}
	return os.WriteFile(r.cfgPath, []byte(cfg), 0o644)
}

// start (re)starts the registry process on its address and waits for /v2/.
func (r *registry) start() error {
	p, err := testproc.Start("registry", filepath.Join(r.dir, "registry.log"), nil,
		tools.registry, "serve", r.cfgPath)
	if err != nil {
		return err
	}
	r.proc = p
	err = poll(20*time.Second, func() error {
		if err := p.Alive(); err != nil {
			return err
		}
		resp, err := http.Get("http://" + r.addr + "/v2/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		// 401 is an answer too: the registry is up and wants credentials.
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
			return fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		p.Stop()
		return fmt.Errorf("registry on %s: %w", r.addr, err)
	}
	return nil
}

func (r *registry) stop() {
	if r.proc != nil {
		r.proc.Stop()
	}
}

// startRegistryT starts a registry private to one test.
func startRegistryT(t testing.TB, user, password string) *registry {
	t.Helper()
	r, err := startRegistry(t.TempDir(), user, password)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.stop)
	testproc.DumpOnFailure(t, "registry", filepath.Join(r.dir, "registry.log"))
	return r
}

// ref returns an OCI reference to repo:tag in this registry, without scheme.
func (r *registry) ref(repoTag string) string { return r.addr + "/" + repoTag }

// dockerConfig writes a docker config.json holding this registry's
// credentials into a new directory and returns the directory (DOCKER_CONFIG).
func (r *registry) dockerConfig(dir string) (string, error) {
	auth := base64.StdEncoding.EncodeToString([]byte(r.user + ":" + r.password))
	b, err := json.Marshal(map[string]any{"auths": map[string]any{r.addr: map[string]string{"auth": auth}}})
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600)
}

// pushWasmxds publishes a module with `wasmxds push` (plain HTTP: the
// registry is on 127.0.0.1). env may carry DOCKER_CONFIG for a registry that
// wants credentials.
func (r *registry) pushWasmxds(env []string, file, repoTag string) (string, error) {
	return run(env, tools.wasmxds, "push", file, r.ref(repoTag))
}

// pushOras publishes a module with the oras CLI, as a user following the
// Wasm OCI artifact layout by hand would.
func (r *registry) pushOras(file, repoTag string) error {
	dir, err := os.MkdirTemp("", "oras-push-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "cfg.json"), []byte("{}"), 0o644); err != nil {
		return err
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	// oras records file names as given, so push from a directory holding
	// just the module under a plain name.
	if err := os.WriteFile(filepath.Join(dir, "plugin.wasm"), b, 0o644); err != nil {
		return err
	}
	args := []string{tools.oras, "push", "--plain-http", "--disable-path-validation",
		"--config", "cfg.json:application/vnd.module.wasm.config.v1+json"}
	if r.user != "" {
		args = append(args, "--username", r.user, "--password-stdin")
	}
	args = append(args, r.ref(repoTag), "plugin.wasm:application/vnd.module.wasm.content.layer.v1+wasm")
	cmd := commandIn(dir, args...)
	if r.user != "" {
		cmd.Stdin = strings.NewReader(r.password)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("oras push: %w\n%s", err, out)
	}
	return nil
}
