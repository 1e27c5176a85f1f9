package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"
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
	// Dialing bounds how many clients open their stream at once, so that a
	// large fleet does not overflow the server's accept backlog. Zero
	// means 128.
	Dialing int
}

// Fleet is a set of simulated Envoys, each on its own gRPC connection and
// ADS stream, that subscribe to clusters and listeners, follow listeners to
// their route configurations and ECDS filters, and ACK every response.
type Fleet struct {
	opts    FleetOptions
	clients []*client
	ready   atomic.Int64
	failed  atomic.Int64
	round   atomic.Pointer[Round]
	refs    refCache

	errMu    sync.Mutex
	firstErr error
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
	f := &Fleet{opts: opts, clients: make([]*client, opts.Clients)}
	sem := make(chan struct{}, opts.Dialing)
	var wg sync.WaitGroup
	for i := range f.clients {
		c := f.newClient(i)
		f.clients[i] = c
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := c.start(); err != nil {
				f.fail(fmt.Errorf("client %d: %w", c.idx, err))
			}
		}()
	}
	wg.Wait()
	if err := f.WaitReady(ctx); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// DefaultLabels are the labels of a group when FleetOptions.Labels is nil.
func DefaultLabels(group int) map[string]string {
	return map[string]string{"app": "bench", "group": fmt.Sprintf("g%03d", group)}
}

// WaitReady polls until every client holds its full configuration.
func (f *Fleet) WaitReady(ctx context.Context) error {
	for f.ready.Load() < int64(len(f.clients)) {
		if err := f.Err(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d clients ready: %w", f.ready.Load(), len(f.clients), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
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
	f.failed.Add(1)
	f.errMu.Lock()
	defer f.errMu.Unlock()
	if f.firstErr == nil {
		f.firstErr = err
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
		go func() { defer wg.Done(); c.close() }()
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
}

// Begin starts tracking a change whose resources contain marker, timed from
// now. Call it just before making the change.
func (f *Fleet) Begin(marker string) *Round {
	r := &Round{marker: []byte(marker), acked: make([]atomic.Int64, len(f.clients))}
	r.start = time.Now()
	f.round.Store(r)
	return r
}

// Wait polls until every client has ACKed the change or ctx ends, and
// returns the per-client delays; clients that never ACKed are left out.
func (r *Round) Wait(ctx context.Context, f *Fleet) ([]time.Duration, error) {
	var err error
	for r.count.Load() < int64(len(r.acked)) {
		if err = f.Err(); err != nil {
			break
		}
		select {
		case <-ctx.Done():
			err = fmt.Errorf("%d of %d clients ACKed: %w", r.count.Load(), len(r.acked), ctx.Err())
		case <-time.After(5 * time.Millisecond):
			continue
		}
		break
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
		r.count.Add(1)
	}
}

// client is one simulated Envoy.
type client struct {
	f      *Fleet
	idx    int
	delta  bool
	node   *corev3.Node
	conn   *grpc.ClientConn
	cancel context.CancelFunc
	done   chan struct{}
	closed atomic.Bool
	sotw   discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	dstr   discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	// Owned by the receive goroutine once it runs.
	types   map[string]*typeState
	isReady bool
}

// typeState is what a client holds for one resource type.
type typeState struct {
	version    string
	nonce      string
	received   bool
	subscribed []string          // names, for RDS and ECDS
	listeners  map[string][]byte // listener bytes by name, for following references
}

func (f *Fleet) newClient(i int) *client {
	group := i % f.opts.Groups
	delta := f.opts.Mode == ModeDelta || (f.opts.Mode == ModeMixed && i%2 == 1)
	return &client{f: f, idx: i, delta: delta, done: make(chan struct{}),
		node:  benchNode(fmt.Sprintf("bench-%05d", i), f.opts.Labels(group)),
		types: map[string]*typeState{}}
}

func benchNode(id string, labels map[string]string) *corev3.Node {
	fields := make(map[string]any, len(labels))
	for k, v := range labels {
		fields[k] = v
	}
	meta, err := structpb.NewStruct(map[string]any{"labels": fields})
	if err != nil {
		panic(err) // strings only: cannot fail
	}
	return &corev3.Node{Id: id, Cluster: "bench", Metadata: meta}
}

// clientDialOptions keep the load generator's own memory small: its
// buffers are not what is being measured.
func clientDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithReadBufferSize(8 << 10),
		grpc.WithWriteBufferSize(8 << 10),
		grpc.WithSharedWriteBuffer(true),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20)),
	}
}

// start opens the stream and sends the initial wildcard requests for
// clusters and listeners, as Envoy does with ADS.
func (c *client) start() error {
	conn, err := grpc.NewClient("passthrough:///"+c.f.opts.Addr, clientDialOptions()...)
	if err != nil {
		close(c.done)
		return fmt.Errorf("dial: %w", err)
	}
	c.conn = conn
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	ads := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn)
	if c.delta {
		c.dstr, err = ads.DeltaAggregatedResources(ctx)
	} else {
		c.sotw, err = ads.StreamAggregatedResources(ctx)
	}
	if err == nil {
		err = c.send(resource.ClusterType, c.node, nil, nil)
	}
	if err == nil {
		err = c.send(resource.ListenerType, nil, nil, nil)
	}
	if err != nil {
		close(c.done)
		return fmt.Errorf("open stream: %w", err)
	}
	go c.loop()
	return nil
}

func (c *client) close() {
	c.closed.Store(true)
	if c.cancel != nil {
		c.cancel()
	}
	<-c.done
	if c.conn != nil {
		_ = c.conn.Close()
	}
}

func (c *client) loop() {
	defer close(c.done)
	for {
		err := c.receive()
		if err != nil {
			if !c.closed.Load() {
				c.f.fail(fmt.Errorf("client %d: %w", c.idx, err))
			}
			return
		}
	}
}

// markReady counts the client once it holds every type it asked for.
func (c *client) markReady() {
	if c.isReady {
		return
	}
	for _, t := range []string{resource.ClusterType, resource.ListenerType, resource.RouteType, resource.ExtensionConfigType} {
		st := c.types[t]
		needed := t == resource.ClusterType || t == resource.ListenerType || (st != nil && len(st.subscribed) > 0)
		if needed && (st == nil || !st.received) {
			return
		}
	}
	c.isReady = true
	c.f.ready.Add(1)
}

func (c *client) state(typeURL string) *typeState {
	st := c.types[typeURL]
	if st == nil {
		st = &typeState{}
		c.types[typeURL] = st
	}
	return st
}

var errUnexpectedType = errors.New("response of a type never requested")
