package xds

import (
	"strings"
	"testing"
	"time"
)

// The sequences of docs/design/delivery.md, replayed on one node's record
// of one plugin: each step is an event and the phase and status it leaves.
func TestPluginDeliveryPhases(t *testing.T) {
	const node, plugin, group = "n", "p", "app=a"
	shaA, shaB := strings.Repeat("a", 64), strings.Repeat("b", 64)
	entries := func(sha string, nackOff bool) map[string]ecdsEntry {
		return map[string]ecdsEntry{plugin: {sha: sha, nackOff: nackOff}}
	}
	t0 := time.Unix(1_000_000, 0)
	type step struct {
		event func(d *deliveries)
		phase phase
		state string
	}
	sent := func(sha string) func(*deliveries) {
		return func(d *deliveries) { d.sent(node, entries(sha, false), nil, time.Time{}) }
	}
	ackRuns := func(sha string) func(*deliveries) {
		return func(d *deliveries) { d.acked(node, group, entries(sha, false), nil, nil) }
	}
	ackFirst := func(sha string, downloaded bool) func(*deliveries) {
		return func(d *deliveries) {
			d.acked(node, group, entries(sha, true), nil, map[string]bool{plugin: downloaded})
		}
	}
	download := func(sha string) func(*deliveries) {
		return func(d *deliveries) { d.downloaded(sha, "") }
	}
	nack := func(sha string, afterDownload bool, at time.Duration) func(*deliveries) {
		return func(d *deliveries) {
			d.nacked(node, plugin, sha, envoyCreateFailure, afterDownload, afterDownload, false, t0.Add(at))
		}
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"first module fetched as the listener warms, then confirmed", []step{
			{sent(shaA), phaseSent, PluginPending},
			{ackFirst(shaA, true), phaseWarming, PluginPending},
			{ackRuns(shaA), phaseRunning, PluginRunning},
		}},
		{"first module created from Envoy's cache, a download seen later", []step{
			{sent(shaA), phaseSent, PluginPending},
			{ackFirst(shaA, false), phaseProvisional, PluginRunning},
			{download(shaA), phaseWarming, PluginPending},
			{ackRuns(shaA), phaseRunning, PluginRunning},
		}},
		{"swap with a cache miss", []step{
			{ackRuns(shaA), phaseRunning, PluginRunning},
			{sent(shaB), phaseSent, PluginPending},
			{nack(shaB, false, 0), phaseFetching, PluginPending},
			{ackRuns(shaB), phaseRunning, PluginRunning},
		}},
		{"a VM that fails after the download", []step{
			{sent(shaB), phaseSent, PluginPending},
			{nack(shaB, false, 0), phaseFetching, PluginPending},
			{nack(shaB, true, time.Second), phaseFetching, PluginPending},
			{nack(shaB, true, 2*time.Second), phaseFetching, PluginPending},
			{nack(shaB, true, 3*time.Second), phaseFailed, PluginFailed},
		}},
		{"a module that never loads", []step{
			{sent(shaB), phaseSent, PluginPending},
			{nack(shaB, false, 0), phaseFetching, PluginPending},
			{nack(shaB, false, loadGiveUp+time.Second), phaseFailed, PluginFailed},
		}},
		{"a refused module stays failed while refused", []step{
			{nack(shaB, false, 0), phaseFetching, PluginPending},
			{nack(shaB, false, loadGiveUp+time.Second), phaseFailed, PluginFailed},
			{func(d *deliveries) {
				d.acked(node, group, entries(shaB, false), map[string]map[string]bool{plugin: {shaB: true}}, nil)
			}, phaseFailed, PluginFailed},
			{sent(shaA), phaseSent, PluginPending},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDeliveries()
			for i, s := range tc.steps {
				s.event(d)
				p := d.nodes[node][plugin]
				if p == nil {
					t.Fatalf("step %d: no record", i)
				}
				if p.phase != s.phase || p.State != s.state {
					t.Fatalf("step %d: %s (%s), want %s (%s)", i, p.phase, p.State, s.phase, s.state)
				}
				if (p.State == PluginFailed) != (p.Reason != "") {
					t.Errorf("step %d: state %s with reason %q", i, p.State, p.Reason)
				}
			}
		})
	}
}
