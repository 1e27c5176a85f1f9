package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/wasmxds/wasmxds/internal/testproc"
)

// TestLocalDemoSpecsResolve serves the shipped configs/local as it is and
// checks that every plugin resolves to the module `make filters` built.
func TestLocalDemoSpecsResolve(t *testing.T) {
	requireFull(t)
	t.Parallel()
	srv := startServer(t, serverOptions{configDir: filepath.Join(repoRoot(), "configs", "local")})
	want := map[string]string{
		"add-header":  moduleSHA256(t, "add-header"),
		"config-echo": moduleSHA256(t, "config-echo"),
	}
	eventually(t, applyTimeout, func() error {
		st, err := debugStatus(srv)
		if err != nil {
			return err
		}
		if len(st.SpecErrors) > 0 {
			return fmt.Errorf("configs/local has errors: %q", st.SpecErrors)
		}
		got := map[string]string{}
		for _, p := range st.Plugins {
			if p.Error != "" {
				return fmt.Errorf("plugin %s: %s", p.Name, p.Error)
			}
			got[p.Name] = p.SHA256
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("plugins resolved to %v, want %v", got, want)
		}
		return nil
	})
}

// meshRewrite maps compose addresses to where the same things run locally.
type meshRewrite struct {
	registry  string            // replaces the compose registry, registry:5000
	ports     map[string]int    // listener name → local port
	endpoints map[string]string // compose host:port → local host:port
}

// rewriteMeshSpecs copies configs/mesh into dir with compose addresses
// replaced by local ones; everything else — selectors, plugins, their
// configuration, phases — is kept as shipped.
func rewriteMeshSpecs(dir string, rw meshRewrite) error {
	files, err := filepath.Glob(filepath.Join(repoRoot(), "configs", "mesh", "*.yaml"))
	if err != nil {
		return err
	}
	for _, f := range files {
		out, isSpec, err := rewriteFile(f, rw)
		if err != nil {
			return fmt.Errorf("%s: %w", filepath.Base(f), err)
		}
		if isSpec {
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), out, 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

func rewriteFile(path string, rw meshRewrite) ([]byte, bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false, err
	}
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var d map[string]any
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, false, err
		}
		if d["kind"] == nil {
			return nil, false, nil // an Envoy bootstrap
		}
		if err := rw.apply(d); err != nil {
			return nil, false, err
		}
		if err := enc.Encode(d); err != nil {
			return nil, false, err
		}
	}
	return out.Bytes(), true, enc.Close()
}

func (rw meshRewrite) apply(d map[string]any) error {
	name := d["metadata"].(map[string]any)["name"].(string)
	spec := d["spec"].(map[string]any)
	switch d["kind"] {
	case "Listener":
		port, ok := rw.ports[name]
		if !ok {
			return fmt.Errorf("no local port for listener %s", name)
		}
		spec["port"] = port
	case "Cluster":
		for i, e := range spec["endpoints"].([]any) {
			local, ok := rw.endpoints[e.(string)]
			if !ok {
				return fmt.Errorf("cluster %s: no local address for %s", name, e)
			}
			spec["endpoints"].([]any)[i] = local
		}
	case "WasmPlugin":
		spec["url"] = strings.Replace(spec["url"].(string), "oci://registry:5000/", "oci://"+rw.registry+"/", 1)
	}
	return nil
}

// meshNode reads node id and labels from a shipped mesh bootstrap.
func meshNode(t *testing.T, file string) (string, map[string]string) {
	t.Helper()
	var b struct {
		Node struct {
			ID       string `yaml:"id"`
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
		} `yaml:"node"`
	}
	data, err := os.ReadFile(filepath.Join(repoRoot(), "configs", "mesh", file))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &b); err != nil {
		t.Fatal(err)
	}
	return b.Node.ID, b.Node.Metadata.Labels
}

// TestMeshSpecsAsLocalProcesses runs the compose mesh's specs and node
// labels with local processes: compose addresses become local ports, the
// registry is the suite's (which holds filters/<name>:v1 like the compose
// one), and each sidecar is an Envoy bootstrapped with the labels of its
// shipped bootstrap.
func TestMeshSpecsAsLocalProcesses(t *testing.T) {
	requireFull(t)
	t.Parallel()
	front, back := freePort(t), freePort(t)
	frontApp, backApp := startNamedUpstream(t, "frontend app\n"), startNamedUpstream(t, "backend app\n")
	srv := startServerWith(t, serverOptions{}, func(s *server) {
		err := rewriteMeshSpecs(s.configDir, meshRewrite{
			registry: shared.registry.addr,
			ports:    map[string]int{"frontend-ingress": front, "backend-ingress": back},
			endpoints: map[string]string{"frontend:5678": frontApp, "backend:5678": backApp,
				"backend:10000": fmt.Sprintf("127.0.0.1:%d", back)},
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	fid, flabels := meshNode(t, "envoy-frontend.yaml")
	bid, blabels := meshNode(t, "envoy-backend.yaml")
	fe := startEnvoy(t, srv, fid, flabels)
	be := startEnvoy(t, srv, bid, blabels)

	// Few requests: the frontend's rate limit is part of the shipped specs.
	eventually(t, applyTimeout, meshReply(front, "/", "frontend app\n", map[string]string{
		"x-wasm": "hello from the frontend sidecar", configEchoHeader: ""}))
	eventually(t, applyTimeout, meshReply(back, "/", "backend app\n", map[string]string{
		"x-wasm": "", configEchoHeader: `{"served_by":"backend sidecar"}`}))
	eventually(t, applyTimeout, meshReply(front, "/backend", "backend app\n", map[string]string{
		"x-wasm": "hello from the frontend sidecar", configEchoHeader: `{"served_by":"backend sidecar"}`}))
	// Envoy writes its log file in batches, so poll for the line.
	for _, e := range []*envoy{fe, be} {
		eventually(t, applyTimeout, func() error {
			if !strings.Contains(testproc.Tail(e.logPath, 2000), loggerLine) {
				return fmt.Errorf("Envoy %s: header-logger did not log %q", e.nodeID, loggerLine)
			}
			return nil
		})
	}
	eventually(t, applyTimeout, func() error {
		for range 3 * envoyConcurrency * 5 {
			r, err := get(front, "/")
			if err != nil {
				return err
			}
			if r.status == http.StatusForbidden && r.body == rateLimitBody {
				return nil
			}
		}
		return errors.New("the frontend's rate limit never answered 403")
	})
}

// meshReply checks one response's status, body and headers ("" = absent).
func meshReply(port int, path, body string, headers map[string]string) func() error {
	return func() error {
		r, err := get(port, path)
		if err != nil {
			return err
		}
		if r.status != http.StatusOK || r.body != body {
			return fmt.Errorf("GET :%d%s = %d %q, want 200 %q", port, path, r.status, r.body, body)
		}
		for k, v := range headers {
			if got := r.header.Get(k); got != v {
				return fmt.Errorf("GET :%d%s: %s = %q, want %q", port, path, k, got, v)
			}
		}
		return nil
	}
}
