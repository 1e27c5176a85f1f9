//go:build wasip1

package proxywasm

import "unsafe"

// Host functions of the proxy-wasm ABI v0.2.1. Addresses and sizes are
// 32-bit in wasm linear memory; results come back through the pointer
// arguments.

//go:wasmimport env proxy_log
func proxyLog(level uint32, msg *byte, msgSize uint32) uint32

//go:wasmimport env proxy_get_buffer_bytes
func proxyGetBufferBytes(bt, start, maxSize uint32, retData, retSize *uint32) uint32

//go:wasmimport env proxy_set_buffer_bytes
func proxySetBufferBytes(bt, start, length uint32, data *byte, size uint32) uint32

//go:wasmimport env proxy_get_header_map_value
func proxyGetHeaderMapValue(mt uint32, key *byte, keySize uint32, retData, retSize *uint32) uint32

//go:wasmimport env proxy_get_header_map_pairs
func proxyGetHeaderMapPairs(mt uint32, retData, retSize *uint32) uint32

//go:wasmimport env proxy_add_header_map_value
func proxyAddHeaderMapValue(mt uint32, key *byte, keySize uint32, value *byte, valueSize uint32) uint32

//go:wasmimport env proxy_replace_header_map_value
func proxyReplaceHeaderMapValue(mt uint32, key *byte, keySize uint32, value *byte, valueSize uint32) uint32

//go:wasmimport env proxy_remove_header_map_value
func proxyRemoveHeaderMapValue(mt uint32, key *byte, keySize uint32) uint32

//go:wasmimport env proxy_send_local_response
func proxySendLocalResponse(code uint32, details *byte, detailsSize uint32, body *byte, bodySize uint32, headers *byte, headersSize uint32, grpcStatus int32) uint32

//go:wasmimport env proxy_get_property
func proxyGetProperty(path *byte, pathSize uint32, retData, retSize *uint32) uint32

//go:wasmimport env proxy_set_tick_period_milliseconds
func proxySetTickPeriodMilliseconds(ms uint32) uint32

//go:wasmimport env proxy_get_current_time_nanoseconds
func proxyGetCurrentTimeNanoseconds(ret *uint64) uint32

//go:wasmimport env proxy_continue_stream
func proxyContinueStream(st uint32) uint32

func init() { current = abiHost{} }

// abiHost calls the proxy through the ABI imports.
type abiHost struct{}

func strPtr(s string) *byte { return unsafe.StringData(s) }

func bytesPtr(b []byte) *byte {
	if len(b) == 0 {
		return nil
	}
	return &b[0]
}

// returned collects the buffer a host call wrote through
// proxy_on_memory_allocate.
func returned(st uint32, addr, size uint32) ([]byte, Status) {
	if Status(st) != StatusOK {
		clear(allocations)
		return nil, Status(st)
	}
	data, err := takeAllocation(uintptr(addr), size)
	if err != nil {
		return nil, StatusInvalidMemoryAccess
	}
	return data, StatusOK
}

func (abiHost) log(level LogLevel, msg string) Status {
	return Status(proxyLog(uint32(level), strPtr(msg), uint32(len(msg))))
}

func (abiHost) getBuffer(bt BufferType, start, maxSize int) ([]byte, Status) {
	var addr, size uint32
	st := proxyGetBufferBytes(uint32(bt), uint32(start), uint32(maxSize), &addr, &size)
	return returned(st, addr, size)
}

func (abiHost) setBuffer(bt BufferType, start, length int, data []byte) Status {
	return Status(proxySetBufferBytes(uint32(bt), uint32(start), uint32(length), bytesPtr(data), uint32(len(data))))
}

func (abiHost) getMapValue(mt MapType, key string) (string, Status) {
	var addr, size uint32
	st := proxyGetHeaderMapValue(uint32(mt), strPtr(key), uint32(len(key)), &addr, &size)
	data, s := returned(st, addr, size)
	return string(data), s
}

func (abiHost) getMapPairs(mt MapType) ([]Header, Status) {
	var addr, size uint32
	data, s := returned(proxyGetHeaderMapPairs(uint32(mt), &addr, &size), addr, size)
	if s != StatusOK {
		return nil, s
	}
	hs, err := decodePairs(data)
	if err != nil {
		return nil, StatusSerializationFailure
	}
	return hs, StatusOK
}

func (abiHost) addMapValue(mt MapType, key, value string) Status {
	return Status(proxyAddHeaderMapValue(uint32(mt), strPtr(key), uint32(len(key)), strPtr(value), uint32(len(value))))
}

func (abiHost) replaceMapValue(mt MapType, key, value string) Status {
	return Status(proxyReplaceHeaderMapValue(uint32(mt), strPtr(key), uint32(len(key)), strPtr(value), uint32(len(value))))
}

func (abiHost) removeMapValue(mt MapType, key string) Status {
	return Status(proxyRemoveHeaderMapValue(uint32(mt), strPtr(key), uint32(len(key))))
}

func (abiHost) sendLocalResponse(code uint32, details string, body []byte, headers []Header, grpcStatus int32) Status {
	hs := encodePairs(headers)
	return Status(proxySendLocalResponse(code, strPtr(details), uint32(len(details)),
		bytesPtr(body), uint32(len(body)), bytesPtr(hs), uint32(len(hs)), grpcStatus))
}

func (abiHost) getProperty(path string) ([]byte, Status) {
	var addr, size uint32
	st := proxyGetProperty(strPtr(path), uint32(len(path)), &addr, &size)
	return returned(st, addr, size)
}

func (abiHost) setTickPeriod(ms uint32) Status {
	return Status(proxySetTickPeriodMilliseconds(ms))
}

func (abiHost) currentTimeNanos() (int64, Status) {
	var t uint64
	st := Status(proxyGetCurrentTimeNanoseconds(&t))
	return int64(t), st
}

func (abiHost) continueStream(st StreamType) Status {
	return Status(proxyContinueStream(uint32(st)))
}
