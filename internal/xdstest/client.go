// Package xdstest is a fake Envoy for tests and load generation: a Client
// speaks ADS (state of the world or delta) to a server the way Envoy does —
// clusters and listeners by wildcard, then the route configurations, ECDS
// filters and EDS assignments they name — and ACKs every response by
// nonce unless told to NACK it.
//
// Tests wait on events, never sleep: every response (and a broken stream)
// wakes Client.WaitFor, which re-checks a condition on what the client
// holds. Every response is also recorded, so that a test can count
// updates. For thousands of clients in one process, Options.NoHistory and
// Options.NoBodies keep only versions and names, and a shared RefCache
// parses each distinct listener once for the whole fleet.
package xdstest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// Options configure a Client. The zero value is a state-of-the-world
// Envoy with node id "envoy", cluster "test" and no labels that ACKs
// everything and records everything.
type Options struct {
	// Delta selects the incremental protocol instead of state of the world.
	Delta bool
	// NodeID and Cluster name the node; empty means "envoy" and "test".
	NodeID  string
	Cluster string
	// Labels become node.metadata.labels, as `wasmxds bootstrap` writes them.
	Labels map[string]string
	// DialOptions are appended to the defaults (plaintext credentials and
	// Envoy's HTTP/2 flow-control windows), so a later option such as TLS
	// credentials wins.
	DialOptions []grpc.DialOption
	// NACK, when set, is asked about every response before it is applied:
	// a non-nil error rejects it, with the error's text as error_detail.
	// It runs on the receiving goroutine and must not keep the Response.
	NACK func(*Response) error
	// NACKResources, when set, is asked after NACK (when that accepts),
	// with the response's resources, which it must not keep: a fake Envoy
	// that rejects a config for what it holds.
	NACKResources func(r *Response, resources []*anypb.Any) error
	// OnResponse, when set, is called on the receiving goroutine after each
	// response was answered and applied (or rejected), with the response's
	// resources. Neither may be kept after it returns.
	OnResponse func(c *Client, r *Response, resources []*anypb.Any)
	// OnEnd, when set, is called on the receiving goroutine as the stream
	// ends: with its error, or nil when Close ended it.
	OnEnd func(err error)
	// NoHistory stops recording responses; per-type counts remain.
	NoHistory bool
	// NoBodies keeps resource names and versions but not the resources.
	NoBodies bool
	// Refs parses the references of listeners and clusters; share one
	// across a fleet so that identical resources are parsed once. Nil
	// gives the client its own.
	Refs *RefCache
	// Resume, when set, reconnects a stream that broke, as Envoy does,
	// instead of ending the client (see Resume).
	Resume *Resume
}

// Client is one fake Envoy on its own connection and ADS stream.
type Client struct {
	opts   Options
	node   *corev3.Node
	conn   *grpc.ClientConn
	done   chan struct{} // closed when the receive goroutine returned
	stop   chan struct{} // closed by Close
	closed atomic.Bool
	addr   string // the server dialled last

	connMu sync.Mutex // guards conn and cancel, which a resume replaces
	cancel context.CancelFunc

	sotw  discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	delta discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesClient

	mu      sync.Mutex
	types   map[string]*typeState
	history []Response
	err     error         // why the stream ended, unless Close ended it
	ended   bool          // the stream ended, by Close or failure
	changed chan struct{} // closed on the next change; made by waiters

	// Owned by the receiving goroutine: reused from response to response.
	scratch scratch
}

// Dial connects to the ADS server at addr (host:port), opens the stream and
// sends the initial wildcard requests for clusters and listeners. The
// caller owns the client and must Close it.
func Dial(addr string, opts Options) (*Client, error) {
	if opts.Refs == nil {
		opts.Refs = NewRefCache()
	}
	c := &Client{opts: opts, done: make(chan struct{}), stop: make(chan struct{}), types: map[string]*typeState{}, addr: addr}
	c.node = Node(cmpOr(opts.NodeID, "envoy"), cmpOr(opts.Cluster, "test"), opts.Labels)
	conn, err := c.dial(addr)
	if err != nil {
		close(c.done)
		return nil, err
	}
	c.conn = conn
	if err := c.open(); err != nil {
		close(c.done)
		c.cancel()
		_ = conn.Close()
		return nil, fmt.Errorf("xdstest: %s: %w", addr, err)
	}
	go c.loop()
	return c, nil
}

