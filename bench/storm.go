package bench

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/wasmxds/wasmxds/internal/testproc"
	"github.com/wasmxds/wasmxds/internal/xds"
	"github.com/wasmxds/wasmxds/internal/xdstest"
)

// Storm follows a fleet through the loss of its server: when each client
// is re-subscribed, and whether what the server it reached sent differs
// from what the client held.
type Storm struct {
	start     time.Time
	base      []map[string]string // per client: type → version held (SotW)
	clients   []stormClient       // each touched by its client's goroutine only
	at        []atomic.Int64      // per client: ns from start + 1 when re-subscribed; 0 = not yet
	count     atomic.Int64
	responses atomic.Int64 // responses on resumed streams
	changed   atomic.Int64 // of which carried a version the client did not hold
	all       chan struct{}

	// Clients that resumed again after their first resumption: the stream
	// they opened broke, and why (at most maxAgainReasons reasons kept).
	againMu sync.Mutex
	again   map[string]int
}

const maxAgainReasons = 8

type stormClient struct {
	delta   bool
	resumed bool
	waiting map[string]bool // SotW: types not answered yet on the new stream
}

// stormTypes are the types whose versions a resumed SotW client reports.
var stormTypes = []string{resource.ClusterType, resource.ListenerType, resource.RouteType, resource.ExtensionConfigType}

// BeginStorm records what every client holds and starts following the
// fleet's resumption. Call it just before the server goes away; the fleet
// must have been started with ResumeBackoff.
func (f *Fleet) BeginStorm() *Storm {
	n := len(f.clients)
	s := &Storm{base: make([]map[string]string, n), clients: make([]stormClient, n),
		at: make([]atomic.Int64, n), all: make(chan struct{})}
	for i, c := range f.clients {
		st := c.State()
		s.base[i] = map[string]string{}
		for _, typeURL := range stormTypes {
			if ts := st.Type(typeURL); ts.Accepted {
				s.base[i][typeURL] = ts.Version
			}
		}
		s.clients[i].delta = f.clientOptions(i).Delta
	}
	if n == 0 {
		close(s.all)
	}
	s.start = time.Now()
	f.storm.Store(s)
	return s
}

// resumed is client i's Resume.OnResumed.
func (f *Fleet) resumed(i int) func(*xdstest.Client, error) {
	return func(_ *xdstest.Client, broke error) {
		s := f.storm.Load()
		if s == nil {
			return
		}
		sc := &s.clients[i]
		if sc.resumed {
			s.resumedAgain(broke)
		}
		sc.resumed = true
		if sc.delta {
			// A delta stream reports each resource's version; a server
			// holding the same sends nothing, so open is re-subscribed.
			s.record(i)
			return
		}
		sc.waiting = map[string]bool{}
		for typeURL := range s.base[i] {
			sc.waiting[typeURL] = true
		}
	}
}

// resumedAgain counts a client whose resumed stream broke and was opened
// once more, by what broke it.
func (s *Storm) resumedAgain(broke error) {
	s.againMu.Lock()
	defer s.againMu.Unlock()
	if s.again == nil {
		s.again = map[string]int{}
	}
	reason := fmt.Sprint(broke)
	if _, ok := s.again[reason]; !ok && len(s.again) >= maxAgainReasons {
		reason = "other"
	}
	s.again[reason]++
}

// observe counts a response on a resumed stream, and whether it changed
// what the client held.
func (s *Storm) observe(i int, r *xdstest.Response) {
	sc := &s.clients[i]
	if !sc.resumed {
		return
	}
	s.responses.Add(1)
	if sc.delta {
		if len(r.Names) > 0 || len(r.Removed) > 0 {
			s.changed.Add(1)
		}
		return
	}
	if v, ok := s.base[i][r.TypeURL]; ok && v != r.Version {
		s.changed.Add(1)
	}
	if sc.waiting[r.TypeURL] {
		delete(sc.waiting, r.TypeURL)
		if len(sc.waiting) == 0 {
			s.record(i)
		}
	}
}

func (s *Storm) record(i int) {
	if s.at[i].CompareAndSwap(0, int64(time.Since(s.start))+1) {
		if s.count.Add(1) == int64(len(s.at)) {
			close(s.all)
		}
	}
}

