//go:build !wasip1

package proxywasm

import "errors"

// LogEntry is one message a filter logged through a FakeHost.
type LogEntry struct {
	Level   LogLevel
	Message string
}

// LocalResponse is a response a filter sent with SendLocalResponse.
type LocalResponse struct {
	Status  uint32
	Details string
	Body    []byte
	Headers []Header
}

// FakeHost plays the proxy for unit tests outside wasip1: it drives the
// filter's registered root context through the same dispatch code the ABI
// exports use, and records what the filter does. Only one FakeHost is
// active at a time (the VM state is global, as in a real VM), so tests
// using it must not run in parallel.
type FakeHost struct {
	// Now is returned by CurrentTimeNanos.
	Now int64
	// Properties answers GetProperty, keyed by the path segments joined
	// with ".", e.g. "plugin_root_id".
	Properties map[string][]byte
	// TickPeriod is the last value passed to SetTickPeriod.
	TickPeriod uint32
	// Logs holds every message logged, in order.
	Logs []LogEntry

	nextID     uint32
	vmConfig   []byte
	configs    map[uint32][]byte
	active     *FakeStream
	activeConn *FakeConn
	activeRoot uint32
}

// FakeStream is one HTTP stream of a FakeHost.
type FakeStream struct {
	ID              uint32
	RequestHeaders  []Header
	ResponseHeaders []Header
	RequestBody     []byte
	ResponseBody    []byte
	// LocalResponse is set once the filter calls SendLocalResponse.
	LocalResponse *LocalResponse
	// Continued records ContinueRequest/ContinueResponse calls.
	Continued []StreamType

	host *FakeHost
}

// NewFakeHost resets the VM state (contexts, allocations) and makes the
// new fake the host the helpers talk to.
func NewFakeHost() *FakeHost {
	clear(roots)
	clear(streams)
	clear(conns)
	clear(allocations)
	h := &FakeHost{Properties: map[string][]byte{}, configs: map[uint32][]byte{}}
	current = h
	return h
}

// errRejected reports a configuration the filter refused.
var errRejected = errors.New("proxy-wasm: configuration rejected by the filter")

// StartPlugin creates a root context and delivers the VM and plugin
// configurations, as the host does when it loads a plugin. It returns the
// root context id for NewStream and Tick.
func (h *FakeHost) StartPlugin(vmConfig, pluginConfig []byte) (uint32, error) {
	h.nextID++
	id := h.nextID
	h.vmConfig = vmConfig
	h.configs[id] = pluginConfig
	onContextCreate(id, 0)
	h.activeRoot, h.active = id, nil
	if !onVMStart(id, len(vmConfig)) {
		return id, errRejected
	}
	if !onConfigure(id, len(pluginConfig)) {
		return id, errRejected
	}
	return id, nil
}

// Tick calls the OnTick of root context rootID.
func (h *FakeHost) Tick(rootID uint32) {
	h.activeRoot, h.active = rootID, nil
	onTick(rootID)
}

// NewStream creates an HTTP stream under root context rootID.
func (h *FakeHost) NewStream(rootID uint32) *FakeStream {
	h.nextID++
	s := &FakeStream{ID: h.nextID, host: h}
	h.activeRoot, h.active = rootID, s
	onContextCreate(s.ID, rootID)
	return s
}

// SendRequestHeaders delivers request headers to the filter.
func (s *FakeStream) SendRequestHeaders(headers []Header, endOfStream bool) Action {
	s.RequestHeaders = append([]Header(nil), headers...)
	s.host.active = s
	return onRequestHeaders(s.ID, len(headers), endOfStream)
}

// SendRequestBody appends a request body chunk and delivers it.
func (s *FakeStream) SendRequestBody(chunk []byte, endOfStream bool) Action {
	s.RequestBody = append(s.RequestBody, chunk...)
	s.host.active = s
	return onRequestBody(s.ID, len(s.RequestBody), endOfStream)
}

// SendResponseHeaders delivers response headers to the filter.
func (s *FakeStream) SendResponseHeaders(headers []Header, endOfStream bool) Action {
	s.ResponseHeaders = append([]Header(nil), headers...)
	s.host.active = s
	return onResponseHeaders(s.ID, len(headers), endOfStream)
}

// SendResponseBody appends a response body chunk and delivers it.
func (s *FakeStream) SendResponseBody(chunk []byte, endOfStream bool) Action {
	s.ResponseBody = append(s.ResponseBody, chunk...)
	s.host.active = s
	return onResponseBody(s.ID, len(s.ResponseBody), endOfStream)
}

// Complete ends the stream: done, log, delete, in the host's order.
func (s *FakeStream) Complete() {
	s.host.active = s
	if onDone(s.ID) {
		onLog(s.ID)
		onDelete(s.ID)
	}
	s.host.active = nil
}
