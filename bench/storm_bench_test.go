package bench

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/wasmxds/wasmxds/internal/xds"
)

// BenchmarkRestartStorm measures, for each fleet size in
// BENCH_STORM_CLIENTS (default 1000,5000,10000; half SotW, half delta, over
// BENCH_GROUPS label groups), how long a fleet takes to be re-subscribed
// after `wasmxds serve` is killed with SIGKILL — restarted on the same ports
// and cache, or with a second replica to move to — and how many responses
// on the resumed streams carried a version the client did not hold
// (target 0). BENCH_STORM_PPROF=dir saves CPU profiles of the load
// generator there, over each fleet's connection and its return.
func BenchmarkRestartStorm(b *testing.B) {
	bins := binaries(b)
	sizes := envInts(b, "BENCH_STORM_CLIENTS", []int{1000, 5000, 10000})
	groups := envInt(b, "BENCH_GROUPS", 20)
	delivery := envDelivery(b)
	sec := Section{
		Title: fmt.Sprintf("Restart storm: server killed (SIGKILL) → every client re-subscribed (%s delivery, %d label groups, half SotW / half delta)",
			delivery, groups),
		Header: []string{"scenario", "clients", "connect all", "server ready", "p50", "p99", "all re-subscribed",
			"re-subscribed / connect", "server sees all", "responses", "changed versions",
			"server CPU: connect / return", "load generator CPU: connect / return", "resumed again"},
	}
	for _, n := range sizes {
		for _, failover := range []bool{false, true} {
			fx, err := NewFixture(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			res, err := RunStorm(context.Background(), bins.Wasmxds, fx, delivery, b.TempDir(), StormOptions{
				Fleet: FleetOptions{Clients: n, Groups: groups, Mode: ModeMixed}, Failover: failover,
				Profiles: os.Getenv("BENCH_STORM_PPROF")})
			if err != nil {
				b.Fatalf("%s, %d clients: %v", res.Scenario, n, err)
			}
			b.Logf("%s %d clients: connect all %v ready %v p50 %v p99 %v all %v seen %v responses %d changed %d",
				res.Scenario, n, res.Connect, res.ServerUp, Percentile(res.Delays, 0.5), Percentile(res.Delays, 0.99),
				Percentile(res.Delays, 1), res.AllSeen, res.Responses, res.Changed)
			if len(res.ResumedAgain) > 0 {
				b.Logf("%s %d clients: resumed streams that broke and were opened again, by cause: %v", res.Scenario, n, res.ResumedAgain)
			}
			sec.Rows = append(sec.Rows, stormRow(res))
			b.ReportMetric(float64(Percentile(res.Delays, 1).Milliseconds()), fmt.Sprintf("all-ms/%s/%d", res.Scenario, n))
			b.ReportMetric(float64(res.Changed), fmt.Sprintf("changed/%s/%d", res.Scenario, n))
		}
	}
	sec.Notes = append(sec.Notes,
		"Times run from the SIGKILL. restart: the same binary, ports, config and cache start again at once; failover: a second replica (same specs, same advertised module URL) was running, and each client reconnects to it.",
		"Each client reconnects as Envoy does: a random wait up to 500 ms before the first attempt, the bound doubling with each failed one up to 30 s (full jitter). A SotW client is re-subscribed once every type is answered on its new stream (same-version answers are expected: a new stream has not been told anything yet); a delta client once its stream is open with its resource versions, to which a server with the same configuration answers nothing.",
		"connect all: the fleet's first connection, every client holding its configuration; each client starts after a random wait up to 500 ms, as it waits before reconnecting, so that both phases have clients arrive alike. re-subscribed / connect compares the return after the kill with it.",
		"changed versions: responses on the resumed streams carrying a version (SotW) or any resource (delta) the client did not hold; target 0.",
		"resumed again: clients whose resumed stream broke and was opened once more by the time the server saw every client (a delta client counts as re-subscribed once its stream is open, before the server has read it); the causes are in the benchmark's log.",
		"CPU (from /proc/<pid>/stat): over the first connection, of the server that held the fleet; over the return, of the one it came back to (restart: the new process, from its start); and of the load generator, both times.",
		"The load generator runs in the same 2 cores as the server; it collects its garbage before each phase and runs with GOGC 400 (see bench/generator.go).")
	report.Add(sec)
}

func stormRow(r StormResult) []string {
	up := "—"
	if r.ServerUp > 0 {
		up = Ms(r.ServerUp)
	}
	ratio := "—"
	if r.Connect > 0 {
		ratio = fmt.Sprintf("%.2f×", float64(Percentile(r.Delays, 1))/float64(r.Connect))
	}
	return []string{r.Scenario, fmt.Sprint(r.Clients), Ms(r.Connect), up, Ms(Percentile(r.Delays, 0.5)), Ms(Percentile(r.Delays, 0.99)),
		Ms(Percentile(r.Delays, 1)), ratio, Ms(r.AllSeen), fmt.Sprint(r.Responses), fmt.Sprint(r.Changed),
		Ms(r.ConnectCPU) + " / " + Ms(r.ReturnCPU), Ms(r.GeneratorConnectCPU) + " / " + Ms(r.GeneratorReturnCPU),
		fmt.Sprint(total(r.ResumedAgain))}
}

// TestRestartStormSmoke: a small mixed fleet gets its server killed, once
// restarted in place and once with a replica to move to; every client is
// re-subscribed and none is sent a version it did not hold.
func TestRestartStormSmoke(t *testing.T) {
	bins, err := Build(binDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, failover := range []bool{false, true} {
		fx, err := NewFixture(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		res, err := RunStorm(context.Background(), bins.Wasmxds, fx, xds.DeliveryECDS, t.TempDir(), StormOptions{
			Fleet: FleetOptions{Clients: 40, Groups: 4, Mode: ModeMixed}, Failover: failover, Timeout: time.Minute})
		if err != nil {
			t.Fatalf("%s: %v", res.Scenario, err)
		}
		if res.Missing != 0 || res.Changed != 0 {
			t.Errorf("%s: %d clients not re-subscribed, %d responses with changed versions", res.Scenario, res.Missing, res.Changed)
		}
		if res.Responses == 0 {
			t.Errorf("%s: no response on any resumed stream: the SotW clients were not re-subscribed", res.Scenario)
		}
		t.Logf("%s: all re-subscribed %v, server sees all %v, %d responses", res.Scenario, Percentile(res.Delays, 1), res.AllSeen, res.Responses)
	}
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
