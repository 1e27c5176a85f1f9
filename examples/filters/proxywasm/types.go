package proxywasm

import "strconv"

// Status is a proxy-wasm host call result (proxy_status_t). Non-OK values
// are returned as errors by the helpers in this package.
type Status uint32

// Status values defined by the ABI.
const (
	StatusOK                   Status = 0
	StatusNotFound             Status = 1
	StatusBadArgument          Status = 2
	StatusSerializationFailure Status = 3
	StatusParseFailure         Status = 4
	StatusInvalidMemoryAccess  Status = 6
	StatusEmpty                Status = 7
	StatusCASMismatch          Status = 8
	StatusInternalFailure      Status = 10
	StatusUnimplemented        Status = 12
)

var statusNames = map[Status]string{
	StatusNotFound:             "not found",
	StatusBadArgument:          "bad argument",
	StatusSerializationFailure: "serialization failure",
	StatusParseFailure:         "parse failure",
	StatusInvalidMemoryAccess:  "invalid memory access",
	StatusEmpty:                "empty",
	StatusCASMismatch:          "cas mismatch",
	StatusInternalFailure:      "internal failure",
	StatusUnimplemented:        "unimplemented",
}

// Error makes a Status usable as an error, so callers can test results with
// errors.Is(err, proxywasm.StatusNotFound).
func (s Status) Error() string {
	if name, ok := statusNames[s]; ok {
		return "proxy-wasm: " + name
	}
	return "proxy-wasm: status " + strconv.FormatUint(uint64(s), 10)
}

// statusErr turns an OK status into a nil error.
func statusErr(s Status) error {
	if s == StatusOK {
		return nil
	}
	return s
}

// Action tells the host whether to continue processing a stream after a
// callback returns (proxy_action_t).
type Action uint32

// Action values defined by the ABI.
const (
	ActionContinue Action = 0
	ActionPause    Action = 1
)

// LogLevel is the severity of a message sent to the host log
// (proxy_log_level_t).
type LogLevel uint32

// LogLevel values defined by the ABI.
const (
	LogLevelTrace    LogLevel = 0
	LogLevelDebug    LogLevel = 1
	LogLevelInfo     LogLevel = 2
	LogLevelWarn     LogLevel = 3
	LogLevelError    LogLevel = 4
	LogLevelCritical LogLevel = 5
)

// MapType names one of the host's header maps (proxy_map_type_t).
type MapType uint32

// MapType values used by HTTP filters.
const (
	MapRequestHeaders   MapType = 0
	MapRequestTrailers  MapType = 1
	MapResponseHeaders  MapType = 2
	MapResponseTrailers MapType = 3
)

// BufferType names one of the host's byte buffers (proxy_buffer_type_t).
type BufferType uint32

// BufferType values used by HTTP and network filters.
const (
	BufferRequestBody         BufferType = 0
	BufferResponseBody        BufferType = 1
	BufferDownstreamData      BufferType = 2
	BufferUpstreamData        BufferType = 3
	BufferVMConfiguration     BufferType = 6
	BufferPluginConfiguration BufferType = 7
)

// PeerType says which side closed a connection (proxy_peer_type_t).
type PeerType uint32

// PeerType values.
const (
	PeerUnknown PeerType = 0
	PeerLocal   PeerType = 1
	PeerRemote  PeerType = 2
)

// StreamType names a direction of a stream (proxy_stream_type_t).
type StreamType uint32

// StreamType values used by HTTP filters.
const (
	StreamRequest  StreamType = 0
	StreamResponse StreamType = 1
)

// Header is one HTTP header (or trailer) as a name/value pair. Names are
// lower case, as the host stores them.
type Header struct {
	Name  string
	Value string
}

// HeaderValue returns the value of the first header called name.
func HeaderValue(headers []Header, name string) (string, bool) {
	for _, h := range headers {
		if h.Name == name {
			return h.Value, true
		}
	}
	return "", false
}
