package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wasmxds/wasmxds/internal/xds"
)

// BenchmarkConvergence measures, for each fleet size in BENCH_CLIENTS
// (default 1000,2000,5000,10000), how long a spec change takes to be ACKed
// by every simulated Envoy (half SotW, half delta, over BENCH_GROUPS label
// groups), first against the floor server and then against `wasmxds
// serve`, and the server's memory before, during and after the fleet.
func BenchmarkConvergence(b *testing.B) {
	bins := binaries(b)
	sizes := envInts(b, "BENCH_CLIENTS", []int{1000, 2000, 5000, 10000})
	groups := envInt(b, "BENCH_GROUPS", 20)
	rounds := envInt(b, "BENCH_ROUNDS", 5)
	delivery := envDelivery(b)
	sec := Section{
		Title: fmt.Sprintf("Convergence: spec change → every client ACKed (%s delivery, %d label groups, half SotW / half delta, %d changes per row)",
			delivery, groups, rounds),
		Header: []string{"server", "clients", "p50", "p99", "time to 100%", "median change", "p99 / floor", "CPU per change", "CPU / floor", "load generator CPU", "connect all",
			"RSS idle", "RSS connected", "per client", "RSS after leave (wait)"},
	}
	for _, n := range sizes {
		opts := ConvergenceOptions{
			Fleet:  FleetOptions{Clients: n, Groups: groups, Mode: ModeMixed},
			Rounds: rounds, RoundTimeout: 60 * time.Second,
			SettleTimeout: time.Duration(envInt(b, "BENCH_SETTLE_SECONDS", 30)) * time.Second,
		}
		floor := convergeOn(b, "floor", opts, func(fx *Fixture, dir string) (Target, error) {
			return StartFloor(bins.Floor, fx, delivery, dir)
		})
		wx := convergeOn(b, "wasmxds", opts, func(fx *Fixture, dir string) (Target, error) {
			return StartWasmxds(bins.Wasmxds, fx, delivery, dir)
		})
		for _, r := range []ConvergenceResult{floor, wx} {
			sec.Rows = append(sec.Rows, convergenceRow(r, floor))
		}
		b.ReportMetric(float64(wx.P99().Microseconds())/1000, fmt.Sprintf("p99-ms/%d", n))
		b.ReportMetric(float64(wx.Max().Microseconds())/1000, fmt.Sprintf("all-ms/%d", n))
		b.ReportMetric(float64(wx.PerClient()), fmt.Sprintf("rss-B/client/%d", n))
		b.ReportMetric(float64(wx.CPUPerRound().Microseconds())/1000, fmt.Sprintf("cpu-ms/change/%d", n))
	}
	sec.Notes = append(sec.Notes,
		"Time to 100% is the slowest change's time until the last client ACKed; median change is the median over the changes.",
		"Times run from just before the change (the spec file's atomic rename for wasmxds, the resource upload for the floor) to each client's ACK of the first response carrying it.",
		fmt.Sprintf("wasmxds times include the config directory watch's %v debounce; the floor has none.", Debounce),
		"RSS is the server process's VmRSS; per client = (connected − idle) / clients; \"after leave\" is polled until within 10% of idle or BENCH_SETTLE_SECONDS (default 30 s); the floor is not waited for.",
		"CPU per change is the server process's user + system time (/proc/<pid>/stat) from the change until the last client ACKed, averaged over the changes.",
		"Load generator CPU is this process's user + system time over the same span: the simulated fleet's side of the same change, on the same 2 cores as the server. The load generator collects its garbage once the fleet is connected and runs with GOGC 400 (see bench/generator.go), for the floor and wasmxds alike.")
	report.Add(sec)
}

