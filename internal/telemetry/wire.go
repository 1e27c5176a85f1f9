package telemetry

import (
	"errors"
	"math"
	"sync"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the codec wrapped below
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// Metrics messages are read from their wire bytes: a flush carries a few
// hundred metric families of which a handful are kept, and decoding them
// all would allocate for every one, every flush, from every Envoy. The
// scan below looks at each family's name and reads the value of those
// kept; it allocates nothing for the others.

// frame is a metrics message's bytes. The codec fills it from a pooled
// buffer once the message arrived (release gives the buffer back), so a
// stream waiting for its next flush holds no buffer: thousands of Envoys
// flushing every few seconds would otherwise pin one each.
type frame struct{ b []byte }

var frameBufs = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// release returns the frame's buffer to the pool, unless it grew past
// maxPooledFrame.
func (f *frame) release() {
	if f.b != nil && cap(f.b) <= maxPooledFrame {
		b := f.b[:0]
		frameBufs.Put(&b)
	}
	f.b = nil
}

// codec is the proto codec, except that a *frame receives the message's
// bytes as they are.
type codec struct{ proto encoding.CodecV2 }

// ServerCodec is the gRPC server option the Service needs: install it on
// the server it is registered with (every other message is handled by the
// proto codec as before).
func ServerCodec() encoding.CodecV2 { return codec{proto: encoding.GetCodecV2("proto")} }

func (c codec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*frame)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	n := data.Len()
	buf := *frameBufs.Get().(*[]byte)
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	f.b = buf[:n]
	data.CopyTo(f.b)
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

// eachField calls fn with every field of b: its number, and its bytes (a
// bytes field) or its value (varint and fixed64).
func eachField(b []byte, fn func(num protowire.Number, v []byte, x uint64)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		case protowire.Fixed64Type:
			x, n = protowire.ConsumeFixed64(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return errMalformed
		}
		b = b[n:]
		fn(num, v, x)
	}
	return nil
}

// identifierOf returns the bytes of a message's identifier, nil if none.
func identifierOf(msg []byte) ([]byte, error) {
	var id []byte
	err := eachField(msg, func(num protowire.Number, v []byte, _ uint64) {
		if num == msgIdentifier {
			id = v
		}
	})
	return id, err
}

// eachFamily calls fn with every metric family of a message, read into f.
func eachFamily(msg []byte, fn func(f *family)) error {
	var f family
	var bad error
	err := eachField(msg, func(num protowire.Number, v []byte, _ uint64) {
		if num != msgEnvoyMetrics || bad != nil {
			return
		}
		if bad = f.parse(v); bad == nil {
			fn(&f)
		}
	})
	if err != nil {
		return err
	}
	return bad
}

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
	return eachField(b, func(num protowire.Number, v []byte, x uint64) {
		switch num {
		case famName:
			f.name = v
		case famType:
			f.typ = int32(x)
		}
	})
}

// values reads the family's counter sum and last gauge.
func (f *family) values() error {
	if f.valuesRead {
		return nil
	}
	f.valuesRead = true
	return eachField(f.b, func(num protowire.Number, v []byte, _ uint64) {
		if num != famMetric {
			return
		}
		_ = eachField(v, func(num protowire.Number, v []byte, _ uint64) {
			switch num {
			case metricCounter:
				f.counter += doubleField(v)
			case metricGauge:
				f.gauge = doubleField(v)
			}
		})
	})
}

// doubleField is the value field of a Gauge or Counter.
func doubleField(b []byte) float64 {
	var out float64
	_ = eachField(b, func(num protowire.Number, _ []byte, x uint64) {
		if num == valueField {
			out = math.Float64frombits(x)
		}
	})
	return out
}
