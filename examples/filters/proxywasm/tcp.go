package proxywasm

// TCPRootContext is a root context that also makes contexts for TCP
// connections, which a network filter (envoy.filters.network.wasm) gets.
// The host does not say whether a new context is a connection or an HTTP
// stream: a root that implements it is asked first, and a nil TCPContext
// falls back to NewHTTPContext.
type TCPRootContext interface {
	RootContext
	// NewTCPContext returns the context for a new connection, or nil.
	NewTCPContext(contextID uint32) TCPContext
}

// TCPContext receives the events of one proxied TCP connection. Inside
// OnDownstreamData and OnUpstreamData the data buffer holds the chunk being
// passed on (dataSize bytes), which the filter may read and change. Embed
// DefaultTCPContext to implement only what a filter needs.
type TCPContext interface {
	// OnNewConnection is called when a client connects.
	OnNewConnection() Action
	// OnDownstreamData is called for data from the client to the upstream.
	OnDownstreamData(dataSize int, endOfStream bool) Action
	// OnDownstreamClose is called when the client side closes.
	OnDownstreamClose(peer PeerType)
	// OnUpstreamData is called for data from the upstream to the client.
	OnUpstreamData(dataSize int, endOfStream bool) Action
	// OnUpstreamClose is called when the upstream side closes.
	OnUpstreamClose(peer PeerType)
}

// DefaultTCPContext passes every connection through unchanged.
type DefaultTCPContext struct{}

// OnNewConnection continues.
func (DefaultTCPContext) OnNewConnection() Action { return ActionContinue }

// OnDownstreamData continues.
func (DefaultTCPContext) OnDownstreamData(int, bool) Action { return ActionContinue }

// OnDownstreamClose does nothing.
func (DefaultTCPContext) OnDownstreamClose(PeerType) {}

// OnUpstreamData continues.
func (DefaultTCPContext) OnUpstreamData(int, bool) Action { return ActionContinue }

// OnUpstreamClose does nothing.
func (DefaultTCPContext) OnUpstreamClose(PeerType) {}

var conns = map[uint32]TCPContext{}

func onNewConnection(contextID uint32) Action {
	if c, ok := conns[contextID]; ok {
		return c.OnNewConnection()
	}
	return ActionContinue
}

func onDownstreamData(contextID uint32, dataSize int, endOfStream bool) Action {
	if c, ok := conns[contextID]; ok {
		return c.OnDownstreamData(dataSize, endOfStream)
	}
	return ActionContinue
}

func onDownstreamClose(contextID uint32, peer PeerType) {
	if c, ok := conns[contextID]; ok {
		c.OnDownstreamClose(peer)
	}
}

func onUpstreamData(contextID uint32, dataSize int, endOfStream bool) Action {
	if c, ok := conns[contextID]; ok {
		return c.OnUpstreamData(dataSize, endOfStream)
	}
	return ActionContinue
}

func onUpstreamClose(contextID uint32, peer PeerType) {
	if c, ok := conns[contextID]; ok {
		c.OnUpstreamClose(peer)
	}
}

// GetDownstreamData returns up to maxSize bytes, from start, of the data
// chunk going from the client to the upstream.
func GetDownstreamData(start, maxSize int) ([]byte, error) {
	return getBuffer(BufferDownstreamData, start, maxSize)
}

// GetUpstreamData returns up to maxSize bytes, from start, of the data
// chunk going from the upstream to the client.
func GetUpstreamData(start, maxSize int) ([]byte, error) {
	return getBuffer(BufferUpstreamData, start, maxSize)
}

// PrependDownstreamData puts data before the chunk going upstream.
func PrependDownstreamData(data []byte) error { return setBuffer(BufferDownstreamData, 0, 0, data) }

// PrependUpstreamData puts data before the chunk going to the client.
func PrependUpstreamData(data []byte) error { return setBuffer(BufferUpstreamData, 0, 0, data) }

// setBuffer replaces length bytes from start of a buffer with data (length
// 0 inserts).
func setBuffer(bt BufferType, start, length int, data []byte) error {
	if current == nil {
		return errNoHost
	}
	return statusErr(current.setBuffer(bt, start, length, data))
}
