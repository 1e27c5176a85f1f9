package fetcher

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"
)

// This file reads a module's section framing and its export section by hand.
// Both are small and have not changed since Wasm 1.0: later proposals add
// sections, types and instructions, never a new framing. No well-kept Go
// library reads just that; wazero's decoder (the compiler the preflight uses)
// refuses the whole module on any feature it lacks, which is exactly when the
// preflight needs the exports and a verdict on whether the bytes are a module
// at all. Function bodies and types are not decoded here: that is the
// compiler's job, and Envoy's.

// Section ids of the binary format (Wasm 2.0 §5.5.2).
const (
	sectionCustom = 0
	sectionExport = 7
)

// Export kinds; only functions matter to the preflight.
const exportFunc = 0

// wasmModule is what the preflight reads from a module without compiling it.
type wasmModule struct {
	funcExports []string // names of exported functions
}

// parseModule walks the sections of b (which starts with wasmHeader),
// checking that each lies within the module and that no non-custom section
// repeats, and decodes the export section.
func parseModule(b []byte) (wasmModule, error) {
	var m wasmModule
	seen := map[byte]bool{}
	r := wasmReader{b: b, off: len(wasmHeader)}
	for r.off < len(b) {
		start := r.off
		id, _ := r.byte() // r.off < len(b)
		payload, err := r.bytes()
		if err == nil && id != sectionCustom && seen[id] {
			err = errors.New("repeated")
		}
		if err == nil {
			err = m.readSection(id, payload)
		}
		if err != nil {
			return m, fmt.Errorf("%s at offset %#x: %w", sectionName(id), start, err)
		}
		seen[id] = true
	}
	return m, nil
}

func (m *wasmModule) readSection(id byte, payload []byte) error {
	switch id {
	case sectionCustom:
		// A custom section starts with its name; the rest is opaque.
		r := wasmReader{b: payload}
		_, err := r.name()
		return err
	case sectionExport:
		names, err := readFuncExports(payload)
		m.funcExports = names
		return err
	}
	// Other sections, including ids of proposals the preflight does not
	// know, are left to the compiler.
	return nil
}

// readFuncExports decodes an export section: a vector of (name, kind, index).
func readFuncExports(payload []byte) ([]string, error) {
	r := wasmReader{b: payload}
	n, err := r.u32()
	if err != nil {
		return nil, fmt.Errorf("export count: %w", err)
	}
	var names []string
	for i := range n {
		name, err := r.name()
		if err != nil {
			return nil, fmt.Errorf("export %d: %w", i, err)
		}
		kind, err := r.byte()
		if err == nil {
			_, err = r.u32()
		}
		if err != nil {
			return nil, fmt.Errorf("export %d (%q): %w", i, name, err)
		}
		if kind == exportFunc {
			names = append(names, name)
		}
	}
	if r.off != len(payload) {
		return nil, fmt.Errorf("%d bytes after the last export", len(payload)-r.off)
	}
	return names, nil
}

// wasmReader reads the binary format's primitives, failing on truncation.
type wasmReader struct {
	b   []byte
	off int
}

func (r *wasmReader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, fmt.Errorf("truncated at offset %#x", r.off)
	}
	r.off++
	return r.b[r.off-1], nil
}

// u32 reads an unsigned LEB128 of at most 5 bytes; Go's uvarint is the same
// encoding.
func (r *wasmReader) u32() (uint32, error) {
	v, n := binary.Uvarint(r.b[r.off:])
	switch {
	case n == 0:
		return 0, fmt.Errorf("truncated at offset %#x", r.off)
	case n < 0 || n > 5 || v > math.MaxUint32:
		return 0, fmt.Errorf("integer too large at offset %#x", r.off)
	}
	r.off += n
	return uint32(v), nil
}

// bytes reads a length-prefixed byte string.
func (r *wasmReader) bytes() ([]byte, error) {
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	if uint64(n) > uint64(len(r.b)-r.off) {
		return nil, fmt.Errorf("truncated: %d bytes declared at offset %#x, %d left", n, r.off, len(r.b)-r.off)
	}
	r.off += int(n)
	return r.b[r.off-int(n) : r.off], nil
}

func (r *wasmReader) name() (string, error) {
	b, err := r.bytes()
	if err != nil {
		return "", fmt.Errorf("name: %w", err)
	}
	if !utf8.Valid(b) {
		return "", fmt.Errorf("name %q is not UTF-8", b)
	}
	return string(b), nil
}

// sectionNames are the standard sections by id; 13 is exception handling's
// tag section.
var sectionNames = []string{"custom", "type", "import", "function", "table", "memory",
	"global", "export", "start", "element", "code", "data", "data count", "tag"}

func sectionName(id byte) string {
	if int(id) < len(sectionNames) {
		return fmt.Sprintf("%s section (id %d)", sectionNames[id], id)
	}
	return fmt.Sprintf("section id %d", id)
}
