package proxywasm

import (
	"encoding/binary"
	"errors"
)

// errBadPairs reports a serialized header map that does not match its own
// length prefixes.
var errBadPairs = errors.New("proxy-wasm: malformed serialized header map")

// encodePairs serializes headers the way the ABI expects for
// proxy_send_local_response and proxy_set_header_map_pairs: a count, then a
// (name length, value length) pair per header, then each name and value
// followed by a NUL byte. All integers are 32-bit little-endian.
func encodePairs(headers []Header) []byte {
	if len(headers) == 0 {
		return nil
	}
	size := 4
	for _, h := range headers {
		size += 8 + len(h.Name) + 1 + len(h.Value) + 1
	}
	buf := make([]byte, 4, size)
	binary.LittleEndian.PutUint32(buf, uint32(len(headers)))
	for _, h := range headers {
		buf = binary.LittleEndian.AppendUint32(buf, uint32(len(h.Name)))
		buf = binary.LittleEndian.AppendUint32(buf, uint32(len(h.Value)))
	}
	for _, h := range headers {
		buf = append(buf, h.Name...)
		buf = append(buf, 0)
		buf = append(buf, h.Value...)
		buf = append(buf, 0)
	}
	return buf
}

// decodePairs parses a serialized header map. An empty input, or a single
// NUL byte, is an empty map.
func decodePairs(data []byte) ([]Header, error) {
	if len(data) <= 1 {
		return nil, nil
	}
	if len(data) < 4 {
		return nil, errBadPairs
	}
	n := int(binary.LittleEndian.Uint32(data))
	sizes := data[4:]
	// Each header needs at least 8 bytes of sizes and 2 NUL bytes; checking
	// this first keeps a corrupt count from driving a huge allocation.
	if n > len(sizes)/10 {
		return nil, errBadPairs
	}
	body := sizes[8*n:]
	headers := make([]Header, 0, n)
	for i := range n {
		nameLen := int(binary.LittleEndian.Uint32(sizes[8*i:]))
		valueLen := int(binary.LittleEndian.Uint32(sizes[8*i+4:]))
		if nameLen < 0 || valueLen < 0 || nameLen+valueLen+2 > len(body) {
			return nil, errBadPairs
		}
		name := string(body[:nameLen])
		body = body[nameLen+1:]
		value := string(body[:valueLen])
		body = body[valueLen+1:]
		headers = append(headers, Header{Name: name, Value: value})
	}
	return headers, nil
}
