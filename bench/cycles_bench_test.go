package bench

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkFleetCycles has BENCH_CYCLES (default 3) fleets of
// BENCH_CYCLE_CLIENTS (default 10000; half SotW, half delta, over
// BENCH_GROUPS label groups) connect to one `wasmxds serve` and leave, one
// after another, and reports the server's RSS after each and how long the
// departed fleet's node groups took to go (serve --group-idle-timeout 5s).
// Target: the last cycle ends within 10% of the first one's RSS, and every
// group is gone after its idle timeout.
func BenchmarkFleetCycles(b *testing.B) {
	bins := binaries(b)
	n := envInt(b, "BENCH_CYCLE_CLIENTS", 10000)
	fx, err := NewFixture(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	idle := 5 * time.Second
	res, err := RunCycles(context.Background(), bins.Wasmxds, fx, envDelivery(b), b.TempDir(), CyclesOptions{
		Fleet:  FleetOptions{Clients: n, Groups: envInt(b, "BENCH_GROUPS", 20), Mode: ModeMixed},
		Cycles: envInt(b, "BENCH_CYCLES", 3), GroupIdleTimeout: idle,
		SettleTimeout: time.Duration(envInt(b, "BENCH_SETTLE_SECONDS", 30)) * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	sec := Section{
		Title:  fmt.Sprintf("Fleets that come and go: %d cycles of %d clients, one server", len(res.Cycles), n),
		Header: []string{"cycle", "connect all", "RSS connected", "groups gone after leave", "RSS after", "vs cycle 1"},
	}
	first := res.Cycles[0].RSSAfter
	for i, c := range res.Cycles {
		sec.Rows = append(sec.Rows, []string{fmt.Sprint(i + 1), c.Connect.Round(100 * time.Millisecond).String(),
			Bytes(c.RSSConnected), c.GroupsGone.Round(100 * time.Millisecond).String(), Bytes(c.RSSAfter),
			fmt.Sprintf("%.2f×", float64(c.RSSAfter)/float64(first))})
	}
	last := res.Cycles[len(res.Cycles)-1].RSSAfter
	b.ReportMetric(float64(last)/float64(first), "rss-last/first")
	sec.Notes = append(sec.Notes,
		fmt.Sprintf("RSS idle before the first fleet: %s. serve --group-idle-timeout %v; \"groups gone\" runs from the fleet's departure until wasmxds_xds_node_groups is 0.", Bytes(res.RSSIdle), idle),
		"RSS after: polled until within 10% of idle or BENCH_SETTLE_SECONDS (30 s).",
		"The load generator runs in the same 2 cores as the server.")
	report.Add(sec)
}
