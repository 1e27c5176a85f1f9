package bench

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/wasmxds/wasmxds/internal/xdstest"
)

// Mode is how a simulated Envoy speaks ADS.
type Mode string

// ADS modes of a fleet.
const (
	ModeSotW  Mode = "sotw"
	ModeDelta Mode = "delta"
	// ModeMixed alternates: even clients SotW, odd clients delta.
	ModeMixed Mode = "mixed"
)

// FleetOptions configures StartFleet.
type FleetOptions struct {
	Addr    string // ADS server host:port
	Clients int
	// Groups is the number of label sets; client i carries group i%Groups.
	// Zero means 1.
	Groups int
	Mode   Mode // zero means ModeSotW
	// Labels returns the node labels of a group; nil gives
	// {app: bench, group: gNNN}.
	Labels func(group int) map[string]string
	// NodePrefix starts every node id (prefix + five-digit index); empty
	// means "bench-". Fleets that follow one another use their own.
	NodePrefix string
	// Refs, if set, is shared with other fleets that get the same
	// resources; nil gives the fleet its own.
	Refs *xdstest.RefCache
	// Dialing bounds how many clients open their stream at once, so that a
	// large fleet does not overflow the server's accept backlog. Zero
	// means 128. Unused with StartJitter, which spreads the dials.
	Dialing int
	// ResumeBackoff, when set, makes clients reconnect when their stream
	// breaks, as Envoy does: after a random wait of up to it, the bound
	// doubling per failed attempt (see xdstest.Resume), to the next of
	// ResumeAddrs (Addr when empty); see BeginStorm.
	ResumeBackoff time.Duration
	ResumeAddrs   []string
	// StartJitter, when set, makes each client wait a random time up to it
	// before it first dials, with no bound on dials at once, as it
	// reconnects (see ResumeBackoff); with zero, clients dial at once,
	// Dialing at a time.
	StartJitter time.Duration
}

// Fleet is a set of simulated Envoys (xdstest clients), each on its own
// gRPC connection and ADS stream, that subscribe to clusters and
// listeners, follow listeners to their route configurations and ECDS
// filters, and ACK every response.
type Fleet struct {
	opts     FleetOptions
	clients  []*xdstest.Client
	refs     *xdstest.RefCache
	ready    atomic.Int64
	allReady chan struct{} // closed when every client holds its configuration
	round    atomic.Pointer[Round]
	storm    atomic.Pointer[Storm]

	errMu    sync.Mutex
	firstErr error
	failed   chan struct{} // closed on the first failure
}

// StartFleet connects every client and waits until each holds clusters,
// listeners and everything the listeners reference, or ctx ends.
func StartFleet(ctx context.Context, opts FleetOptions) (*Fleet, error) {
	if opts.Groups <= 0 {
		opts.Groups = 1
	}
	if opts.Mode == "" {
		opts.Mode = ModeSotW
	}
	if opts.Labels == nil {
		opts.Labels = DefaultLabels
	}
	if opts.Dialing <= 0 {
		opts.Dialing = 128
	}
	if opts.Refs == nil {
		opts.Refs = xdstest.NewRefCache()
	}
	f := &Fleet{opts: opts, clients: make([]*xdstest.Client, opts.Clients), refs: opts.Refs,
		allReady: make(chan struct{}), failed: make(chan struct{})}
	if opts.Clients == 0 {
		close(f.allReady)
	}
	dialing := opts.Dialing
	if opts.StartJitter > 0 {
		dialing = max(opts.Clients, 1) // the jitter spreads the dials: no bound
	}
	sem := make(chan struct{}, dialing)
	var wg sync.WaitGroup
	for i := range f.clients {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if opts.StartJitter > 0 {
				select {
				case <-time.After(rand.N(opts.StartJitter)):
				case <-ctx.Done():
				}
			}
			c, err := xdstest.Dial(opts.Addr, f.clientOptions(i))
			if err != nil {
				f.fail(fmt.Errorf("client %d: %w", i, err))
				return
			}
			f.clients[i] = c
		}()
	}
	wg.Wait()
	if err := f.WaitReady(ctx); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// clientOptions make client i: its group's labels, SotW or delta by the
