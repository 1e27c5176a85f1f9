package main

import (
	"bytes"
	"encoding/json"
	"fmt"
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
		"no labels":    {"--node-id", "edge-3"},
		"no telemetry": {"--node-id", "edge-4", "--no-telemetry"},
		"flush 1s":     {"--node-id", "edge-5", "--stats-flush-interval", "1s"},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			envoyValidate(t, envoy, runBootstrap(t, args...))
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
		"flush -1s":   {"--node-id", "n", "--stats-flush-interval", "-1s"},
		"flush 1h":    {"--node-id", "n", "--stats-flush-interval", "1h"},
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

// trickyStrings are strings that some YAML reader takes for something
// else: YAML 1.1 booleans (Envoy's parser still reads them so), nulls,
// numbers in several notations, and text with YAML syntax in it.
var trickyStrings = []string{
	"yes", "No", "ON", "off", "y", "n", "N", "true", "False",
	"~", "null", "NULL", "0123", "0x1F", "+1", "-0", "1e3", ".inf", "12:30", "1_000", "2001-12-14",
	"<<", "=", "a: b", "x #y", "#x", "- a", "{a}", "[a]", "'q'", `"dq"`, "@x", " padded ", "two\nlines", "plain",
}

// TestBootstrapKeepsStringsStrings feeds each tricky string as node id,
// node cluster and label value (and label name) through Envoy: Envoy must
// accept the file and report the very same strings.
func TestBootstrapKeepsStringsStrings(t *testing.T) {
	envoy := envoyPath(t)
	labels := map[string]string{"empty": ""}
	for i, s := range trickyStrings {
		labels[fmt.Sprintf("v%02d", i)] = s
		if !strings.Contains(s, "\n") {
			labels[s] = "key"
		}
	}
	for _, id := range trickyStrings {
		t.Run(fmt.Sprintf("%q", id), func(t *testing.T) {
			out, err := renderBootstrap(bootstrapOptions{
				nodeID: id, nodeCluster: id, labels: labels,
				xdsAddress: "127.0.0.1:18000", adminAddress: "127.0.0.1", adminPort: 0,
			})
			if err != nil {
				t.Fatal(err)
			}
			envoyValidate(t, envoy, out.bootstrap)
			node := startBootstrapEnvoy(t, out.bootstrap).node(t)
			if node.ID != id || node.Cluster != id {
				t.Errorf("Envoy reads node id %q, cluster %q; want %q", node.ID, node.Cluster, id)
			}
			assertStringLabels(t, node, labels)
		})
	}
}

// TestBootstrapLabelFlagKeepsStrings is the command line as a user types
// it: --labels canary=yes must reach Envoy as the string "yes", and
// --node-id n as "n" (plain n is false, which Envoy refuses as an id).
func TestBootstrapLabelFlagKeepsStrings(t *testing.T) {
	out := runBootstrap(t, "--node-id", "n", "--labels", "canary=yes,stage=on,build=0123,zone=~",
		"--admin-port", "0")
	envoyValidate(t, envoyPath(t), out)
	node := startBootstrapEnvoy(t, out).node(t)
	if node.ID != "n" {
		t.Errorf("Envoy reads node id %q, want \"n\"", node.ID)
	}
	assertStringLabels(t, node, map[string]string{"canary": "yes", "stage": "on", "build": "0123", "zone": "~"})
}

func envoyValidate(t *testing.T, envoy, bootstrap string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "envoy.yaml")
	if err := os.WriteFile(path, []byte(bootstrap), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(envoy, "--mode", "validate", "-c", path, "--log-level", "warn")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("envoy rejected the bootstrap: %v\n%s\n---\n%s", err, msg, bootstrap)
	}
}

// assertStringLabels checks that Envoy holds each label as a JSON string
// equal to the one given.
func assertStringLabels(t *testing.T, node envoyNode, want map[string]string) {
	t.Helper()
	for k, v := range want {
		raw, ok := node.Metadata.Labels[k]
		if !ok {
			t.Errorf("label %q missing in Envoy's node metadata", k)
			continue
		}
		var got string
		if err := json.Unmarshal(raw, &got); err != nil || got != v {
			t.Errorf("label %q: Envoy holds %s, want the string %q", k, raw, v)
		}
	}
	if len(node.Metadata.Labels) != len(want) {
		t.Errorf("Envoy holds %d labels, want %d", len(node.Metadata.Labels), len(want))
	}
}

// TestBootstrapReportsStatsToWasmxds: by default Envoy streams its stats
// (counters as deltas, full names) to the ADS cluster; --no-telemetry
// leaves the sink out.
func TestBootstrapReportsStatsToWasmxds(t *testing.T) {
	type sinkDoc struct {
		Sinks []struct {
			Name   string `yaml:"name"`
			Config struct {
				Deltas bool `yaml:"report_counters_as_deltas"`
				Tags   bool `yaml:"emit_tags_as_labels"`
				GRPC   struct {
					Envoy struct {
						Cluster string `yaml:"cluster_name"`
					} `yaml:"envoy_grpc"`
				} `yaml:"grpc_service"`
			} `yaml:"typed_config"`
		} `yaml:"stats_sinks"`
		Flush string `yaml:"stats_flush_interval"`
	}
	var doc sinkDoc
	if err := yaml.Unmarshal([]byte(runBootstrap(t, "--node-id", "n")), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Sinks) != 1 || doc.Sinks[0].Name != "envoy.stat_sinks.metrics_service" || !doc.Sinks[0].Config.Deltas ||
		doc.Sinks[0].Config.Tags || doc.Sinks[0].Config.GRPC.Envoy.Cluster != "wasmxds_xds" || doc.Flush != "5s" {
		t.Errorf("stat sink = %+v, flush %q; want the metrics service on wasmxds_xds, deltas, every 5s", doc.Sinks, doc.Flush)
	}
	doc = sinkDoc{}
	if err := yaml.Unmarshal([]byte(runBootstrap(t, "--node-id", "n", "--no-telemetry")), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Sinks) != 0 || doc.Flush != "" {
		t.Errorf("--no-telemetry: sinks %+v, flush %q; want none", doc.Sinks, doc.Flush)
	}
}
