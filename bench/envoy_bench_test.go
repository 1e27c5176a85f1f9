package bench

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/wasmxds/wasmxds/internal/testproc"
	"github.com/wasmxds/wasmxds/internal/xds"
)

// envoyResult is what one delivery mode showed through a real Envoy.
type envoyResult struct {
	delivery xds.Delivery
	edits    []time.Duration // spec edit → new config visible, idle Envoy
	updates  []time.Duration // the same, under load
	requests int
	failures []string
}

// BenchmarkEnvoy runs wasmxds with one real Envoy (config-echo filter) for
// each filter delivery mode: BENCH_ENVOY_EDITS (default 20) edits timed
// from the spec write to the new pluginConfig showing in a response, then
// BENCH_ENVOY_UPDATES (default 100) updates under a steady load, counting
// failed requests.
func BenchmarkEnvoy(b *testing.B) {
	bins := binaries(b)
	edits := envInt(b, "BENCH_ENVOY_EDITS", 20)
	updates := envInt(b, "BENCH_ENVOY_UPDATES", 100)
	module := filepath.Join(RepoRoot(), "examples/filters/bin/config-echo.wasm")
	if _, err := os.Stat(module); err != nil {
		b.Fatalf("%v: run `make filters`", err)
	}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	}))
	defer upstream.Close()
	sec := Section{
		Title: "Real Envoy: spec edit → new behaviour visible through Envoy; failed requests during updates",
		Header: []string{"delivery", "edits (idle)", "visible p50", "p90", "max", "updates under load",
			"visible p50", "max", "requests", "failed"},
	}
	for _, d := range deliveries {
		r := envoyRun(b, bins, d, module, upstream.Listener.Addr().String(), edits, updates)
		sec.Rows = append(sec.Rows, []string{string(d), fmt.Sprint(len(r.edits)),
			Ms(Percentile(r.edits, 0.5)), Ms(Percentile(r.edits, 0.9)), Ms(Percentile(r.edits, 1)),
			fmt.Sprint(len(r.updates)), Ms(Percentile(r.updates, 0.5)), Ms(Percentile(r.updates, 1)),
			fmt.Sprint(r.requests), fmt.Sprint(len(r.failures))})
		for i, f := range r.failures {
			if i == 5 {
				sec.Notes = append(sec.Notes, fmt.Sprintf("- %s: … %d more", d, len(r.failures)-5))
				break
			}
			sec.Notes = append(sec.Notes, fmt.Sprintf("- %s failure: %s", d, f))
		}
		b.ReportMetric(float64(Percentile(r.edits, 0.5).Microseconds())/1000, "visible-p50-ms/"+string(d))
		b.ReportMetric(float64(len(r.failures)), "failed-requests/"+string(d))
	}
	sec.Notes = append(sec.Notes, "Envoy 1.40 with --concurrency 2; load: 2 keep-alive clients and 2 clients opening a "+
		"connection per request, each sending a GET every 5 ms. Visible = a response carries the new x-plugin-config "+
		"(polled every 2 ms); each update waits for that before the next. "+
		fmt.Sprintf("Times include the %v directory-watch debounce.", Debounce))
	report.Add(sec)
}

func envoyRun(b *testing.B, bins Binaries, d xds.Delivery, module, upstream string, edits, updates int) envoyResult {
	b.Helper()
	dir := b.TempDir()
	configDir := filepath.Join(dir, "configs")
	if err := os.MkdirAll(configDir, 0o755); err != nil {
		b.Fatal(err)
	}
	port, err := testproc.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	if err := EnvoySpecs(configDir, port, upstream, module, "start"); err != nil {
		b.Fatal(err)
	}
	wx, err := StartServe(bins.Wasmxds, configDir, d, dir)
	if err != nil {
		b.Fatal(err)
	}
	defer wx.Stop()
	envoy, err := StartEnvoy(wx.Addr(), "envoy-bench-"+string(d), map[string]string{"app": "envoy-bench"}, dir)
	if err != nil {
		b.Fatal(err)
	}
	defer envoy.Stop()
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	probe := &http.Client{Timeout: 5 * time.Second}
	if err := WaitHeader(probe, url, "start", 60*time.Second); err != nil {
		b.Fatalf("%s: initial config never visible: %v\n%s", d, err, testproc.Tail(envoy.LogPath, 20))
	}
	res := envoyResult{delivery: d}
	res.edits = timedEdits(b, configDir, module, url, probe, "edit", edits)
	load := StartLoad(url, 2, 2)
	res.updates = timedEdits(b, configDir, module, url, probe, "update", updates)
	res.requests, res.failures = load.Stop()
	slices.Sort(res.edits)
	slices.Sort(res.updates)
	b.Logf("%s: edit visible p50 %v; %d updates under load: %d requests, %d failed",
		d, Percentile(res.edits, 0.5), len(res.updates), res.requests, len(res.failures))
	return res
}

// timedEdits makes n edits one after another and times each from the
// spec write until a response through Envoy shows it.
func timedEdits(b *testing.B, configDir, module, url string, probe *http.Client, prefix string, n int) []time.Duration {
	b.Helper()
	var out []time.Duration
	for i := range n {
		marker := fmt.Sprintf("%s-%d", prefix, i)
		start := time.Now()
		if err := EnvoyEdit(configDir, module, marker); err != nil {
			b.Fatal(err)
		}
		if err := WaitHeader(probe, url, `"`+marker+`"`, 30*time.Second); err != nil {
			b.Fatalf("%s never visible: %v", marker, err)
		}
		out = append(out, time.Since(start))
	}
	return out
}