// Wait waits until every client is re-subscribed, or ctx ends, and
// returns the delays from BeginStorm, sorted; clients not re-subscribed
// are left out.
func (s *Storm) Wait(ctx context.Context) ([]time.Duration, error) {
	var err error
	select {
	case <-s.all:
	case <-ctx.Done():
		err = fmt.Errorf("%d of %d clients re-subscribed (%s): %w", s.count.Load(), len(s.at), s.missing(), ctx.Err())
	}
	out := make([]time.Duration, 0, len(s.at))
	for i := range s.at {
		if v := s.at[i].Load(); v > 0 {
			out = append(out, time.Duration(v-1))
		}
	}
	slices.Sort(out)
	return out, err
}

// missing describes a few clients not re-subscribed, for an error. It
// reads their state unlocked: their goroutines may still be writing it,
// so it is only called once the wait is over.
func (s *Storm) missing() string {
	var out []string
	for i := range s.at {
		if s.at[i].Load() != 0 {
			continue
		}
		sc := s.clients[i]
		out = append(out, fmt.Sprintf("client %d: delta %v, resumed %v, unanswered %v", i, sc.delta, sc.resumed, slices.Sorted(maps.Keys(sc.waiting))))
		if len(out) == 5 {
			break
		}
	}
	return strings.Join(out, "; ")
}

// StormOptions configures RunStorm.
type StormOptions struct {
	Fleet FleetOptions // Addr, StartJitter and the resume fields are filled in
	// Failover moves the fleet to a second replica, started beforehand,
	// instead of restarting the server.
	Failover bool
	// Backoff bounds each client's wait before it reconnects, doubling with
	// each failed attempt up to 30 s; zero means 500 ms, Envoy's base
	// interval for its ADS stream.
	Backoff time.Duration
	// Timeout bounds connecting the fleet and its resumption; zero means 5
	// minutes.
	Timeout time.Duration
	// Profiles, when set, names a directory for CPU profiles of the load
	// generator: <scenario>-<clients>-connect.pprof over the fleet's first
	// connection and <scenario>-<clients>-return.pprof over its return.
	// The profiler's own cost then counts in the load generator's CPU.
	Profiles string
}

// StormResult is what a fleet saw of losing its server.
type StormResult struct {
	Scenario string // restart or failover
	Clients  int
	Mode     Mode
	// Delays from the kill to each client's re-subscription (SotW: every
	// type answered on the new stream; delta: the stream open), sorted.
	Delays []time.Duration
	// Connect is how long the fleet took to connect and hold its
	// configuration before the kill.
	Connect time.Duration
	// ServerUp is from the kill to the restarted server's /readyz (restart
	// only); AllSeen to the server reporting every client connected.
	ServerUp, AllSeen time.Duration
	// Responses on the resumed streams, and how many carried a version the
	// client did not hold.
	Responses, Changed int64
	Missing            int
	// ResumedAgain counts, by what broke it, each resumed stream that broke
	// and was opened again by the time every client was seen.
	ResumedAgain map[string]int
	// CPU time over the fleet's first connection and over its return (to
	// the last client re-subscribed): of the server that held it, then of
	// the one it came back to (the restarted process, or the replica), and
	// of the load generator (this process). Zero when /proc could not say.
	ConnectCPU, ReturnCPU                   time.Duration
	GeneratorConnectCPU, GeneratorReturnCPU time.Duration
}

