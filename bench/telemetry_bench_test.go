package bench

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkTelemetry runs a fleet of BENCH_TELEMETRY_CLIENTS (default
// 2000; half SotW, half delta, over BENCH_GROUPS label groups) for
// BENCH_TELEMETRY_SECONDS (default 60) three times: holding only its ADS
// streams; with every client also streaming a stats flush of
// BENCH_TELEMETRY_FAMILIES (default 200) families every second, each at
// its own phase; and with all flushing at the same instant. It does so
// BENCH_TELEMETRY_RUNS times (default 3), each time against a fresh
// server, and compares the median RSS of each fleet: a fleet's RSS moves
// by several percent from run to run with where the collector stood when
// it connected. The reporting runs end with a 10 MB metrics message.
// BENCH_TELEMETRY_PPROF=dir saves the server's heap profiles and
// goroutines there (of the last run).
func BenchmarkTelemetry(b *testing.B) {
	bins := binaries(b)
	clients := envInt(b, "BENCH_TELEMETRY_CLIENTS", 2000)
	seconds := envInt(b, "BENCH_TELEMETRY_SECONDS", 60)
	groups := envInt(b, "BENCH_GROUPS", 20)
	families := envInt(b, "BENCH_TELEMETRY_FAMILIES", 200)
	runs := envInt(b, "BENCH_TELEMETRY_RUNS", 3)
	if runs < 1 {
		b.Fatalf("BENCH_TELEMETRY_RUNS=%d: want at least 1", runs)
	}
	sec := Section{
		Title: fmt.Sprintf("Telemetry: %d simulated Envoys reporting stats every second for %d s (ecds delivery, %d label groups, half SotW / half delta), median of %d runs",
			clients, seconds, groups, runs),
		Header: []string{"fleet", "clients", "RSS connected", "RSS after the run", "peak RSS", "flushes sent per run",
			"vs no telemetry (medians, end)", "each run (end)", "10 MB message"},
	}
	fleets := []struct{ report, lockstep bool }{{false, false}, {true, false}, {true, true}}
	results := make([][]TelemetryResult, len(fleets))
	for run := range runs {
		for i, f := range fleets {
			fx, err := NewFixture(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			opts := TelemetryOptions{Fleet: FleetOptions{Clients: clients, Groups: groups, Mode: ModeMixed}, Report: f.report,
				Duration: time.Duration(seconds) * time.Second, Lockstep: f.lockstep, Families: families}
			if dir := os.Getenv("BENCH_TELEMETRY_PPROF"); dir != "" {
				opts.Profiles = filepath.Join(dir, fmt.Sprintf("telemetry-report-%v-lockstep-%v", f.report, f.lockstep))
			}
			res, err := RunTelemetry(context.Background(), bins.Wasmxds, fx, b.TempDir(), opts)
			if err != nil {
				b.Fatalf("run %d, report=%v: %v", run+1, f.report, err)
			}
			b.Logf("run %d, report=%v lockstep=%v: %+v", run+1, f.report, f.lockstep, res)
			results[i] = append(results[i], res)
		}
	}
	for i, f := range fleets {
		sec.Rows = append(sec.Rows, telemetryRow(results[i], results[0], f.lockstep))
	}
	sec.Notes = append(sec.Notes,
		fmt.Sprintf("Each flush is %d metric families (BENCH_TELEMETRY_FAMILIES; 200 is about 9 KB, one HTTP/2 frame) as Envoy 1.40 sends them with counters as deltas (2 HTTP listeners' request counts, the Wasm VM counters, 2 plugins' reload counters, and other counters and gauges), on the client's own ADS connection, as Envoy's metrics_service sink sends it over the ADS cluster.", families),
		fmt.Sprintf("RSS is the server process's VmRSS, sampled every second; each figure is the median of %d runs (BENCH_TELEMETRY_RUNS), the three fleets taking turns, each against a fresh server. The target is the telemetry fleet within 20%% of the same fleet without it. \"Each run\" compares a run's fleet with the ADS-only fleet of the same run.", runs),
		fmt.Sprintf("Own phase: client i flushes i/%[1]d of 0.9 s into each second, as Envoys started at different times do (each Envoy's flush timer starts with it). Same instant: all %[1]d flushes leave together every second, so the server holds up to %[1]d messages at once.", clients),
		"10 MB message: one StreamMetrics message of 10 MB on a new connection; the server refuses it (gRPC's 4 MiB receive limit) and stays ready, the fleet's ADS streams stay open, and a new report is accepted.",
		"The load generator runs in the same 2 cores as the server.")
	report.Add(sec)
}

// telemetryRow is one fleet's row: the medians of its runs, compared with
// the medians of the ADS-only fleet's runs (base), and each run with the
// base run of the same turn.
func telemetryRow(rs, base []TelemetryResult, lockstep bool) []string {
	pick := func(rs []TelemetryResult, f func(TelemetryResult) int64) int64 {
		vs := make([]int64, len(rs))
		for i, r := range rs {
			vs[i] = f(r)
		}
		return median(vs)
	}
	ready := pick(rs, func(r TelemetryResult) int64 { return r.RSSReady })
	end := pick(rs, func(r TelemetryResult) int64 { return r.RSSEnd })
	peak := pick(rs, func(r TelemetryResult) int64 { return r.Peak })
	name, vs, each, big := "ADS only", "—", "—", "—"
	var sent, failed []string
	for _, r := range rs {
		sent = append(sent, fmt.Sprint(r.Sent))
		failed = append(failed, fmt.Sprint(r.SendErrors))
	}
	if rs[0].Report {
		name = "ADS + stats every second, each Envoy on its own phase"
		if lockstep {
			name = "ADS + stats every second, all in the same instant (worst case)"
		}
		baseEnd := pick(base, func(r TelemetryResult) int64 { return r.RSSEnd })
		vs = fmt.Sprintf("%+.1f%%", pctOver(end, baseEnd))
		var per []string
		healthy := true
		refused := map[string]bool{}
		for i, r := range rs {
			per = append(per, fmt.Sprintf("%+.1f%%", pctOver(r.RSSEnd, base[i].RSSEnd)))
			healthy = healthy && r.HealthyAfterBig
			refused[r.BigRefused] = true
		}
		each = strings.Join(per, ", ")
		big = strings.Join(slices.Sorted(maps.Keys(refused)), ", ")
		if healthy {
			big += ", server healthy in every run"
		} else {
			big += ", server NOT healthy in some run"
		}
	}
	return []string{name, fmt.Sprint(rs[0].Clients), Bytes(ready), Bytes(end), Bytes(peak),
		fmt.Sprintf("%s (%s failed)", strings.Join(sent, ", "), strings.Join(failed, ", ")), vs, each, big}
}

// median is the middle value of vs (the mean of the two middle ones for
// an even count); 0 for none.
func median(vs []int64) int64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
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
