//go:build wasip1

package proxywasm

// Callbacks the host calls. Booleans travel as i32 (0 or 1).

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// proxyABIVersion is never called: the host looks for its name to learn
// which ABI the module speaks.
//
//go:wasmexport proxy_abi_version_0_2_1
func proxyABIVersion() {}

//go:wasmexport proxy_on_memory_allocate
func proxyOnMemoryAllocate(size uint32) uint32 { return uint32(allocate(size)) }

//go:wasmexport proxy_on_context_create
func proxyOnContextCreate(contextID, parentID uint32) { onContextCreate(contextID, parentID) }

//go:wasmexport proxy_on_vm_start
func proxyOnVMStart(rootID, size uint32) uint32 { return b2u(onVMStart(rootID, int(size))) }

//go:wasmexport proxy_on_configure
func proxyOnConfigure(rootID, size uint32) uint32 { return b2u(onConfigure(rootID, int(size))) }

//go:wasmexport proxy_on_tick
func proxyOnTick(rootID uint32) { onTick(rootID) }

//go:wasmexport proxy_on_request_headers
func proxyOnRequestHeaders(contextID, numHeaders, endOfStream uint32) uint32 {
	return uint32(onRequestHeaders(contextID, int(numHeaders), endOfStream != 0))
}

//go:wasmexport proxy_on_request_body
func proxyOnRequestBody(contextID, bodySize, endOfStream uint32) uint32 {
	return uint32(onRequestBody(contextID, int(bodySize), endOfStream != 0))
}

//go:wasmexport proxy_on_response_headers
func proxyOnResponseHeaders(contextID, numHeaders, endOfStream uint32) uint32 {
	return uint32(onResponseHeaders(contextID, int(numHeaders), endOfStream != 0))
}

//go:wasmexport proxy_on_response_body
func proxyOnResponseBody(contextID, bodySize, endOfStream uint32) uint32 {
	return uint32(onResponseBody(contextID, int(bodySize), endOfStream != 0))
}

//go:wasmexport proxy_on_new_connection
func proxyOnNewConnection(contextID uint32) uint32 { return uint32(onNewConnection(contextID)) }

//go:wasmexport proxy_on_downstream_data
func proxyOnDownstreamData(contextID, dataSize, endOfStream uint32) uint32 {
	return uint32(onDownstreamData(contextID, int(dataSize), endOfStream != 0))
}

//go:wasmexport proxy_on_downstream_connection_close
func proxyOnDownstreamConnectionClose(contextID, peer uint32) {
	onDownstreamClose(contextID, PeerType(peer))
}

//go:wasmexport proxy_on_upstream_data
func proxyOnUpstreamData(contextID, dataSize, endOfStream uint32) uint32 {
	return uint32(onUpstreamData(contextID, int(dataSize), endOfStream != 0))
}

//go:wasmexport proxy_on_upstream_connection_close
func proxyOnUpstreamConnectionClose(contextID, peer uint32) {
	onUpstreamClose(contextID, PeerType(peer))
}

//go:wasmexport proxy_on_log
func proxyOnLog(contextID uint32) { onLog(contextID) }

//go:wasmexport proxy_on_done
func proxyOnDone(contextID uint32) uint32 { return b2u(onDone(contextID)) }

//go:wasmexport proxy_on_delete
func proxyOnDelete(contextID uint32) { onDelete(contextID) }