// convergeOn runs one fleet against a freshly started target.
func convergeOn(b *testing.B, name string, opts ConvergenceOptions, start func(*Fixture, string) (Target, error)) ConvergenceResult {
	b.Helper()
	dir := b.TempDir()
	fx, err := NewFixture(dir)
	if err != nil {
		b.Fatal(err)
	}
	target, err := start(fx, dir)
	if err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	defer target.Stop()
	if name == "floor" {
		opts.SettleTimeout = time.Second
	}
	res, err := RunConvergence(context.Background(), target, opts)
	if err != nil {
		b.Fatalf("%s, %d clients: %v", name, opts.Fleet.Clients, err)
	}
	b.Logf("%s %d clients: p50 %v p99 %v all %v connect %v rss idle %s connected %s after %s (%v)",
		name, res.Clients, res.P50(), res.P99(), res.Max(), res.Connect.Round(time.Millisecond),
		Bytes(res.RSSIdle), Bytes(res.RSSConnected), Bytes(res.RSSAfter), res.Settle.Round(time.Second))
	for i, d := range res.RoundMax {
		line := fmt.Sprintf("%s %d clients: change %d: all %v", name, res.Clients, i+1, d.Round(time.Millisecond))
		if i < len(res.RoundCPU) {
			line += fmt.Sprintf(", server CPU %v", res.RoundCPU[i].Round(time.Millisecond))
		}
		if i < len(res.GeneratorCPU) {
			line += fmt.Sprintf(", load generator CPU %v", res.GeneratorCPU[i].Round(time.Millisecond))
		}
		b.Log(line)
	}
	return res
}

func convergenceRow(r, floor ConvergenceResult) []string {
	ratio := "1.00×"
	if r.Target != floor.Target && floor.P99() > 0 {
		ratio = fmt.Sprintf("%.2f×", float64(r.P99())/float64(floor.P99()))
	}
	cpuRatio := "1.00×"
	if r.Target != floor.Target && floor.CPUPerRound() > 0 {
		cpuRatio = fmt.Sprintf("%.2f×", float64(r.CPUPerRound())/float64(floor.CPUPerRound()))
	}
	return []string{r.Target, fmt.Sprint(r.Clients), Ms(r.P50()), Ms(r.P99()), Ms(r.Max()), Ms(r.MedianRound()), ratio,
		Ms(r.CPUPerRound()), cpuRatio, Ms(r.GeneratorCPUPerRound()),
		r.Connect.Round(100 * time.Millisecond).String(),
		Bytes(r.RSSIdle), Bytes(r.RSSConnected), fmt.Sprintf("%.1f KiB", float64(r.PerClient())/1024),
		fmt.Sprintf("%s (%v)", Bytes(r.RSSAfter), r.Settle.Round(time.Second))}
}

// deliveries is used by benchmarks that cover both filter delivery modes.
var deliveries = []xds.Delivery{xds.DeliveryLDS, xds.DeliveryECDS}

// BenchmarkConvergenceInProcess runs the xds server, fed by a catalog
// watch as serve feeds it (no fetcher, no HTTP), and the floor inside the
// benchmark process with BENCH_INPROCESS_CLIENTS (default 2000) clients,
// so that `-cpuprofile` and `-memprofile` show the server's own costs.
func BenchmarkConvergenceInProcess(b *testing.B) {
	n := envInt(b, "BENCH_INPROCESS_CLIENTS", 2000)
	rounds := envInt(b, "BENCH_ROUNDS", 5)
	delivery := envDelivery(b)
	sec := Section{
		Title:  fmt.Sprintf("In-process xds layer (catalog watch → xds.Server, no fetcher) vs floor, %d clients, %s delivery", n, delivery),
		Header: []string{"server", "clients", "p50", "p99", "time to 100%", "median change", "p99 / floor"},
	}
	opts := ConvergenceOptions{Fleet: FleetOptions{Clients: n, Groups: envInt(b, "BENCH_GROUPS", 20), Mode: ModeMixed},
		Rounds: rounds, RoundTimeout: time.Minute}
	var floor ConvergenceResult
	for _, start := range []func(*Fixture, xds.Delivery) (Target, error){StartInProcessFloor, StartInProcessXDS} {
		fx, err := NewFixture(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		target, err := start(fx, delivery)
		if err != nil {
			b.Fatal(err)
		}
		res, err := RunConvergence(context.Background(), target, opts)
		target.Stop()
		if err != nil {
			b.Fatal(err)
		}
		if floor.Target == "" {
			floor = res
		}
		sec.Rows = append(sec.Rows, convergenceRow(res, floor)[:7])
	}
	report.Add(sec)
}
