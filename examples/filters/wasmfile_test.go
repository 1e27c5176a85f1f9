package filters_test

import (
	"bytes"
	"encoding/binary"
	"errors"
)

// wasmModule lists what a compiled module imports and exports, read from
// the binary's import (2) and export (7) sections.
type wasmModule struct {
	Imports []string // "module.name", functions only
	Exports []string
}

var errWasm = errors.New("malformed wasm binary")

func parseWasm(data []byte) (wasmModule, error) {
	var m wasmModule
	if !bytes.HasPrefix(data, []byte("\x00asm\x01\x00\x00\x00")) {
		return m, errWasm
	}
	r := &wasmReader{data: data[8:]}
	for len(r.data) > 0 && r.err == nil {
		id := r.byte()
		size := r.uleb()
		section := &wasmReader{data: r.bytes(int(size))}
		switch id {
		case 2:
			m.Imports = section.imports()
		case 7:
			m.Exports = section.exports()
		}
		if section.err != nil {
			return m, section.err
		}
	}
	return m, r.err
}

type wasmReader struct {
	data []byte
	err  error
}

func (r *wasmReader) byte() byte {
	if len(r.data) == 0 {
		r.err = errWasm
		return 0
	}
	b := r.data[0]
	r.data = r.data[1:]
	return b
}

func (r *wasmReader) uleb() uint64 {
	v, n := binary.Uvarint(r.data)
	if n <= 0 {
		r.err = errWasm
		r.data = nil
		return 0
	}
	r.data = r.data[n:]
	return v
}

func (r *wasmReader) bytes(n int) []byte {
	if n > len(r.data) {
		r.err = errWasm
		n = len(r.data)
	}
	b := r.data[:n]
	r.data = r.data[n:]
	return b
}

func (r *wasmReader) name() string { return string(r.bytes(int(r.uleb()))) }

func (r *wasmReader) imports() []string {
	var out []string
	for range r.uleb() {
		module, field := r.name(), r.name()
		switch kind := r.byte(); kind {
		case 0: // function: type index
			r.uleb()
			out = append(out, module+"."+field)
		case 1: // table: reftype + limits
			r.byte()
			r.limits()
		case 2: // memory
			r.limits()
		case 3: // global: valtype + mutability
			r.byte()
			r.byte()
		default:
			r.err = errWasm
		}
		if r.err != nil {
			return out
		}
	}
	return out
}

func (r *wasmReader) limits() {
	if r.byte()&1 == 1 {
		r.uleb()
	}
	r.uleb()
}

func (r *wasmReader) exports() []string {
	var out []string
	for range r.uleb() {
		out = append(out, r.name())
		r.byte()
		r.uleb()
		if r.err != nil {
			return out
		}
	}
	return out
}
