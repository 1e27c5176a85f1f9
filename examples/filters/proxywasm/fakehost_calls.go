//go:build !wasip1

package proxywasm

import "strings"

// The host interface, as the fake implements it. Each call acts on the
// stream or root context being called, as a real host does.

func (h *FakeHost) log(level LogLevel, msg string) Status {
	h.Logs = append(h.Logs, LogEntry{Level: level, Message: msg})
	return StatusOK
}

func (h *FakeHost) buffer(bt BufferType) ([]byte, Status) {
	switch bt {
	case BufferVMConfiguration:
		return h.vmConfig, StatusOK
	case BufferPluginConfiguration:
		return h.configs[h.activeRoot], StatusOK
	}
	if bt == BufferDownstreamData || bt == BufferUpstreamData {
		b, st := h.connBuffer(bt)
		if st != StatusOK {
			return nil, st
		}
		return *b, StatusOK
	}
	if h.active == nil {
		return nil, StatusNotFound
	}
	switch bt {
	case BufferRequestBody:
		return h.active.RequestBody, StatusOK
	case BufferResponseBody:
		return h.active.ResponseBody, StatusOK
	}
	return nil, StatusBadArgument
}

func (h *FakeHost) getBuffer(bt BufferType, start, maxSize int) ([]byte, Status) {
	data, st := h.buffer(bt)
	if st != StatusOK {
		return nil, st
	}
	if start < 0 || maxSize < 0 || start > len(data) {
		return nil, StatusBadArgument
	}
	end := min(start+maxSize, len(data))
	return append([]byte(nil), data[start:end]...), StatusOK
}

func (h *FakeHost) headerMap(mt MapType) (*[]Header, Status) {
	if h.active == nil {
		return nil, StatusNotFound
	}
	switch mt {
	case MapRequestHeaders:
		return &h.active.RequestHeaders, StatusOK
	case MapResponseHeaders:
		return &h.active.ResponseHeaders, StatusOK
	}
	return nil, StatusBadArgument
}

func (h *FakeHost) getMapValue(mt MapType, key string) (string, Status) {
	m, st := h.headerMap(mt)
	if st != StatusOK {
		return "", st
	}
	if v, ok := HeaderValue(*m, key); ok {
		return v, StatusOK
	}
	return "", StatusNotFound
}

func (h *FakeHost) getMapPairs(mt MapType) ([]Header, Status) {
	m, st := h.headerMap(mt)
	if st != StatusOK {
		return nil, st
	}
	return append([]Header(nil), *m...), StatusOK
}

func (h *FakeHost) addMapValue(mt MapType, key, value string) Status {
	m, st := h.headerMap(mt)
	if st == StatusOK {
		*m = append(*m, Header{Name: key, Value: value})
	}
	return st
}

func (h *FakeHost) replaceMapValue(mt MapType, key, value string) Status {
	if st := h.removeMapValue(mt, key); st != StatusOK {
		return st
	}
	return h.addMapValue(mt, key, value)
}

func (h *FakeHost) removeMapValue(mt MapType, key string) Status {
	m, st := h.headerMap(mt)
	if st != StatusOK {
		return st
	}
	kept := (*m)[:0]
	for _, hd := range *m {
		if hd.Name != key {
			kept = append(kept, hd)
		}
	}
	*m = kept
	return StatusOK
}

func (h *FakeHost) sendLocalResponse(code uint32, details string, body []byte, headers []Header, _ int32) Status {
	if h.active == nil {
		return StatusNotFound
	}
	if strings.ContainsAny(details, " \t\r\n") {
		return StatusBadArgument
	}
	h.active.LocalResponse = &LocalResponse{
		Status:  code,
		Details: details,
		Body:    append([]byte(nil), body...),
		Headers: append([]Header(nil), headers...),
	}
	return StatusOK
}

func (h *FakeHost) getProperty(path string) ([]byte, Status) {
	v, ok := h.Properties[strings.ReplaceAll(path, "\x00", ".")]
	if !ok {
		return nil, StatusNotFound
	}
	return v, StatusOK
}

func (h *FakeHost) setTickPeriod(ms uint32) Status {
	h.TickPeriod = ms
	return StatusOK
}

func (h *FakeHost) currentTimeNanos() (int64, Status) { return h.Now, StatusOK }

func (h *FakeHost) continueStream(st StreamType) Status {
	if h.active == nil {
		return StatusNotFound
	}
	h.active.Continued = append(h.active.Continued, st)
	return StatusOK
}
