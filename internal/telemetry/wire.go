package telemetry

import (
	"errors"
	"math"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the codec wrapped below
	"google.golang.org/grpc/experimental"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Metrics messages are read from their wire bytes: a flush carries a few
// hundred metric families of which a handful are kept, and decoding them
// all would allocate for every one, every flush, from every Envoy. The
// scan below looks at each family's name and reads the value of those
// kept; it allocates nothing for the others.

// frame is a metrics message's bytes: the codec keeps a reference to the
// buffers gRPC received them in, so that nothing is allocated or copied
// per message while it waits for a worker, and a stream waiting for its
// next flush holds no buffer. A message that arrived in one buffer is read
// where it lies; one that spans several (over 16 KiB, HTTP/2's frame
// size) is copied by the worker into its own scratch buffer. Copying it
// where it is received would take one buffer of gRPC's pool per waiting
// message, and that pool rounds up to its next size class: 1 MiB for
// anything over 32 KiB.
type frame struct {
	data mem.BufferSlice
}

// bytes returns the message's bytes, in scratch when they span several
// buffers; they are valid until release, or scratch's next use.
func (f *frame) bytes(scratch *[]byte) []byte {
	if len(f.data) == 1 {
		return f.data[0].ReadOnlyData()
	}
	n := f.data.Len()
	if cap(*scratch) < n {
		*scratch = make([]byte, n)
	}
	b := (*scratch)[:n]
	f.data.CopyTo(b)
	return b
}

// release gives the frame's buffers back to gRPC's pool.
func (f *frame) release() {
	f.data.Free()
	*f = frame{}
}

// maxScratch is the largest scratch buffer a worker keeps between
// messages; a larger one, for a rare large flush, is dropped after it.
const maxScratch = 256 << 10

// codec is the proto codec, except that a *frame receives the message's
// bytes as they are.
type codec struct{ proto encoding.CodecV2 }

// ServerCodec is the codec the Service needs on the server it is
// registered with (see ServerOptions); every other message is handled by
// the proto codec as before. A metrics message is then in the buffer gRPC
// received it in, the default buffer pool's, until its frame is released.
func ServerCodec() encoding.CodecV2 { return codec{proto: encoding.GetCodecV2("proto")} }

// flowWindow is the flow-control window, per stream and per connection,
// of the server the Service is registered with: the most a client sends
// ahead of what the server has read. It is HTTP/2's default and gRPC's
// smallest.
const flowWindow = 64 << 10

// ServerOptions are the options the Service needs on the gRPC server it is
// registered with, which it shares with ADS:
//
//   - ServerCodec, so that metrics messages are handed over as bytes;
//   - static flow-control windows (flowWindow). gRPC otherwise sizes them
//     from a bandwidth estimate, sending a ping after data arrives (one per
//     flush of every Envoy) and growing the windows when reads fall behind,
//     so that more flushes could wait in the server's memory. The windows
//     bound what clients send only: ADS requests are small, and what the
//     server sends is bound by the client's windows;
//   - receiveBuffers, the pool gRPC reads frames into.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ForceServerCodecV2(ServerCodec()),
		grpc.StaticStreamWindowSize(flowWindow), grpc.StaticConnWindowSize(flowWindow),
		experimental.BufferPool(receiveBuffers)}
}

// receiveBuffers is the server's buffer pool: gRPC reads each HTTP/2 DATA
// frame over 1 KiB into a buffer of the pool's next size class, and a
// stats flush waiting for a worker holds its frames' buffers. gRPC's
// default classes jump from 4 KiB to 16 KiB, so that a flush of 9 KB took
// 16 KiB, and the last frame of a larger flush (the rest after whole 16 KiB
// frames) took 16 KiB whatever its size. Classes every 4 KiB up to the
// frame size (each one of Go's allocation size classes) waste 2 KiB per
// buffer on average instead of 6. When thousands of Envoys flush in the
// same instant, most of their flushes wait at once, and the pool keeps
// those buffers for the next burst. The other classes are gRPC's default
// ones: 256 B, 32 KiB and 1 MiB.
var receiveBuffers = mem.NewTieredBufferPool(256, 4<<10, 8<<10, 12<<10, 16<<10, 32<<10, 1<<20)

func (c codec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*frame)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	// gRPC frees data once Unmarshal returns: keep a reference.
	data.Ref()
	f.data = data
	return nil
}

func (c codec) Name() string { return c.proto.Name() }

var errMalformed = errors.New("malformed metrics message")

// Field numbers of envoy.service.metrics.v3.StreamMetricsMessage and
// io.prometheus.client.MetricFamily / Metric.
const (
	msgIdentifier   = 1
	msgEnvoyMetrics = 2
	famName         = 1
	famType         = 3
	famMetric       = 4
	metricGauge     = 2
	metricCounter   = 3
	valueField      = 1 // Gauge.value, Counter.value
)

// fields reads a message's fields one at a time (see next). It is a
// plain loop rather than a callback so that reading a message allocates
// nothing.
type fields struct {
	b   []byte
	typ protowire.Type // the wire type of the field next returned last
	err error          // errMalformed once a field could not be read
}