// envoyWindow is Envoy's default HTTP/2 flow-control window, for a stream
// and for the connection (Http2ProtocolOptions initial_stream_window_size
// and initial_connection_window_size, 256 MiB). The windows are fixed, as
// Envoy's are: gRPC's client otherwise estimates the bandwidth, sending a
// ping with a window update after each response, which costs the server a
// read and a write per response that no Envoy asks of it.
const envoyWindow = 256 << 20

// dial makes a connection to addr; it connects lazily.
func (c *Client) dial(addr string) (*grpc.ClientConn, error) {
	dial := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStaticStreamWindowSize(envoyWindow), grpc.WithStaticConnWindowSize(envoyWindow)},
		c.opts.DialOptions...)
	conn, err := grpc.NewClient("passthrough:///"+addr, dial...)
	if err != nil {
		return nil, fmt.Errorf("xdstest: dial %s: %w", addr, err)
	}
	return conn, nil
}

// Start is Dial for a test: it fails the test on error and closes the
// client when the test ends.
func Start(t testing.TB, addr string, opts Options) *Client {
	t.Helper()
	c, err := Dial(addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// Node builds a node as Envoy sends it, labels under metadata.labels.
func Node(id, cluster string, labels map[string]string) *corev3.Node {
	fields := make(map[string]*structpb.Value, len(labels))
	for k, v := range labels {
		fields[k] = structpb.NewStringValue(v)
	}
	meta := &structpb.Struct{Fields: map[string]*structpb.Value{
		"labels": structpb.NewStructValue(&structpb.Struct{Fields: fields}),
	}}
	return &corev3.Node{Id: id, Cluster: cluster, Metadata: meta}
}

// open starts the stream and asks for clusters and listeners, node first.
func (c *Client) open() error {
	if err := c.openStream(); err != nil {
		return err
	}
	for i, typeURL := range []string{resource.ClusterType, resource.ListenerType} {
		c.types[typeURL] = newTypeState(true)
		var node *corev3.Node
		if i == 0 {
			node = c.node
		}
		err := c.send(request{typeURL: typeURL, node: node})
		if errors.Is(err, io.EOF) {
			// The server already ended the stream (it refused the node on
			// its first request, say): the receiving goroutine reads why.
			return nil
		}
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", typeURL, err)
		}
	}
	return nil
}

// openStream opens the ADS stream on c.conn.
func (c *Client) openStream() error {
	ctx, cancel := context.WithCancel(context.Background())
	c.connMu.Lock()
	c.cancel = cancel
	if c.closed.Load() {
		cancel() // Close ran before this stream existed: it must not outlive it
	}
	c.connMu.Unlock()
	ads := discoverygrpc.NewAggregatedDiscoveryServiceClient(c.conn)
	var err error
	if c.opts.Delta {
		c.delta, err = ads.DeltaAggregatedResources(ctx)
	} else {
		c.sotw, err = ads.StreamAggregatedResources(ctx)
	}
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	return nil
}

// Close ends the stream and the connection and waits for the receiving
// goroutine to return. It may be called more than once.
func (c *Client) Close() {
	if c.closed.Swap(true) {
		<-c.done
		return
	}
	close(c.stop)
	c.connMu.Lock()
	c.cancel()
	c.connMu.Unlock()
	<-c.done
	c.connMu.Lock()
	defer c.connMu.Unlock()
	_ = c.conn.Close()
}

// Err returns why the stream ended, or nil while it runs and after Close.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Done is closed once the stream has ended, by Close or by failure.
func (c *Client) Done() <-chan struct{} { return c.done }

func (c *Client) loop() {
	defer close(c.done)
	for {
		var err error
		if c.opts.Delta {
			err = c.receiveDelta()
		} else {
			err = c.receiveSotW()
		}
		if err != nil && c.resume(err) {
			continue
		}
		if err != nil {
			if err = c.fail(err); c.opts.OnEnd != nil {
				c.opts.OnEnd(err)
			}
			return
		}
	}
}

// fail records why the stream ended, unless Close ended it, wakes the
// waiters and returns the error recorded.
func (c *Client) fail(err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ended = true
	if !c.closed.Load() {
		c.err = fmt.Errorf("%s: %w", c.node.GetId(), err)
	}
	c.signal()
	return c.err
}

// signal wakes every WaitFor. Called with mu held.
func (c *Client) signal() {
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
}

// errUnexpectedType is a response of a type the client never asked for.
var errUnexpectedType = errors.New("response of a type never requested")

func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
