package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/wasmxds/wasmxds/internal/fetcher/fetchertest"
	"github.com/wasmxds/wasmxds/internal/testproc"
	"github.com/wasmxds/wasmxds/internal/xds"
	"github.com/wasmxds/wasmxds/internal/xdstest"
)

// The idle spec: half its bytes are listeners of idleRoutes routes each,
// half WasmPlugins whose pluginConfig is about idlePluginConfig bytes,
// all with an empty selector, so that every label set's translation is
// as large as the spec.
const (
	idleRoutes        = 200
	idleClusters      = 50
	idlePluginConfig  = 256 << 10 // well under catalog.MaxPluginConfigBytes
	idleFileBytes     = 1 << 20   // per spec file, well under the file size cap
	idleConfigKeyLine = 64        // bytes of YAML per pluginConfig key
)

// IdleSpec is a generated spec directory (see WriteIdleSpec).
type IdleSpec struct {
	ConfigDir string
	Bytes     int64 // of YAML written
	Listeners int
	Plugins   int
}

// WriteIdleSpec writes about mb MiB of valid specs under dir/configs, and
// the module its plugins load (file://) under dir/modules: Clusters,
// Listeners with many routes and WasmPlugins with a sizeable pluginConfig,
// none with a selector, so every node gets all of it.
func WriteIdleSpec(dir string, mb int) (*IdleSpec, error) {
	s := &IdleSpec{ConfigDir: filepath.Join(dir, "configs")}
	module := filepath.Join(dir, "modules", "idle.wasm")
	for _, d := range []string{s.ConfigDir, filepath.Dir(module)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("idle spec: %w", err)
		}
	}
	if err := os.WriteFile(module, fetchertest.ProxyWasm("idle"), 0o644); err != nil {
		return nil, fmt.Errorf("idle spec: %w", err)
	}
	target := int64(mb) << 20
	var files []string
	var cur strings.Builder
	flush := func() {
		if cur.Len() > 0 {
			files = append(files, cur.String())
			s.Bytes += int64(cur.Len())
			cur.Reset()
		}
	}
	add := func(doc string) {
		if cur.Len()+len(doc) > idleFileBytes {
			flush()
		}
		cur.WriteString(doc)
		cur.WriteString("---\n")
	}
	for i := range idleClusters {
		add(fmt.Sprintf("apiVersion: wasmxds.dev/v1alpha1\nkind: Cluster\nmetadata: {name: idle-c%03d}\n"+
			"spec:\n  endpoints: [\"127.0.0.1:%d\"]\n", i, 20000+i))
	}
	for s.Bytes+int64(cur.Len()) < target/2 {
		add(idleListener(s.Listeners))
		s.Listeners++
	}
	flush()
	for s.Bytes+int64(cur.Len()) < target {
		add(idlePlugin(s.Plugins, "file://"+module))
		s.Plugins++
	}
	flush()
	for i, content := range files {
		if err := os.WriteFile(filepath.Join(s.ConfigDir, fmt.Sprintf("spec-%03d.yaml", i)), []byte(content), 0o644); err != nil {
			return nil, fmt.Errorf("idle spec: %w", err)
		}
	}
	return s, nil
}

func idleListener(i int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: wasmxds.dev/v1alpha1\nkind: Listener\nmetadata: {name: idle-l%04d}\nspec:\n  port: %d\n  routes:\n",
		i, 30000+i)
	for r := range idleRoutes {
		fmt.Fprintf(&b, "  - match: {prefix: /l%04d/r%04d}\n    cluster: idle-c%03d\n", i, r, (i+r)%idleClusters)
	}
	return b.String()
}

func idlePlugin(i int, url string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {name: idle-p%03d}\n"+
		"spec:\n  url: %s\n  phase: STATS\n  priority: %d\n  pluginConfig:\n", i, url, i)
	// `    k_000000: "…"` with the value filling the line to idleConfigKeyLine.
	value := strings.Repeat("v", idleConfigKeyLine-len(`    k_000000: ""`)-1)
	for k := range idlePluginConfig / idleConfigKeyLine {
		fmt.Fprintf(&b, "    k_%06d: \"%s\"\n", k, value)
	}
	return b.String()
}

