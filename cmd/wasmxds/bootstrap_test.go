package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmxds/wasmxds/internal/testenv"
	"gopkg.in/yaml.v3"
)

// envoyPath finds Envoy; a missing Envoy fails the test, since these tests
// exist to prove Envoy accepts our output.
func envoyPath(t *testing.T) string {
	t.Helper()
	p, err := testenv.Envoy()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func runBootstrap(t *testing.T, args ...string) string {
	t.Helper()
	cmd := newBootstrapCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("bootstrap %v: %v", args, err)
	}
	return out.String()
}

func TestBootstrapPassesEnvoyValidate(t *testing.T) {
	envoy := envoyPath(t)
	cases := map[string][]string{
		"ip sotw": {"--node-id", "edge-1", "--labels", "app=httpbin,version=1", "--xds-address", "127.0.0.1:18000"},
		"dns delta": {"--node-id", "edge-2", "--node-cluster", "edge", "--labels", "app=httpbin",
			"--xds-address", "localhost:18000", "--admin-port", "19901", "--delta"},
		"no labels": {"--node-id", "edge-3"},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			out := runBootstrap(t, args...)
			path := filepath.Join(t.TempDir(), "envoy.yaml")
			if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(envoy, "--mode", "validate", "-c", path, "--log-level", "warn")
			if msg, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("envoy rejected the bootstrap: %v\n%s\n---\n%s", err, msg, out)
			}
		})
	}
}

func TestBootstrapCarriesNodeIdentity(t *testing.T) {
	out := runBootstrap(t, "--node-id", "edge-1", "--labels", "app=httpbin,version=1",
		"--xds-address", "cp.example:18000", "--delta")
	var doc struct {
		Node struct {
			ID       string `yaml:"id"`
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
		} `yaml:"node"`
		Admin struct {
			Address struct {
				Socket struct {
					Address string `yaml:"address"`
					Port    int    `yaml:"port_value"`
				} `yaml:"socket_address"`
			} `yaml:"address"`
		} `yaml:"admin"`
		Dynamic struct {
			ADS struct {
				APIType string `yaml:"api_type"`
			} `yaml:"ads_config"`
		} `yaml:"dynamic_resources"`
	}
	if err := yaml.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("output is not YAML: %v\n%s", err, out)
	}
	if doc.Node.ID != "edge-1" || doc.Node.Metadata.Labels["app"] != "httpbin" || doc.Node.Metadata.Labels["version"] != "1" {
		t.Errorf("node = %+v", doc.Node)
	}
	if doc.Admin.Address.Socket.Address != "127.0.0.1" || doc.Admin.Address.Socket.Port != 9901 {
		t.Errorf("admin = %+v, want 127.0.0.1:9901", doc.Admin.Address.Socket)
	}
	if doc.Dynamic.ADS.APIType != "DELTA_GRPC" {
		t.Errorf("api_type = %q with --delta", doc.Dynamic.ADS.APIType)
	}
	if !strings.Contains(out, "type: STRICT_DNS") {
		t.Errorf("a DNS name should give a STRICT_DNS cluster:\n%s", out)
	}
}

func TestBootstrapRejectsBadInput(t *testing.T) {
	for name, args := range map[string][]string{
		"no node id":  {"--labels", "app=x"},
		"bad address": {"--node-id", "n", "--xds-address", "nohostport"},
		"bad port":    {"--node-id", "n", "--xds-address", "127.0.0.1:99999"},
	} {
		t.Run(name, func(t *testing.T) {
			cmd := newBootstrapCmd()
			cmd.SetOut(&bytes.Buffer{})
			cmd.SetErr(&bytes.Buffer{})
			cmd.SetArgs(args)
			if err := cmd.Execute(); err == nil {
				t.Errorf("bootstrap %v succeeded", args)
			}
		})
	}
}
