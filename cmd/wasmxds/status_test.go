package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/wasmxds/wasmxds/internal/controlplane"
	"github.com/wasmxds/wasmxds/internal/fetcher"
	"github.com/wasmxds/wasmxds/internal/xds"
)

func TestPrintStatusTables(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rep := controlplane.StatusReport{
		Ready: true, ConfigDir: "/etc/wasmxds", Listeners: 1, Clusters: 2,
		SpecErrors: []string{"plugins.yaml:12: unknown field \"bogus\""},
		Plugins: []controlplane.PluginReport{
			{Name: "auth", Phase: "AUTHN", Priority: 10, URL: "oci://r/auth:v1", SHA256: strings.Repeat("ab", 32),
				Modules: []controlplane.ModuleNodes{{SHA256: strings.Repeat("ab", 32), Running: 9}, {SHA256: strings.Repeat("12", 32), Rollout: true, Running: 1}},
				Rollout: &controlplane.RolloutReport{URL: "oci://r/auth:v2", Percent: 10, State: controlplane.RolloutHalted,
					SHA256: strings.Repeat("12", 32), Halted: &controlplane.HaltReport{Node: "edge-7", Reason: "VM\nrefused"}}},
			{Name: "broken", Phase: "STATS", URL: "oci://r/broken:v1", Error: "oci://r/broken:v1: not found"},
			{Name: "stale", Phase: "STATS", URL: "oci://r/stale:latest", SHA256: strings.Repeat("cd", 32), Error: "source unavailable"},
		},
		Modules: []fetcher.ModuleInfo{{SHA256: strings.Repeat("ab", 32), Size: 3 << 20, InUse: true, Refs: []string{"oci://r/auth:v1"}}},
		Nodes: []xds.NodeStatus{{
			ID: "edge-1", Labels: map[string]string{"app": "web", "zone": "a"}, Connected: now.Add(-90 * time.Second),
			Types: map[string]xds.TypeStatus{
				resource.ListenerType: {Sent: "1111111111111111aaaa", Acked: "1111111111111111aaaa"},
				resource.ClusterType:  {Sent: "3333333333333333", Acked: "2222222222222222"},
			},
			LastNack: &xds.Nack{TypeURL: resource.ClusterType, Version: "3333333333333333", Error: "bad\ncluster", Time: now.Add(-5 * time.Second)},
			Plugins: []xds.PluginStatus{
				{Name: "auth", SHA256: strings.Repeat("ab", 32), State: xds.PluginRunning},
				{Name: "new", SHA256: strings.Repeat("ef", 32), State: xds.PluginFailed, Reason: "VM\nrefused to start"},
			},
		}},
	}
	var out bytes.Buffer
	if err := printStatus(&out, rep, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"edge-1", "app=web,zone=a", "1m30s",
		"lds=111111111111", "cds=222222222222(sent 333333333333)",
		"cds 333333333333 5s ago: bad cluster",
		"auth", "AUTHN/10", "abababababab", "9 running",
		"rollout 10%", "halted", "oci://r/auth:v2", "121212121212 (refused by edge-7: VM refused)",
		"ERROR oci://r/broken:v1: not found",
		"cdcdcdcdcdcd (last good; source unavailable)",
		"3.0MiB", "yes",
		"SPEC ERRORS (1)", "plugins.yaml:12:",
		"NODE PLUGINS (2)", "running", "efefefefefef", "VM refused to start",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// With peers, status lists the replicas and, per node, the replica holding
// it; a node of an unreachable replica says so.
func TestPrintStatusFleet(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rep := controlplane.StatusReport{Ready: true,
		Replicas: []controlplane.ReplicaReport{
			{ID: "wasmxds-1", Address: "10.0.0.1:18081", State: controlplane.PeerSelf, Ready: true, Nodes: 1, LastSeen: now},
			{ID: "wasmxds-2", Address: "10.0.0.2:18081", State: controlplane.PeerUnreachable, Nodes: 1,
				LastSeen: now.Add(-45 * time.Second), Error: "peer: connection refused"},
		},
		Nodes: []xds.NodeStatus{{ID: "edge-1", Replica: "wasmxds-1"}, {ID: "edge-2", Replica: "wasmxds-2", Unreachable: true}},
	}
	var out bytes.Buffer
	if err := printStatus(&out, rep, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"REPLICAS (2)", "10.0.0.2:18081", "unreachable: peer: connection refused", "45s ago",
		"edge-1  wasmxds-1 ", "edge-2  wasmxds-2 (unreachable)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// Runtime health per node and plugin, with what needs attention first, and
// a rollout's analysis and completion.
func TestPrintStatusRuntime(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rep := controlplane.StatusReport{
		Plugins: []controlplane.PluginReport{{Name: "auth", URL: "oci://r/auth:v1",
			Rollout: &controlplane.RolloutReport{URL: "oci://r/auth:v2", Percent: 100, State: controlplane.RolloutActive,
				RolloutProgress: controlplane.RolloutProgress{Steps: []int{10, 100}, Complete: true,
					Promote:  "every node runs the rollout module: set url to oci://r/auth:v2 to promote it",
					Analysis: &controlplane.AnalysisReport{Verdict: controlplane.VerdictHealthy, Reason: "5xx rate 0.0%"}}}}},
		Nodes: []xds.NodeStatus{{ID: "edge-1", Plugins: []xds.PluginStatus{
			{Name: "auth", State: xds.PluginRunning, Runtime: &xds.PluginRuntime{Requests: 200, Errors5xx: 100, LastReport: now}},
			{Name: "calm", State: xds.PluginRunning, Runtime: &xds.PluginRuntime{Requests: 50, LastReport: now}},
			{Name: "silent", State: xds.PluginRunning},
		}}},
	}
	var out bytes.Buffer
	if err := printStatus(&out, rep, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"LAST MINUTE", "! 5xx rate 50.0%: 200 req, 100 5xx (50.0%), 0 VM reloads", "50 req, 0 5xx (0.0%), 0 VM reloads",
		"rollout 100%", "active (steps 10,100), complete", "analysis", "healthy", "set url to oci://r/auth:v2 to promote it",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// A rollout halted by its analysis says so, with the rates, instead of
// naming a node that refused it.
func TestPrintStatusAnalysisHalt(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	reason := "5xx rate 50.0% (50 of 100 requests) on the 2 chosen nodes running the rollout module, 2.0% (2 of 100) on the 2 nodes running the main module"
	rep := controlplane.StatusReport{
		Plugins: []controlplane.PluginReport{{Name: "auth", URL: "oci://r/auth:v1",
			Rollout: &controlplane.RolloutReport{URL: "oci://r/auth:v2", Percent: 50, State: controlplane.RolloutHalted,
				SHA256: strings.Repeat("12", 32), Halted: &controlplane.HaltReport{Cause: controlplane.HaltAnalysis,
					Node: "edge-7", Replica: "wasmxds-2", Reason: reason}}}},
	}
	var out bytes.Buffer
	if err := printStatus(&out, rep, now); err != nil {
		t.Fatal(err)
	}
	if want := "121212121212 (halted by analysis on wasmxds-2: 5xx rate 50.0% (50 of 100 requests) on the 2 chosen"; !strings.Contains(out.String(), want) {
		t.Errorf("output lacks %q:\n%s", want, out.String())
	}
	if strings.Contains(out.String(), "refused by") {
		t.Errorf("an analysis halt reads as a refusal:\n%s", out.String())
	}
}
