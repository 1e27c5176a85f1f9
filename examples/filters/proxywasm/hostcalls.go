package proxywasm

import (
	"errors"
	"strings"
)

// host is what the proxy provides. The wasip1 build implements it with the
// ABI imports; FakeHost implements it for tests on other platforms.
type host interface {
	log(level LogLevel, msg string) Status
	getBuffer(bt BufferType, start, maxSize int) ([]byte, Status)
	setBuffer(bt BufferType, start, length int, data []byte) Status
	getMapValue(mt MapType, key string) (string, Status)
	getMapPairs(mt MapType) ([]Header, Status)
	addMapValue(mt MapType, key, value string) Status
	replaceMapValue(mt MapType, key, value string) Status
	removeMapValue(mt MapType, key string) Status
	sendLocalResponse(code uint32, details string, body []byte, headers []Header, grpcStatus int32) Status
	getProperty(path string) ([]byte, Status)
	setTickPeriod(ms uint32) Status
	currentTimeNanos() (int64, Status)
	continueStream(st StreamType) Status
}

// errNoHost is returned by every helper when no proxy is attached: outside
// wasip1 only a FakeHost provides one.
var errNoHost = errors.New("proxy-wasm: no host (use FakeHost outside wasip1)")

// current is the proxy this VM runs in.
var current host

// Log sends msg to the host log at level. Errors are dropped: there is
// nowhere else to report them.
func Log(level LogLevel, msg string) {
	if current != nil {
		current.log(level, msg)
	}
}

// LogTrace logs msg at trace level.
func LogTrace(msg string) { Log(LogLevelTrace, msg) }

// LogDebug logs msg at debug level.
func LogDebug(msg string) { Log(LogLevelDebug, msg) }

// LogInfo logs msg at info level.
func LogInfo(msg string) { Log(LogLevelInfo, msg) }

// LogWarn logs msg at warning level.
func LogWarn(msg string) { Log(LogLevelWarn, msg) }

// LogError logs msg at error level.
func LogError(msg string) { Log(LogLevelError, msg) }

// LogCritical logs msg at critical level.
func LogCritical(msg string) { Log(LogLevelCritical, msg) }

func getBuffer(bt BufferType, start, maxSize int) ([]byte, error) {
	if current == nil {
		return nil, errNoHost
	}
	data, st := current.getBuffer(bt, start, maxSize)
	return data, statusErr(st)
}

// GetRequestBody returns up to maxSize bytes of the buffered request body
// from start; valid in OnRequestBody.
func GetRequestBody(start, maxSize int) ([]byte, error) {
	return getBuffer(BufferRequestBody, start, maxSize)
}

// GetResponseBody returns up to maxSize bytes of the buffered response body
// from start; valid in OnResponseBody.
func GetResponseBody(start, maxSize int) ([]byte, error) {
	return getBuffer(BufferResponseBody, start, maxSize)
}

// GetHeader returns the value of header name in map mt; a missing header
// is StatusNotFound.
func GetHeader(mt MapType, name string) (string, error) {
	if current == nil {
		return "", errNoHost
	}
	v, st := current.getMapValue(mt, strings.ToLower(name))
	return v, statusErr(st)
}

// GetHeaders returns every header of map mt in the host's order.
func GetHeaders(mt MapType) ([]Header, error) {
	if current == nil {
		return nil, errNoHost
	}
	hs, st := current.getMapPairs(mt)
	return hs, statusErr(st)
}

// AddHeader adds a header to map mt, keeping existing ones of that name.
func AddHeader(mt MapType, name, value string) error {
	if current == nil {
		return errNoHost
	}
	return statusErr(current.addMapValue(mt, strings.ToLower(name), value))
}

// ReplaceHeader sets header name in map mt, replacing existing values.
func ReplaceHeader(mt MapType, name, value string) error {
	if current == nil {
		return errNoHost
	}
	return statusErr(current.replaceMapValue(mt, strings.ToLower(name), value))
}

// RemoveHeader removes header name from map mt; removing a missing header
// is not an error.
func RemoveHeader(mt MapType, name string) error {
	if current == nil {
		return errNoHost
	}
	return statusErr(current.removeMapValue(mt, strings.ToLower(name)))
}