// mode, and nothing kept beyond names and versions.
func (f *Fleet) clientOptions(i int) xdstest.Options {
	var resume *xdstest.Resume
	if f.opts.ResumeBackoff > 0 {
		resume = &xdstest.Resume{Addrs: f.opts.ResumeAddrs, Backoff: f.opts.ResumeBackoff, OnResumed: f.resumed(i)}
	}
	return xdstest.Options{
		Resume:      resume,
		Delta:       f.opts.Mode == ModeDelta || (f.opts.Mode == ModeMixed && i%2 == 1),
		NodeID:      fmt.Sprintf("%s%05d", cmpOr(f.opts.NodePrefix, "bench-"), i),
		Cluster:     "bench",
		Labels:      f.opts.Labels(i % f.opts.Groups),
		DialOptions: clientDialOptions(),
		NoHistory:   true,
		NoBodies:    true,
		Refs:        f.refs,
		OnResponse:  f.observer(i),
		OnEnd: func(err error) {
			if err != nil {
				f.fail(fmt.Errorf("client %d: %w", i, err))
			}
		},
	}
}

// observer is client idx's OnResponse: it counts the client ready once it
// holds its whole configuration, and records its ACK of the round's
// change.
func (f *Fleet) observer(idx int) func(*xdstest.Client, *xdstest.Response, []*anypb.Any) {
	ready := false // only this client's receiving goroutine touches it
	return func(c *xdstest.Client, r *xdstest.Response, resources []*anypb.Any) {
		if round := f.round.Load(); round != nil && !r.NACKed && carries(resources, round.marker) {
			round.record(idx)
		}
		if st := f.storm.Load(); st != nil {
			st.observe(idx, r)
		}
		if !ready && c.Check(xdstest.Complete) {
			ready = true
			if f.ready.Add(1) == int64(len(f.clients)) {
				close(f.allReady)
			}
		}
	}
}

func carries(resources []*anypb.Any, marker []byte) bool {
	for _, a := range resources {
		if bytes.Contains(a.GetValue(), marker) {
			return true
		}
	}
	return false
}

// DefaultLabels are the labels of a group when FleetOptions.Labels is nil.
func DefaultLabels(group int) map[string]string {
	return map[string]string{"app": "bench", "group": fmt.Sprintf("g%03d", group)}
}

// WaitReady waits until every client holds its full configuration, a
// client fails, or ctx ends.
func (f *Fleet) WaitReady(ctx context.Context) error {
	select {
	case <-f.allReady:
	case <-f.failed:
	case <-ctx.Done():
		return fmt.Errorf("%d of %d clients ready: %w", f.ready.Load(), len(f.clients), ctx.Err())
	}
	return f.Err()
}

// Err returns the first stream failure, if any.
func (f *Fleet) Err() error {
	f.errMu.Lock()
	defer f.errMu.Unlock()
	return f.firstErr
}

func (f *Fleet) fail(err error) {
	f.errMu.Lock()
	defer f.errMu.Unlock()
	if f.firstErr == nil {
		f.firstErr = err
		close(f.failed)
	}
}

// Close ends every stream and connection and waits for the clients to stop.
func (f *Fleet) Close() {
	var wg sync.WaitGroup
	for _, c := range f.clients {
		if c == nil {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); c.Close() }()
	}
	wg.Wait()
}

// Round is one change being tracked: each client records when it ACKed the
// first response carrying the round's marker.
type Round struct {
	marker []byte
	start  time.Time
	acked  []atomic.Int64 // per client: nanoseconds from start + 1; 0 = not yet
	count  atomic.Int64
	all    chan struct{} // closed when every client ACKed
}

// Begin starts tracking a change whose resources contain marker, timed from
// now. Call it just before making the change.
func (f *Fleet) Begin(marker string) *Round {
	r := &Round{marker: []byte(marker), acked: make([]atomic.Int64, len(f.clients)), all: make(chan struct{})}
	if len(f.clients) == 0 {
		close(r.all)
	}
	r.start = time.Now()
	f.round.Store(r)
	return r
}

// Wait waits until every client has ACKed the change, a client fails, or
// ctx ends, and returns the per-client delays; clients that never ACKed
// are left out.
func (r *Round) Wait(ctx context.Context, f *Fleet) ([]time.Duration, error) {
	var err error
	select {
	case <-r.all:
		err = f.Err()
	case <-f.failed:
		err = f.Err()
	case <-ctx.Done():
		err = fmt.Errorf("%d of %d clients ACKed: %w", r.count.Load(), len(r.acked), ctx.Err())
	}
	out := make([]time.Duration, 0, len(r.acked))
	for i := range r.acked {
		if v := r.acked[i].Load(); v > 0 {
			out = append(out, time.Duration(v-1))
		}
	}
	return out, err
}

func (r *Round) record(idx int) {
	if r.acked[idx].CompareAndSwap(0, int64(time.Since(r.start))+1) {
		if r.count.Add(1) == int64(len(r.acked)) {
			close(r.all)
		}
	}
}

// clientDialOptions keep the load generator's own memory small: its
// buffers are not what is being measured.
func clientDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithReadBufferSize(8 << 10),
		grpc.WithWriteBufferSize(8 << 10),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20)),
	}
}
