package xdstest

import (
	"context"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/service/metrics/v3"
	promgo "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
)

// Reporter is a fake Envoy's metrics_service stat sink: one
// StreamMetrics stream that carries the node in its first message only,
// as Envoy does.
type Reporter struct {
	stream grpc.ClientStreamingClient[metricsv3.StreamMetricsMessage, metricsv3.StreamMetricsResponse]
	cancel context.CancelFunc
	node   *corev3.Node
}

// Report opens a metrics stream on conn (the connection of an ADS Client,
// say: Envoy reports over its ADS cluster) as node.
func Report(conn *grpc.ClientConn, node *corev3.Node) (*Reporter, error) {
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := metricsv3.NewMetricsServiceClient(conn).StreamMetrics(ctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("xdstest: open metrics stream: %w", err)
	}
	return &Reporter{stream: stream, cancel: cancel, node: node}, nil
}

// Send sends one flush of stats; the first carries the node.
func (r *Reporter) Send(families []*promgo.MetricFamily) error {
	msg := &metricsv3.StreamMetricsMessage{EnvoyMetrics: families}
	if r.node != nil {
		msg.Identifier = &metricsv3.StreamMetricsMessage_Identifier{Node: r.node}
		r.node = nil
	}
	if err := r.stream.Send(msg); err != nil {
		// The server ended the stream: CloseAndRecv says why.
		_, rerr := r.stream.CloseAndRecv()
		if rerr != nil {
			return rerr
		}
		return err
	}
	return nil
}

// Close ends the stream and returns how the server answered it.
func (r *Reporter) Close() error {
	defer r.cancel()
	_, err := r.stream.CloseAndRecv()
	return err
}

// Conn is the client's current connection, to open a Reporter on.
func (c *Client) Conn() *grpc.ClientConn {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	return c.conn
}

// NodeProto is the node the client announces.
func (c *Client) NodeProto() *corev3.Node { return c.node }

// Flush is one stats flush of an Envoy with HTTP listeners and Wasm
// plugins, as Envoy 1.40 reports it with counters as deltas: per listener
// its requests and 5xx (the rest of its responses 2xx), the Wasm runtime's
// VM counters, each plugin's VM reloads, and other counters and gauges
// Envoy reports, up to AtLeast families in all.
type Flush struct {
	Listeners []string
	Plugins   []string
	Requests  uint64 // per listener
	Errors5xx uint64 // per listener
	Reloads   uint64 // per plugin
	AtLeast   int    // families in all, filled with other stats
}

// Families builds the flush's metric families.
func (f Flush) Families() []*promgo.MetricFamily {
	var out []*promgo.MetricFamily
	for _, l := range f.Listeners {
		out = append(out, Counter("http."+l+".downstream_rq_total", f.Requests),
			Counter("http."+l+".downstream_rq_5xx", f.Errors5xx),
			Counter("http."+l+".downstream_rq_2xx", f.Requests-min(f.Requests, f.Errors5xx)),
			Counter("http."+l+".downstream_rq_4xx", 0))
	}
	out = append(out, Counter("wasm.envoy.wasm.runtime.v8.created", 0), Gauge("wasm.envoy.wasm.runtime.v8.active", float64(len(f.Plugins))),
		Gauge("wasm.wasm_vm_count", float64(len(f.Plugins))))
	for _, p := range f.Plugins {
		out = append(out, Counter("wasm."+p+".vm_reload_success", f.Reloads), Counter("wasm."+p+".vm_reload_failure", 0),
			Counter("wasm."+p+".vm_reload_backoff", 0))
	}
	for i := 0; len(out) < f.AtLeast; i++ {
		if i%2 == 0 {
			out = append(out, Counter(fmt.Sprintf("cluster.upstream_%d.upstream_cx_total", i), 1))
		} else {
			out = append(out, Gauge(fmt.Sprintf("server.memory_%d", i), 1024))
		}
	}
	return out
}

// Counter is a counter family with one value.
func Counter(name string, v uint64) *promgo.MetricFamily {
	t, f := promgo.MetricType_COUNTER, float64(v)
	return &promgo.MetricFamily{Name: &name, Type: &t, Metric: []*promgo.Metric{{Counter: &promgo.Counter{Value: &f}}}}
}

// Gauge is a gauge family with one value.
func Gauge(name string, v float64) *promgo.MetricFamily {
	t := promgo.MetricType_GAUGE
	return &promgo.MetricFamily{Name: &name, Type: &t, Metric: []*promgo.Metric{{Gauge: &promgo.Gauge{Value: &v}}}}
}
