package proxywasm

// RootContext receives plugin-wide events. The host creates one per plugin
// (an Envoy filter configuration) in each VM, and the root context creates
// the HTTPContext of each stream. Embed DefaultRootContext to implement only
// what a filter needs.
type RootContext interface {
	// OnVMStart is called once per VM with the VM configuration
	// (vm_config.configuration in Envoy). Returning false fails the VM.
	OnVMStart(vmConfig []byte) bool
	// OnPluginStart is called with the plugin configuration (the
	// configuration field in Envoy), before any stream and again when the
	// host reconfigures the plugin. Returning false rejects the
	// configuration.
	OnPluginStart(pluginConfig []byte) bool
	// OnTick is called every period set with SetTickPeriod.
	OnTick()
	// NewHTTPContext returns the context for a new HTTP stream, or nil
	// to let the stream pass untouched.
	NewHTTPContext(contextID uint32) HTTPContext
}

// HTTPContext receives the events of one HTTP stream. Embed
// DefaultHTTPContext to implement only what a filter needs.
type HTTPContext interface {
	// OnRequestHeaders is called when the request headers arrive;
	// numHeaders is their count.
	OnRequestHeaders(numHeaders int, endOfStream bool) Action
	// OnRequestBody is called for each request body chunk; bodySize is
	// the size buffered so far.
	OnRequestBody(bodySize int, endOfStream bool) Action
	// OnResponseHeaders is called when the response headers arrive.
	OnResponseHeaders(numHeaders int, endOfStream bool) Action
	// OnResponseBody is called for each response body chunk.
	OnResponseBody(bodySize int, endOfStream bool) Action
	// OnLog is called once the stream is complete; request and response
	// headers can still be read.
	OnLog()
}

// DefaultRootContext accepts any configuration and lets streams pass.
type DefaultRootContext struct{}

// OnVMStart accepts the VM configuration.
func (DefaultRootContext) OnVMStart([]byte) bool { return true }

// OnPluginStart accepts the plugin configuration.
func (DefaultRootContext) OnPluginStart([]byte) bool { return true }

// OnTick does nothing.
func (DefaultRootContext) OnTick() {}

// NewHTTPContext returns nil: streams pass untouched.
func (DefaultRootContext) NewHTTPContext(uint32) HTTPContext { return nil }

// DefaultHTTPContext continues every stream unchanged.
type DefaultHTTPContext struct{}

// OnRequestHeaders continues.
func (DefaultHTTPContext) OnRequestHeaders(int, bool) Action { return ActionContinue }

// OnRequestBody continues.
func (DefaultHTTPContext) OnRequestBody(int, bool) Action { return ActionContinue }

// OnResponseHeaders continues.
func (DefaultHTTPContext) OnResponseHeaders(int, bool) Action { return ActionContinue }

// OnResponseBody continues.
func (DefaultHTTPContext) OnResponseBody(int, bool) Action { return ActionContinue }

// OnLog does nothing.
func (DefaultHTTPContext) OnLog() {}

// newRootContext is the filter's factory; the host calls into the VM from a
// single thread, so the dispatch state below needs no locking.
var newRootContext func(contextID uint32) RootContext

var (
	roots   = map[uint32]RootContext{}
	streams = map[uint32]HTTPContext{}
)

// SetNewRootContext registers the factory of the filter's root contexts.
// Call it from init or a package variable initializer: the host creates
// the first root context right after the module is loaded.
func SetNewRootContext(factory func(contextID uint32) RootContext) {
	newRootContext = factory
}

// onContextCreate creates a root context when parentID is 0, and a stream
// context of the root parentID otherwise.
func onContextCreate(contextID, parentID uint32) {
	if parentID == 0 {
		if newRootContext == nil {
			roots[contextID] = DefaultRootContext{}
			return
		}
		roots[contextID] = newRootContext(contextID)
		return
	}
	root, ok := roots[parentID]
	if !ok {
		return
	}
	if tr, ok := root.(TCPRootContext); ok {
		if c := tr.NewTCPContext(contextID); c != nil {
			conns[contextID] = c
			return
		}
	}
	if ctx := root.NewHTTPContext(contextID); ctx != nil {
		streams[contextID] = ctx
	}
}

func onVMStart(rootID uint32, size int) bool {
	root, ok := roots[rootID]
	if !ok {
		return false
	}
	config, err := bufferOrNil(BufferVMConfiguration, size)
	if err != nil {
		return false
	}
	return root.OnVMStart(config)
}

func onConfigure(rootID uint32, size int) bool {
	root, ok := roots[rootID]
	if !ok {
		return false
	}
	config, err := bufferOrNil(BufferPluginConfiguration, size)
	if err != nil {
		return false
	}
	return root.OnPluginStart(config)
}

// bufferOrNil reads a whole configuration buffer; size 0 means there is
// none, which is not an error.
func bufferOrNil(bt BufferType, size int) ([]byte, error) {
	if size == 0 {
		return nil, nil
	}
	return getBuffer(bt, 0, size)
}

func onTick(rootID uint32) {
	if root, ok := roots[rootID]; ok {
		root.OnTick()
	}
}

func onRequestHeaders(contextID uint32, numHeaders int, endOfStream bool) Action {
	if ctx, ok := streams[contextID]; ok {
		return ctx.OnRequestHeaders(numHeaders, endOfStream)
	}
	return ActionContinue
}

func onRequestBody(contextID uint32, bodySize int, endOfStream bool) Action {
	if ctx, ok := streams[contextID]; ok {
		return ctx.OnRequestBody(bodySize, endOfStream)
	}
	return ActionContinue
}

func onResponseHeaders(contextID uint32, numHeaders int, endOfStream bool) Action {
	if ctx, ok := streams[contextID]; ok {
		return ctx.OnResponseHeaders(numHeaders, endOfStream)
	}
	return ActionContinue
}

func onResponseBody(contextID uint32, bodySize int, endOfStream bool) Action {
	if ctx, ok := streams[contextID]; ok {
		return ctx.OnResponseBody(bodySize, endOfStream)
	}
	return ActionContinue
}

func onLog(contextID uint32) {
	if ctx, ok := streams[contextID]; ok {
		ctx.OnLog()
	}
}

// onDone always lets the host finish the context: nothing here outlives a
// callback.
func onDone(uint32) bool { return true }

func onDelete(contextID uint32) {
	delete(streams, contextID)
	delete(conns, contextID)
	delete(roots, contextID)
}
