//go:build !wasip1

package proxywasm

// FakeConn is one TCP connection of a FakeHost. Downstream and Upstream
// hold the chunk last delivered in each direction, as the filter left it:
// what the proxy would pass on.
type FakeConn struct {
	ID         uint32
	Downstream []byte
	Upstream   []byte

	host *FakeHost
}

// NewConnection creates a connection under root context rootID and
// delivers proxy_on_new_connection.
func (h *FakeHost) NewConnection(rootID uint32) (*FakeConn, Action) {
	h.nextID++
	c := &FakeConn{ID: h.nextID, host: h}
	h.activeRoot, h.active, h.activeConn = rootID, nil, c
	onContextCreate(c.ID, rootID)
	return c, onNewConnection(c.ID)
}

// SendDownstream delivers a chunk from the client.
func (c *FakeConn) SendDownstream(chunk []byte, endOfStream bool) Action {
	c.Downstream = append([]byte(nil), chunk...)
	c.host.activeConn = c
	return onDownstreamData(c.ID, len(chunk), endOfStream)
}

// SendUpstream delivers a chunk from the upstream.
func (c *FakeConn) SendUpstream(chunk []byte, endOfStream bool) Action {
	c.Upstream = append([]byte(nil), chunk...)
	c.host.activeConn = c
	return onUpstreamData(c.ID, len(chunk), endOfStream)
}

// Close closes both sides, the client first, and deletes the context.
func (c *FakeConn) Close() {
	c.host.activeConn = c
	onDownstreamClose(c.ID, PeerRemote)
	onUpstreamClose(c.ID, PeerLocal)
	if onDone(c.ID) {
		onDelete(c.ID)
	}
	c.host.activeConn = nil
}

// connBuffer is the data buffer of the active connection.
func (h *FakeHost) connBuffer(bt BufferType) (*[]byte, Status) {
	if h.activeConn == nil {
		return nil, StatusNotFound
	}
	if bt == BufferDownstreamData {
		return &h.activeConn.Downstream, StatusOK
	}
	return &h.activeConn.Upstream, StatusOK
}

func (h *FakeHost) setBuffer(bt BufferType, start, length int, data []byte) Status {
	if bt != BufferDownstreamData && bt != BufferUpstreamData {
		return StatusBadArgument
	}
	b, st := h.connBuffer(bt)
	if st != StatusOK {
		return st
	}
	if start < 0 || length < 0 || start > len(*b) {
		return StatusBadArgument
	}
	end := min(start+length, len(*b))
	out := append(append(append([]byte(nil), (*b)[:start]...), data...), (*b)[end:]...)
	*b = out
	return StatusOK
}
