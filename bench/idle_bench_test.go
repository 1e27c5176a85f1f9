package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkIdleLabelSets measures what label sets that came and went cost
// `wasmxds serve`: for each spec size in BENCH_IDLE_SPEC_MB (default 4,8)
// and each count in BENCH_IDLE_SETS (default 0,60,4096; 0 is the
// baseline), one steady client stays connected while that many clients,
// each with its own label set, connect BENCH_IDLE_BATCH (32) at a time,
// get their configuration and leave. Reported: the server's RSS with the
// steady client only, its peak, its RSS once the label sets are idle, and
// the time an unrelated edit (a new Cluster and a Listener for the steady
// client only) takes to reach the steady
// client. BENCH_IDLE_MAX_RSS_MB (6144) stops creating label sets past that
// RSS, and the server is stopped past twice it; BENCH_IDLE_PPROF names a directory for heap profiles taken once
// the label sets are idle.
func BenchmarkIdleLabelSets(b *testing.B) {
	bins := binaries(b)
	specs := envInts(b, "BENCH_IDLE_SPEC_MB", []int{4, 8})
	counts := envInts(b, "BENCH_IDLE_SETS", []int{0, 60, 4096})
	batch := envInt(b, "BENCH_IDLE_BATCH", 32)
	maxRSS := int64(envInt(b, "BENCH_IDLE_MAX_RSS_MB", 6144)) << 20
	profiles := os.Getenv("BENCH_IDLE_PPROF")
	delivery := envDelivery(b)
	sec := Section{
		Title: fmt.Sprintf("Idle label sets: RSS and an unrelated edit after label sets came and went (%s delivery, %d clients at a time)",
			delivery, batch),
		Header: []string{"spec", "idle label sets", "RSS ready", "RSS peak", "RSS after idle", "vs 0 sets",
			"unrelated edit", "RSS after edit", "connect all"},
	}
	for _, mb := range specs {
		var base IdleResult
		for _, n := range counts {
			opts := IdleOptions{Bin: bins.Wasmxds, Dir: b.TempDir(), SpecMB: mb, Sets: n, Batch: batch,
				Delivery: delivery, MaxRSS: maxRSS, Progress: func(created int, rss int64) {
					if created%256 == 0 {
						fmt.Fprintf(os.Stderr, "idle label sets: %d MB, %d of %d created, RSS %s\n", mb, created, n, Bytes(rss))
					}
				}}
			if profiles != "" {
				opts.HeapProfile = filepath.Join(profiles, fmt.Sprintf("heap-%dmb-%d.pb.gz", mb, n))
			}
			res, err := RunIdle(context.Background(), opts)
			if err != nil {
				b.Fatalf("%d MB, %d label sets: %v", mb, n, err)
			}
			if n == 0 {
				base = res
			}
			b.Logf("%d MB (%.1f MiB), %d of %d label sets: rss ready %s peak %s idle %s, edit %v (rss %s), connect %v",
				mb, float64(res.SpecBytes)/(1<<20), res.Created, n, Bytes(res.RSSReady), Bytes(res.RSSPeak),
				Bytes(res.RSSIdle), res.Edit.Round(time.Millisecond), Bytes(res.RSSEdited), res.Connect.Round(100*time.Millisecond))
			sec.Rows = append(sec.Rows, idleRow(res, base))
			b.ReportMetric(float64(res.RSSIdle)/(1<<20), fmt.Sprintf("rss-MiB/%dMB/%d", mb, n))
			b.ReportMetric(float64(res.Edit.Milliseconds()), fmt.Sprintf("edit-ms/%dMB/%d", mb, n))
		}
	}
	sec.Notes = append(sec.Notes,
		"spec: generated YAML every node selects (listeners of 200 routes, 50 clusters, WasmPlugins with a 256 KiB pluginConfig each, half the bytes each).",
		"Each row is a fresh server. RSS is VmRSS, read once it stays within 2% for 3 s; peak is the highest 100 ms sample from the steady client's start to the end of the edit; vs 0 sets = RSS after idle over the 0-set row's; RSS after edit is read the same way once the edit was delivered.",
		"unrelated edit: a new file (a Cluster and a Listener selecting app=steady) renamed into the config directory → the steady client holds the cluster (includes the 25 ms debounce).",
		"The load generator runs in the same 2 cores as the server.")
	report.Add(sec)
}

func idleRow(r, base IdleResult) []string {
	sets := fmt.Sprint(r.Sets)
	if r.Stopped {
		sets = fmt.Sprintf("%d of %d (stopped at the RSS bound)", r.Created, r.Sets)
	}
	ratio := "—"
	if base.RSSIdle > 0 {
		ratio = fmt.Sprintf("%.2f×", float64(r.RSSIdle)/float64(base.RSSIdle))
	}
	connect := "—"
	if r.Created > 0 {
		connect = r.Connect.Round(100 * time.Millisecond).String()
	}
	edit, edited := Ms(r.Edit), Bytes(r.RSSEdited)
	if r.Killed > 0 {
		edit, edited = fmt.Sprintf("server stopped at RSS %s after %s", Bytes(r.Killed), Ms(r.Edit)), "—"
	}
	return []string{fmt.Sprintf("%.1f MiB", float64(r.SpecBytes)/(1<<20)), sets, Bytes(r.RSSReady), Bytes(r.RSSPeak),
		Bytes(r.RSSIdle), ratio, edit, edited, connect}
}