// IdleOptions configures RunIdle.
type IdleOptions struct {
	Bin      string // wasmxds
	Dir      string // spec, cache and log
	SpecMB   int
	Sets     int // idle label sets to create
	Batch    int // clients connected at once; zero means 32
	Delivery xds.Delivery
	// MaxRSS stops creating label sets once the server's RSS passes it, and
	// the server is killed past twice it. Zero means 6 GiB.
	MaxRSS int64
	// Settle bounds the wait for RSS to stop moving; zero means 20 s.
	Settle time.Duration
	// EditTimeout bounds the unrelated edit; zero means 5 minutes.
	EditTimeout time.Duration
	// HeapProfile, if set, is where the server's heap profile is saved
	// once the label sets went idle (serve runs with --pprof).
	HeapProfile string
	// Progress, if set, hears after each batch how many label sets were
	// created and the server's RSS.
	Progress func(created int, rss int64)
}

// IdleResult is one row of BenchmarkIdleLabelSets.
type IdleResult struct {
	SpecMB    int
	SpecBytes int64
	Sets      int // asked for
	Created   int // label sets connected before the end or the RSS bound
	Stopped   bool
	// Server RSS: steady client only, highest seen from then on, and
	// once the label sets went idle.
	RSSReady, RSSPeak, RSSIdle int64
	// RSSEdited is the server's RSS once the edit was delivered: an
	// Update, which may release what the idle label sets held.
	RSSEdited int64
	Connect   time.Duration // all label sets, connected and gone
	Edit      time.Duration // unrelated edit → the steady client holds it
	// Killed is the RSS at which the server was stopped during the edit
	// (past twice MaxRSS), 0 if it was not; Edit is then until then.
	Killed int64
}

// RunIdle starts `wasmxds serve` on a generated spec of opts.SpecMB MiB,
// connects a steady client (app=steady), then opts.Sets clients each with
// a new label set ({app: idle, set: sNNNNN}), in batches that each get
// their configuration and disconnect, and measures the server's RSS
// before and after and how long an unrelated edit (a new file with a
// Cluster and a Listener selecting app=steady) takes to reach the steady
// client.
func RunIdle(ctx context.Context, opts IdleOptions) (IdleResult, error) {
	res := IdleResult{SpecMB: opts.SpecMB, Sets: opts.Sets}
	batch := cmpOr(opts.Batch, 32)
	maxRSS := cmpOr(opts.MaxRSS, 6<<30)
	settle := cmpOr(opts.Settle, 20*time.Second)
	spec, err := WriteIdleSpec(filepath.Join(opts.Dir, "spec"), opts.SpecMB)
	if err != nil {
		return res, err
	}
	res.SpecBytes = spec.Bytes
	var extra []string
	if opts.HeapProfile != "" {
		extra = append(extra, "--pprof")
	}
	w, err := StartServe(opts.Bin, spec.ConfigDir, opts.Delivery, opts.Dir, extra...)
	if err != nil {
		return res, err
	}
	defer w.Stop()

	steady, err := xdstest.Dial(w.Addr(), xdstest.Options{NodeID: "steady", Cluster: "bench",
		Labels: map[string]string{"app": "steady"}, DialOptions: clientDialOptions(), NoHistory: true, NoBodies: true})
	if err != nil {
		return res, err
	}
	defer steady.Close()
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err = steady.WaitFor(wctx, xdstest.Complete)
	cancel()
	if err != nil {
		return res, fmt.Errorf("steady client: %w", err)
	}
	pid := w.PID()
	res.RSSReady = stableRSS(pid, settle)

	mon := watchRSS(pid, 2*maxRSS, w.Stop)
	refs := xdstest.NewRefCache()
	defer mon.stop()
	start := time.Now()
	for first := 0; first < opts.Sets; first += batch {
		if mon.peak.Load() > maxRSS {
			res.Stopped = true
			break
		}
		n := min(batch, opts.Sets-first)
		cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		fleet, err := StartFleet(cctx, FleetOptions{Addr: w.Addr(), Clients: n, Groups: n, Mode: ModeMixed,
			NodePrefix: fmt.Sprintf("idle-%05d-", first), Refs: refs,
			Labels: func(g int) map[string]string {
				return map[string]string{"app": "idle", "set": fmt.Sprintf("s%05d", first+g)}
			}})
		cancel()
		if err != nil {
			return res, fmt.Errorf("label sets %d–%d: %w%s", first, first+n-1, err, mon.killed())
		}
		fleet.Close()
		res.Created += n
		if opts.Progress != nil {
			rss, _ := RSS(pid)
			opts.Progress(res.Created, rss)
		}
	}
	if err := testproc.Poll(time.Minute, 50*time.Millisecond, func() error { return w.connected(1) }); err != nil {
		return res, fmt.Errorf("idle clients still connected: %w", err)
	}
	res.Connect = time.Since(start)
	res.RSSIdle = stableRSS(pid, settle)
	heap := "http://" + w.AdminAddr + "/debug/pprof/heap"
	if opts.HeapProfile != "" {
		// The profile, and the runtime's memory statistics as text.
		if err := errors.Join(saveHeapProfile(heap, opts.HeapProfile),
			saveHeapProfile(heap+"?debug=1", opts.HeapProfile+".idle.txt")); err != nil {
			return res, err
		}
	}

	name := fmt.Sprintf("unrelated-%08x", rand.Uint32())
	// Clusters are served only where a route uses them: the edit is a
	// cluster and a listener for the steady client alone.
	doc := fmt.Sprintf("apiVersion: wasmxds.dev/v1alpha1\nkind: Cluster\nmetadata: {name: %[1]s}\n"+
		"spec:\n  endpoints: [\"127.0.0.1:18099\"]\n---\n"+
		"apiVersion: wasmxds.dev/v1alpha1\nkind: Listener\nmetadata: {name: %[1]s}\n"+
		"spec:\n  selector: {matchLabels: {app: steady}}\n  port: 18098\n  routes:\n  - match: {prefix: /}\n    cluster: %[1]s\n", name)
	start = time.Now()
	if err := writeAtomic(filepath.Join(spec.ConfigDir, "unrelated.yaml"), doc); err != nil {
		return res, err
	}
	ectx, cancel := context.WithTimeout(ctx, cmpOr(opts.EditTimeout, 5*time.Minute))
	err = steady.WaitFor(ectx, func(s xdstest.State) bool { return s.Type(resource.ClusterType).Has(name) })
	cancel()
	res.Edit = time.Since(start)
	res.RSSPeak = max(mon.stop(), res.RSSIdle)
	if res.Killed = mon.over.Load(); res.Killed > 0 {
		return res, nil // the row says so
	}
	if err != nil {
		return res, fmt.Errorf("unrelated edit: %w", err)
	}
	res.RSSEdited = stableRSS(pid, settle)
	if opts.HeapProfile != "" {
		if err := saveHeapProfile(heap+"?debug=1", opts.HeapProfile+".edited.txt"); err != nil {
			return res, err
		}
	}
	return res, nil
}

