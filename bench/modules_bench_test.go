package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wasmxds/wasmxds/internal/fetcher"
	"github.com/wasmxds/wasmxds/internal/fetcher/fetchertest"
)

// bigModule is a valid proxy-wasm module of about size bytes.
func bigModule(tag string, size int) []byte {
	return fetchertest.ProxyWasm(tag + strings.Repeat("x", size))
}

// BenchmarkModuleDistribution connects BENCH_MODULE_NODES (default 2000)
// simulated Envoys whose six plugins all name one OCI reference and
// counts the registry requests wasmxds makes, for a first version and
// after every plugin moves to a second; then it downloads the 2 MiB module
// from the module server BENCH_DOWNLOADS (default 2000) times at once.
func BenchmarkModuleDistribution(b *testing.B) {
	bins := binaries(b)
	nodes := envInt(b, "BENCH_MODULE_NODES", 2000)
	downloads := envInt(b, "BENCH_DOWNLOADS", 2000)
	reg := NewCountingRegistry()
	defer reg.Close()
	v1, v2 := bigModule("v1", 2<<20), bigModule("v2", 2<<20)
	url1, url2 := pushModule(b, reg, "bench/shared:v1", v1), pushModule(b, reg, "bench/shared:v2", v2)
	dir := b.TempDir()
	fx, err := NewFixture(dir)
	if err != nil {
		b.Fatal(err)
	}
	if err := fx.Retarget(url1, v1, "initial"); err != nil {
		b.Fatal(err)
	}
	reg.Reset()
	wx, err := StartWasmxds(bins.Wasmxds, fx, envDelivery(b), dir)
	if err != nil {
		b.Fatal(err)
	}
	defer wx.Stop()
	ctx := context.Background()
	fleet, err := StartFleet(ctx, FleetOptions{Addr: wx.Addr(), Clients: nodes, Groups: 20, Mode: ModeMixed})
	if err != nil {
		b.Fatal(err)
	}
	first := reg.Counts()
	reg.Reset()
	r := fleet.Begin("moved-to-v2")
	if err := fx.Retarget(url2, v2, "moved-to-v2"); err != nil {
		b.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	_, err = r.Wait(wctx, fleet)
	cancel()
	fleet.Close()
	if err != nil {
		b.Fatalf("fleet did not move to v2: %v", err)
	}
	second := reg.Counts()
	dl := downloadConcurrently(b, "http://"+wx.HTTPAddr+"/modules/sha256/"+fx.ModuleHex, fx.ModuleHex, downloads)
	report.Add(moduleSection(nodes, first, second, dl, len(v2)))
	b.ReportMetric(float64(first[ReqBlob]+second[ReqBlob]), "registry-blob-GETs")
	b.ReportMetric(dl.elapsed.Seconds(), fmt.Sprintf("s/%d-downloads", downloads))
	b.ReportMetric(float64(dl.errors), "download-errors")
}

func pushModule(b *testing.B, reg *CountingRegistry, repoTag string, module []byte) string {
	b.Helper()
	url := "oci://" + reg.Host() + "/" + repoTag
	if _, err := fetcher.Push(context.Background(), module, url, fetcher.PushOptions{}); err != nil {
		b.Fatalf("push %s: %v", url, err)
	}
	return url
}

type downloadResult struct {
	n, errors int
	elapsed   time.Duration
	slowest   time.Duration
	firstErr  string
}

// downloadConcurrently starts n GETs of url at once, each on its own
// connection as n Envoys would, and checks every body's sha256.
func downloadConcurrently(b *testing.B, url, wantHex string, n int) downloadResult {
	b.Helper()
	tr := &http.Transport{DisableKeepAlives: true, MaxConnsPerHost: 0}
	client := &http.Client{Transport: tr, Timeout: 60 * time.Second}
	defer tr.CloseIdleConnections()
	var (
		wg       sync.WaitGroup
		errs     atomic.Int64
		slowest  atomic.Int64
		errOnce  sync.Once
		firstErr string
	)
	startGate := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-startGate
			t0 := time.Now()
			err := downloadOne(client, url, wantHex)
			if d := int64(time.Since(t0)); d > slowest.Load() {
				slowest.Store(d)
			}
			if err != nil {
				errs.Add(1)
				errOnce.Do(func() { firstErr = err.Error() })
			}
		}()
	}
	start := time.Now()
	close(startGate)
	wg.Wait()
	return downloadResult{n: n, errors: int(errs.Load()), elapsed: time.Since(start),
		slowest: time.Duration(slowest.Load()), firstErr: firstErr}
}

func downloadOne(c *http.Client, url, wantHex string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET: %s", resp.Status)
	}
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != wantHex {
		return fmt.Errorf("sha256 %s, want %s", got, wantHex)
	}
	return nil
}

func moduleSection(nodes int, first, second map[string]int, dl downloadResult, size int) Section {
	row := func(what string, c map[string]int) []string {
		return []string{what, fmt.Sprint(nodes), fmt.Sprint(c[ReqManifest]), fmt.Sprint(c[ReqBlob]), fmt.Sprint(c[ReqOther])}
	}
	sec := Section{
		Title:  "Module distribution: registry requests for a fleet whose 6 plugins share one OCI reference",
		Header: []string{"phase", "nodes", "manifest GET/HEAD", "blob GETs", "other"},
		Rows: [][]string{
			row("start on :v1", first),
			row("all plugins moved to :v2", second),
		},
	}
	errNote := ""
	if dl.errors > 0 {
		errNote = fmt.Sprintf(" First error: %s.", dl.firstErr)
	}
	sec.Notes = append(sec.Notes, fmt.Sprintf(
		"Module server: %d concurrent downloads (one connection each) of a %.1f MiB module: all done in %s, slowest %s, %d errors; each body's sha256 checked.%s",
		dl.n, float64(size)/(1<<20), dl.elapsed.Round(time.Millisecond), dl.slowest.Round(time.Millisecond), dl.errors, errNote))
	return sec
}
