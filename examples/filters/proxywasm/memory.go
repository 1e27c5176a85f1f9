package proxywasm

import "unsafe"

// allocations holds every buffer handed to the host by
// proxy_on_memory_allocate, keyed by its address. The host writes into the
// buffer after the allocation call returns and only then tells us its
// address; until we take it back, this map is the buffer's only reference
// and keeps the garbage collector from reclaiming it. Go's heap does not
// move objects, so the address stays valid.
var allocations = map[uintptr][]byte{}

// allocate returns the address of a new buffer of size bytes and keeps it
// alive until takeAllocation.
func allocate(size uint32) uintptr {
	// A zero-size request still needs a distinct, non-zero address: zero
	// means failure to the host.
	buf := make([]byte, max(size, 1))
	addr := uintptr(unsafe.Pointer(&buf[0]))
	allocations[addr] = buf
	return addr
}

// takeAllocation returns the first size bytes of the buffer the host
// reported at addr and forgets every outstanding allocation: a host call
// returns at most one buffer, so any other allocation belongs to a call
// that failed after allocating and would otherwise leak.
func takeAllocation(addr uintptr, size uint32) ([]byte, error) {
	buf, ok := allocations[addr]
	clear(allocations)
	if size == 0 {
		return nil, nil
	}
	if !ok || int(size) > len(buf) {
		return nil, StatusInvalidMemoryAccess
	}
	return buf[:size:size], nil
}
