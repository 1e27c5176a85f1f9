package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkTelemetry runs a fleet of BENCH_TELEMETRY_CLIENTS (default
// 2000; half SotW, half delta, over BENCH_GROUPS label groups) for
// BENCH_TELEMETRY_SECONDS (default 60) three times: holding only its ADS
// streams; with every client also streaming a stats flush of
// BENCH_TELEMETRY_FAMILIES (default 200) families every second, each at
// its own phase; and with all flushing at the same instant. It compares
// the server's RSS, and sends a 10 MB metrics message at the end of the
// reporting runs. BENCH_TELEMETRY_PPROF=dir saves the server's heap
// profiles and goroutines there.
func BenchmarkTelemetry(b *testing.B) {
	bins := binaries(b)
	clients := envInt(b, "BENCH_TELEMETRY_CLIENTS", 2000)
	seconds := envInt(b, "BENCH_TELEMETRY_SECONDS", 60)
	groups := envInt(b, "BENCH_GROUPS", 20)
	families := envInt(b, "BENCH_TELEMETRY_FAMILIES", 200)
	sec := Section{
		Title: fmt.Sprintf("Telemetry: %d simulated Envoys reporting stats every second for %d s (ecds delivery, %d label groups, half SotW / half delta)",
			clients, seconds, groups),
		Header: []string{"fleet", "clients", "RSS connected", "RSS after the run", "peak RSS", "flushes sent", "vs no telemetry (end / peak)", "10 MB message"},
	}
	var base TelemetryResult
	for _, run := range []struct{ report, lockstep bool }{{false, false}, {true, false}, {true, true}} {
		report := run.report
		fx, err := NewFixture(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		opts := TelemetryOptions{Fleet: FleetOptions{Clients: clients, Groups: groups, Mode: ModeMixed}, Report: report,
			Duration: time.Duration(seconds) * time.Second, Lockstep: run.lockstep, Families: families}
		if dir := os.Getenv("BENCH_TELEMETRY_PPROF"); dir != "" {
			opts.Profiles = filepath.Join(dir, fmt.Sprintf("telemetry-report-%v-lockstep-%v", report, run.lockstep))
		}
		res, err := RunTelemetry(context.Background(), bins.Wasmxds, fx, b.TempDir(), opts)
		if err != nil {
			b.Fatalf("report=%v: %v", report, err)
		}
		b.Logf("report=%v lockstep=%v: %+v", report, run.lockstep, res)
		if !report {
			base = res
		}
		sec.Rows = append(sec.Rows, telemetryRow(res, base, run.lockstep))
	}
	sec.Notes = append(sec.Notes,
		fmt.Sprintf("Each flush is %d metric families (BENCH_TELEMETRY_FAMILIES; 200 is about 9 KB, one HTTP/2 frame) as Envoy 1.40 sends them with counters as deltas (2 HTTP listeners' request counts, the Wasm VM counters, 2 plugins' reload counters, and other counters and gauges), on the client's own ADS connection, as Envoy's metrics_service sink sends it over the ADS cluster.", families),
		"RSS is the server process's VmRSS, sampled every second; the target is the telemetry fleet within 20% of the same fleet without it.",
		fmt.Sprintf("Own phase: client i flushes i/%[1]d of 0.9 s into each second, as Envoys started at different times do (each Envoy's flush timer starts with it). Same instant: all %[1]d flushes leave together every second, so the server holds up to %[1]d messages at once.", clients),
		"10 MB message: one StreamMetrics message of 10 MB on a new connection; the server refuses it (gRPC's 4 MiB receive limit) and stays ready, the fleet's ADS streams stay open, and a new report is accepted.",
		"The load generator runs in the same 2 cores as the server.")
	report.Add(sec)
}

func telemetryRow(r, base TelemetryResult, lockstep bool) []string {
	name, vs, big := "ADS only", "—", "—"
	if r.Report {
		name = "ADS + stats every second, each Envoy on its own phase"
		if lockstep {
			name = "ADS + stats every second, all in the same instant (worst case)"
		}
		vs = fmt.Sprintf("%+.1f%% / %+.1f%%", pctOver(r.RSSEnd, base.RSSEnd), pctOver(r.Peak, base.Peak))
		big = r.BigRefused
		if r.HealthyAfterBig {
			big += ", server healthy"
		} else {
			big += ", server NOT healthy"
		}
	}
	return []string{name, fmt.Sprint(r.Clients), Bytes(r.RSSReady), Bytes(r.RSSEnd), Bytes(r.Peak),
		fmt.Sprintf("%d (%d failed)", r.Sent, r.SendErrors), vs, big}
}

func pctOver(v, base int64) float64 {
	if base == 0 {
		return 0
	}
	return 100 * float64(v-base) / float64(base)
}

// TestTelemetrySmoke: a small fleet reports for a few seconds, the big
// message is refused and the server stays healthy.
func TestTelemetrySmoke(t *testing.T) {
	bins, err := Build(binDir)
	if err != nil {
		t.Fatal(err)
	}
	fx, err := NewFixture(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	res, err := RunTelemetry(context.Background(), bins.Wasmxds, fx, t.TempDir(), TelemetryOptions{
		Fleet: FleetOptions{Clients: 20, Groups: 4, Mode: ModeMixed}, Report: true, Duration: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent < 40 || res.SendErrors != 0 || res.BigRefused != "ResourceExhausted" || !res.HealthyAfterBig {
		t.Errorf("result %+v: want every flush sent, the big message refused and the server healthy", res)
	}
}