// stableRSS polls a process's RSS every 500 ms until the last six samples
// (3 s) are within 2% of each other, or timeout passes, and returns the
// last sample: freed memory goes back to the OS gradually.
func stableRSS(pid int, timeout time.Duration) int64 {
	var samples []int64
	_ = testproc.Poll(timeout, 500*time.Millisecond, func() error {
		rss, err := RSS(pid)
		if err != nil {
			return nil // gone: nothing to wait for
		}
		samples = append(samples, rss)
		if len(samples) < 6 {
			return errors.New("sampling")
		}
		last := samples[len(samples)-6:]
		lo, hi := last[0], last[0]
		for _, v := range last {
			lo, hi = min(lo, v), max(hi, v)
		}
		if float64(hi-lo) > 0.02*float64(hi) {
			return errors.New("moving")
		}
		return nil
	})
	if len(samples) == 0 {
		return 0
	}
	return samples[len(samples)-1]
}

// rssWatch samples a process's RSS every 100 ms, keeps the peak and kills
// the process past a bound, so that a server that grows without limit
// does not take the machine with it.
type rssWatch struct {
	peak   atomic.Int64
	over   atomic.Int64 // RSS at which it was killed, 0 if not
	done   chan struct{}
	once   sync.Once
	exited chan struct{}
}

func watchRSS(pid int, kill int64, stop func()) *rssWatch {
	m := &rssWatch{done: make(chan struct{}), exited: make(chan struct{})}
	go func() {
		defer close(m.exited)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-m.done:
				return
			case <-tick.C:
			}
			rss, err := RSS(pid)
			if err != nil {
				continue
			}
			if rss > m.peak.Load() {
				m.peak.Store(rss)
			}
			if rss > kill {
				m.over.Store(rss)
				stop()
				return
			}
		}
	}()
	return m
}

// stop ends the sampling and returns the peak.
func (m *rssWatch) stop() int64 {
	m.once.Do(func() { close(m.done) })
	<-m.exited
	return m.peak.Load()
}

// killed explains a failure caused by the watch killing the server.
func (m *rssWatch) killed() string {
	if rss := m.over.Load(); rss > 0 {
		return fmt.Sprintf(" (server stopped at RSS %s)", Bytes(rss))
	}
	return ""
}

func saveHeapProfile(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("heap profile: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("heap profile: %w", err)
	}
	return f.Close()
}