// RunStorm connects a fleet to `wasmxds serve`, kills it with SIGKILL and
// either starts it again on the same ports and cache or lets the fleet move
// to a second replica, and measures the fleet's return.
func RunStorm(ctx context.Context, bin string, fx *Fixture, delivery xds.Delivery, dir string, opts StormOptions) (StormResult, error) {
	res := StormResult{Scenario: "restart", Clients: opts.Fleet.Clients, Mode: cmpOr(opts.Fleet.Mode, ModeSotW)}
	ctx, cancel := context.WithTimeout(ctx, cmpOr(opts.Timeout, 5*time.Minute))
	defer cancel()
	for _, sub := range []string{"a", "b"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return res, err
		}
	}
	a, err := StartServe(bin, fx.ConfigDir, delivery, filepath.Join(dir, "a"))
	if err != nil {
		return res, err
	}
	defer a.Stop()
	survivor := a
	opts.Fleet.Addr, opts.Fleet.ResumeBackoff = a.Addr(), cmpOr(opts.Backoff, 500*time.Millisecond)
	// The first connection spreads the clients as their return will, so
	// that the two compare what the server does, not when clients arrive.
	opts.Fleet.StartJitter = opts.Fleet.ResumeBackoff
	if opts.Failover {
		res.Scenario = "failover"
		// Replicas behind one address advertise that address: here, a's.
		b, err := StartServe(bin, fx.ConfigDir, delivery, filepath.Join(dir, "b"), "--advertise-url", "http://"+a.HTTPAddr)
		if err != nil {
			return res, err
		}
		defer b.Stop()
		survivor, opts.Fleet.ResumeAddrs = b, []string{a.Addr(), b.Addr()}
	}
	defer quietGenerator()()
	settleGenerator() // each phase starts with the load generator's garbage collected
	profile := fmt.Sprintf("%s-%d", res.Scenario, res.Clients)
	stopProfile, err := profileGenerator(opts.Profiles, profile+"-connect")
	if err != nil {
		return res, err
	}
	connect := time.Now()
	gen0, srv0 := cpuOrZero(os.Getpid()), cpuOrZero(a.PID())
	fleet, err := StartFleet(ctx, opts.Fleet)
	if err != nil {
		stopProfile()
		return res, fmt.Errorf("connect %d clients: %w", opts.Fleet.Clients, err)
	}
	res.Connect = time.Since(connect)
	gen1, srv1 := cpuOrZero(os.Getpid()), cpuOrZero(a.PID())
	stopProfile()
	res.ConnectCPU, res.GeneratorConnectCPU = srv1-srv0, gen1-gen0
	defer fleet.Close()
	settleGenerator()
	if stopProfile, err = profileGenerator(opts.Profiles, profile+"-return"); err != nil {
		return res, err
	}
	defer stopProfile()
	var survivor0 time.Duration // the restarted process starts from zero
	if opts.Failover {
		survivor0 = cpuOrZero(survivor.PID())
	}
	gen1 = cpuOrZero(os.Getpid())
	storm := fleet.BeginStorm()
	a.Kill()
	if !opts.Failover {
		if err := a.Restart(); err != nil {
			return res, err
		}
		res.ServerUp = time.Since(storm.start)
	}
	res.Delays, err = storm.Wait(ctx)
	res.ReturnCPU, res.GeneratorReturnCPU = cpuOrZero(survivor.PID())-survivor0, cpuOrZero(os.Getpid())-gen1
	stopProfile()
	res.Missing = res.Clients - len(res.Delays)
	res.Responses, res.Changed = storm.responses.Load(), storm.changed.Load()
	if err != nil {
		return res, err
	}
	err = testproc.Poll(time.Until(deadline(ctx)), 20*time.Millisecond, func() error {
		return survivor.connected(res.Clients)
	})
	res.AllSeen = time.Since(storm.start)
	storm.againMu.Lock()
	res.ResumedAgain = maps.Clone(storm.again)
	storm.againMu.Unlock()
	return res, err
}

func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// Kill ends the server at once, as a crash would.
func (w *WasmxdsProc) Kill() { w.proc.Kill() }

// Restart starts a killed or stopped server again with the same flags —
// ports, config and cache — and waits until it is ready.
func (w *WasmxdsProc) Restart() error {
	p, err := testproc.Start(w.proc.Name, w.proc.LogPath, nil, w.argv...)
	if err != nil {
		return err
	}
	w.proc = p
	if err := p.WaitHTTP("http://"+w.AdminAddr+"/readyz", 60*time.Second); err != nil {
		return fmt.Errorf("wasmxds not ready after a restart: %w", err)
	}
	return nil
}

// connected returns nil once the server reports n nodes connected.
func (w *WasmxdsProc) connected(n int) error {
	got, err := testproc.Metric("http://"+w.AdminAddr+"/metrics", "wasmxds_xds_connected_nodes")
	if err != nil {
		return err
	}
	if int(got) != n {
		return fmt.Errorf("%v of %d nodes connected", got, n)
	}
	return nil
}

// cpuOrZero is CPUTime, zero when /proc cannot say.
func cpuOrZero(pid int) time.Duration {
	d, err := CPUTime(pid)
	if err != nil {
		return 0
	}
	return d
}

// profileGenerator starts a CPU profile of this process, the load
// generator, into dir/name.pprof; the function it returns stops it and may
// be called more than once. With dir empty it does nothing.
func profileGenerator(dir, name string) (stop func(), err error) {
	if dir == "" {
		return func() {}, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("load generator profile: %w", err)
	}
	f, err := os.Create(filepath.Join(dir, name+".pprof"))
	if err != nil {
		return nil, fmt.Errorf("load generator profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("load generator profile %s: %w", f.Name(), err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			f.Close()
		})
	}, nil
}