// GetRequestHeader returns a request header; valid in OnRequestHeaders and
// later callbacks of the stream.
func GetRequestHeader(name string) (string, error) { return GetHeader(MapRequestHeaders, name) }

// GetRequestHeaders returns all request headers, pseudo-headers included.
func GetRequestHeaders() ([]Header, error) { return GetHeaders(MapRequestHeaders) }

// AddRequestHeader adds a request header; valid in OnRequestHeaders.
func AddRequestHeader(name, value string) error { return AddHeader(MapRequestHeaders, name, value) }

// ReplaceRequestHeader sets a request header; valid in OnRequestHeaders.
func ReplaceRequestHeader(name, value string) error {
	return ReplaceHeader(MapRequestHeaders, name, value)
}

// RemoveRequestHeader removes a request header; valid in OnRequestHeaders.
func RemoveRequestHeader(name string) error { return RemoveHeader(MapRequestHeaders, name) }

// GetResponseHeader returns a response header; valid in OnResponseHeaders
// and later callbacks of the stream.
func GetResponseHeader(name string) (string, error) { return GetHeader(MapResponseHeaders, name) }

// GetResponseHeaders returns all response headers, pseudo-headers included.
func GetResponseHeaders() ([]Header, error) { return GetHeaders(MapResponseHeaders) }

// AddResponseHeader adds a response header; valid in OnResponseHeaders.
func AddResponseHeader(name, value string) error {
	return AddHeader(MapResponseHeaders, name, value)
}

// ReplaceResponseHeader sets a response header; valid in OnResponseHeaders.
func ReplaceResponseHeader(name, value string) error {
	return ReplaceHeader(MapResponseHeaders, name, value)
}

// RemoveResponseHeader removes a response header; valid in
// OnResponseHeaders.
func RemoveResponseHeader(name string) error { return RemoveHeader(MapResponseHeaders, name) }

// SendLocalResponse answers the stream from the proxy with status, body and
// extra headers instead of (or in place of) the upstream response. The
// callback that calls it should return ActionPause.
func SendLocalResponse(status uint32, body []byte, headers []Header) error {
	return SendLocalResponseWithDetails(status, "wasm_local_response", body, headers)
}

// SendLocalResponseWithDetails is SendLocalResponse with the response code
// details the host records (Envoy's %RESPONSE_CODE_DETAILS%); details
// must not contain whitespace.
func SendLocalResponseWithDetails(status uint32, details string, body []byte, headers []Header) error {
	if current == nil {
		return errNoHost
	}
	// -1: not a gRPC response.
	return statusErr(current.sendLocalResponse(status, details, body, headers, -1))
}

// ContinueRequest resumes a request paused by returning ActionPause.
func ContinueRequest() error { return continueStream(StreamRequest) }

// ContinueResponse resumes a response paused by returning ActionPause.
func ContinueResponse() error { return continueStream(StreamResponse) }

func continueStream(st StreamType) error {
	if current == nil {
		return errNoHost
	}
	return statusErr(current.continueStream(st))
}

// GetProperty returns a host property such as {"request", "path"} or
// {"plugin_root_id"}. Values are in the host's own encoding (Envoy: raw
// bytes for strings, little-endian for integers).
func GetProperty(path ...string) ([]byte, error) {
	if current == nil {
		return nil, errNoHost
	}
	// The ABI takes the path segments joined by NUL bytes.
	v, st := current.getProperty(strings.Join(path, "\x00"))
	return v, statusErr(st)
}

// SetTickPeriod asks the host to call the current root context's OnTick
// every ms milliseconds; 0 stops the timer. Call it from a root context
// callback such as OnPluginStart.
func SetTickPeriod(ms uint32) error {
	if current == nil {
		return errNoHost
	}
	return statusErr(current.setTickPeriod(ms))
}

// CurrentTimeNanos returns the host's wall clock in nanoseconds since the
// Unix epoch. Hosts may freeze it for the duration of a callback.
func CurrentTimeNanos() (int64, error) {
	if current == nil {
		return 0, errNoHost
	}
	t, st := current.currentTimeNanos()
	return t, statusErr(st)
}
