package bootstrap

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/wasmxds/wasmxds/internal/testenv"
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

// opts are the options the command's flag defaults give, for node id.
func opts(nodeID string) Options {
	return Options{NodeID: nodeID, NodeCluster: DefaultNodeCluster, XDSAddress: DefaultXDSAddress,
		AdminAddress: DefaultAdminAddress, AdminPort: DefaultAdminPort}
}

// render renders o and writes its SDS files, as the command does.
func render(t *testing.T, o Options) string {
	t.Helper()
	b, err := Render(o)
	if err != nil {
		t.Fatalf("Render(%+v): %v", o, err)
	}
	if err := b.WriteSDSFiles(); err != nil {
		t.Fatal(err)
	}
	return string(b.YAML)
}

func TestPassesEnvoyValidate(t *testing.T) {
	envoy := envoyPath(t)
	ipSotW := opts("edge-1")
	ipSotW.Labels = map[string]string{"app": "httpbin", "version": "1"}
	dnsDelta := opts("edge-2")
	dnsDelta.NodeCluster, dnsDelta.Labels, dnsDelta.XDSAddress = "edge", map[string]string{"app": "httpbin"}, "localhost:18000"
	dnsDelta.AdminPort, dnsDelta.Delta = 19901, true
	noTelemetry := opts("edge-4")
	noTelemetry.NoTelemetry = true
	flush := opts("edge-5")
	flush.StatsFlushInterval = time.Second
	cases := map[string]Options{
		"ip sotw":      ipSotW,
		"dns delta":    dnsDelta,
		"no labels":    opts("edge-3"),
		"no telemetry": noTelemetry,
		"flush 1s":     flush,
	}
	for name, o := range cases {
		t.Run(name, func(t *testing.T) {
			envoyValidate(t, envoy, render(t, o))
		})
	}
}

func TestCarriesNodeIdentity(t *testing.T) {
	o := opts("edge-1")
	o.Labels = map[string]string{"app": "httpbin", "version": "1"}
	o.XDSAddress, o.Delta = "cp.example:18000", true
	out := render(t, o)
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
		t.Errorf("api_type = %q with Delta", doc.Dynamic.ADS.APIType)
	}
	if !strings.Contains(out, "type: STRICT_DNS") {
		t.Errorf("a DNS name should give a STRICT_DNS cluster:\n%s", out)
	}
}

// TestRejectsBadInput: each refused option says which one, by its flag.
func TestRejectsBadInput(t *testing.T) {
	for name, tc := range map[string]struct {
		change func(*Options)
		want   string
	}{
		"no node id":       {func(o *Options) { o.NodeID = "" }, "--node-id is required"},
		"empty label name": {func(o *Options) { o.Labels = map[string]string{"": "x"} }, "--labels: empty label name"},
		"bad address":      {func(o *Options) { o.XDSAddress = "nohostport" }, `--xds-address "nohostport": address nohostport: missing port in address`},
		"bad port":         {func(o *Options) { o.XDSAddress = "127.0.0.1:99999" }, `--xds-address "127.0.0.1:99999": want HOST:PORT`},
		"no host":          {func(o *Options) { o.XDSAddress = ":18000" }, `--xds-address ":18000": want HOST:PORT`},
		"flush -1s":        {func(o *Options) { o.StatsFlushInterval = -time.Second }, "--stats-flush-interval -1s: want at least 1ms and under 5m"},
		"flush 1h":         {func(o *Options) { o.StatsFlushInterval = time.Hour }, "--stats-flush-interval 1h0m0s: want at least 1ms and under 5m"},
	} {
		t.Run(name, func(t *testing.T) {
			o := opts("n")
			tc.change(&o)
			b, err := Render(o)
			if err == nil || err.Error() != tc.want {
				t.Errorf("error = %v, want %q", err, tc.want)
			}
			if len(b.YAML) != 0 || len(b.SDSFiles) != 0 {
				t.Errorf("rendered a bootstrap anyway: %d bytes, %d SDS files", len(b.YAML), len(b.SDSFiles))
			}
		})
	}
}

// TestFlushIntervalZeroIsTheDefault: an unset interval is Envoy's default,
// written out; a set one is used as it is.
func TestFlushIntervalZeroIsTheDefault(t *testing.T) {
	for flush, want := range map[time.Duration]string{0: "stats_flush_interval: 5s\n", 200 * time.Millisecond: "stats_flush_interval: 0.200s\n"} {
		o := opts("n")
		o.StatsFlushInterval = flush
		if out := render(t, o); !strings.Contains(out, want) {
			t.Errorf("StatsFlushInterval %v: output lacks %q:\n%s", flush, want, out)
		}
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

// TestKeepsStringsStrings feeds each tricky string as node id, node
// cluster and label value (and label name) through Envoy: Envoy must
// accept the file and report the very same strings.
func TestKeepsStringsStrings(t *testing.T) {
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
			out := render(t, Options{
				NodeID: id, NodeCluster: id, Labels: labels,
				XDSAddress: "127.0.0.1:18000", AdminAddress: "127.0.0.1", AdminPort: 0,
			})
			envoyValidate(t, envoy, out)
			node := startBootstrapEnvoy(t, out).node(t)
			if node.ID != id || node.Cluster != id {
				t.Errorf("Envoy reads node id %q, cluster %q; want %q", node.ID, node.Cluster, id)
			}
			assertStringLabels(t, node, labels)
		})
	}
}

// TestLabelValuesStayStrings is what a user types on the command line
// (`--node-id n --labels canary=yes,stage=on,build=0123,zone=~`): the
// label "yes" must reach Envoy as the string "yes", and the node id n as
// "n" (plain n is false, which Envoy refuses as an id).
func TestLabelValuesStayStrings(t *testing.T) {
	o := opts("n")
	o.Labels = map[string]string{"canary": "yes", "stage": "on", "build": "0123", "zone": "~"}
	o.AdminPort = 0
	out := render(t, o)
	envoyValidate(t, envoyPath(t), out)
	node := startBootstrapEnvoy(t, out).node(t)
	if node.ID != "n" {
		t.Errorf("Envoy reads node id %q, want \"n\"", node.ID)
	}
	assertStringLabels(t, node, o.Labels)
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

// TestReportsStatsToWasmxds: by default Envoy streams its stats (counters
// as deltas, full names) to the ADS cluster; NoTelemetry leaves the sink
// out.
func TestReportsStatsToWasmxds(t *testing.T) {
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
	o := opts("n")
	o.StatsFlushInterval = DefaultStatsFlushInterval
	var doc sinkDoc
	if err := yaml.Unmarshal([]byte(render(t, o)), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Sinks) != 1 || doc.Sinks[0].Name != "envoy.stat_sinks.metrics_service" || !doc.Sinks[0].Config.Deltas ||
		doc.Sinks[0].Config.Tags || doc.Sinks[0].Config.GRPC.Envoy.Cluster != "wasmxds_xds" || doc.Flush != "5s" {
		t.Errorf("stat sink = %+v, flush %q; want the metrics service on wasmxds_xds, deltas, every 5s", doc.Sinks, doc.Flush)
	}
	o.NoTelemetry = true
	doc = sinkDoc{}
	if err := yaml.Unmarshal([]byte(render(t, o)), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Sinks) != 0 || doc.Flush != "" {
		t.Errorf("NoTelemetry: sinks %+v, flush %q; want none", doc.Sinks, doc.Flush)
	}
}