// next returns the next field: its number, and its bytes (a bytes field)
// or its value (varint and fixed64); false at the end of the message or
// at a malformed field (then err is set).
func (r *fields) next() (num protowire.Number, v []byte, x uint64, ok bool) {
	if len(r.b) == 0 || r.err != nil {
		return 0, nil, 0, false
	}
	num, typ, n := protowire.ConsumeTag(r.b)
	if n < 0 {
		r.err = errMalformed
		return 0, nil, 0, false
	}
	r.b = r.b[n:]
	switch typ {
	case protowire.BytesType:
		v, n = protowire.ConsumeBytes(r.b)
	case protowire.VarintType:
		x, n = protowire.ConsumeVarint(r.b)
	case protowire.Fixed64Type:
		x, n = protowire.ConsumeFixed64(r.b)
	default:
		n = protowire.ConsumeFieldValue(num, typ, r.b)
	}
	if n < 0 {
		r.err = errMalformed
		return 0, nil, 0, false
	}
	r.b, r.typ = r.b[n:], typ
	return num, v, x, true
}

// Field numbers of StreamMetricsMessage.Identifier and config.core.v3.Node.
const (
	identifierNode = 1
	nodeID         = 1
	nodeCluster    = 2
	nodeMetadata   = 3
)

// nodeOf decodes the node of a message's identifier, nil if it has none:
// its id, cluster and metadata only, which is what a stream is admitted
// by and bound to. An Envoy's node also lists every extension it was built
// with (a few hundred entries, tens of kilobytes once decoded), which
// would be garbage for every stream of the fleet. A message field that
// occurs more than once on the wire is merged into one, as the proto
// decoder does: every identifier's every node counts, in order; a field
// of another wire type is not the field (the decoder keeps it as unknown).
func nodeOf(msg []byte) (*corev3.Node, error) {
	var kept []byte
	found := false
	err := eachBytesField(msg, msgIdentifier, func(identifier []byte) error {
		return eachBytesField(identifier, identifierNode, func(node []byte) error {
			found = true
			r := fields{b: node}
			for rest := r.b; ; rest = r.b {
				num, _, _, ok := r.next()
				if !ok {
					return r.err
				}
				if num == nodeID || num == nodeCluster || num == nodeMetadata {
					kept = append(kept, rest[:len(rest)-len(r.b)]...) // the field whole, tag and value
				}
			}
		})
	})
	if err != nil || !found {
		return nil, err
	}
	n := &corev3.Node{}
	if err := proto.Unmarshal(kept, n); err != nil {
		return nil, err
	}
	return n, nil
}

// eachBytesField calls f with the bytes of every length-delimited field
// number num of msg, in order.
func eachBytesField(msg []byte, num protowire.Number, f func([]byte) error) error {
	r := fields{b: msg}
	for n, v, _, ok := r.next(); ok; n, v, _, ok = r.next() {
		if n == num && r.typ == protowire.BytesType {
			if err := f(v); err != nil {
				return err
			}
		}
	}
	return r.err
}

// families reads the metric families of a message one at a time.
type families struct {
	r fields
	f family
}

// next reads the next family into fs.f; false at the end of the message
// or at a malformed field (see err).
func (fs *families) next() bool {
	for num, v, _, ok := fs.r.next(); ok; num, v, _, ok = fs.r.next() {
		if num != msgEnvoyMetrics {
			continue
		}
		if fs.r.err = fs.f.parse(v); fs.r.err != nil {
			return false
		}
		return true
	}
	return false
}

func (fs *families) err() error { return fs.r.err }

// family is what is read of one metric family: its name (a view into the
// message), type, the sum of its counters and its last gauge.
type family struct {
	name       []byte
	typ        int32 // io.prometheus.client.MetricType
	counter    float64
	gauge      float64
	b          []byte // the family's bytes, read again for the values of one kept
	valuesRead bool   // counter and gauge are read
}

func (f *family) parse(b []byte) error {
	*f = family{b: b}
	r := fields{b: b}
	for num, v, x, ok := r.next(); ok; num, v, x, ok = r.next() {
		switch num {
		case famName:
			f.name = v
		case famType:
			f.typ = int32(x)
		}
	}
	return r.err
}

// values reads the family's counter sum and last gauge.
func (f *family) values() error {
	if f.valuesRead {
		return nil
	}
	f.valuesRead = true
	r := fields{b: f.b}
	for num, v, _, ok := r.next(); ok; num, v, _, ok = r.next() {
		if num != famMetric {
			continue
		}
		m := fields{b: v}
		for num, v, _, ok := m.next(); ok; num, v, _, ok = m.next() {
			switch num {
			case metricCounter:
				f.counter += doubleField(v)
			case metricGauge:
				f.gauge = doubleField(v)
			}
		}
	}
	return r.err
}

// doubleField is the value field of a Gauge or Counter.
func doubleField(b []byte) float64 {
	var out float64
	r := fields{b: b}
	for num, _, x, ok := r.next(); ok; num, _, x, ok = r.next() {
		if num == valueField {
			out = math.Float64frombits(x)
		}
	}
	return out
}
