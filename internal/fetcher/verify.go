package fetcher

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// wasmHeader is the binary magic "\0asm" followed by format version 1.
var wasmHeader = []byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00}

// Export names a proxy-wasm host looks for.
const (
	abiVersionPrefix = "proxy_abi_version_"
	allocatorProxy   = "proxy_on_memory_allocate"
	allocatorMalloc  = "malloc"
)

// preflightFeatures is every feature wazero v1.12 can validate. V8 in Envoy
// runs more (legacy exception handling, multi-memory, relaxed SIMD,
// memory64, GC...); what wazero lacks becomes a warning, not a refusal.
const preflightFeatures = api.CoreFeaturesV2 |
	experimental.CoreFeaturesThreads |
	experimental.CoreFeaturesTailCall |
	experimental.CoreFeaturesExtendedConst |
	experimental.CoreFeaturesExceptionHandling |
	experimental.CoreFeaturesTypedFunctionReferences

// Report is what the preflight has to say about a module it accepted.
type Report struct {
	// Warnings name what the preflight could not check, typically a
	// post-MVP feature its compiler does not support. Envoy's V8 has the
	// final say on such a module.
	Warnings []string
}

// isWasm reports whether b starts with the Wasm magic and version.
func isWasm(b []byte) bool { return bytes.HasPrefix(b, wasmHeader) }

// Verify is Preflight without the report.
func Verify(ctx context.Context, b []byte) error {
	_, err := Preflight(ctx, b)
	return err
}

// Preflight checks that b is a WebAssembly module a proxy-wasm host can
// load: the magic and version, well-formed sections, an exported
// proxy_abi_version_* function and an allocator (proxy_on_memory_allocate or
// malloc), and that it compiles. A module the compiler (wazero) refuses but
// whose sections are well-formed is accepted with a warning, since Envoy's V8
// runs features wazero lacks: the preflight must never refuse a module Envoy
// runs. Errors wrap ErrNotWasm or ErrPreflight.
func Preflight(ctx context.Context, b []byte) (Report, error) {
	if !isWasm(b) {
		return Report{}, fmt.Errorf("%w: missing magic number and version 1 header", ErrNotWasm)
	}
	m, err := parseModule(b)
	if err != nil {
		return Report{}, fmt.Errorf("%w: malformed module: %w", ErrPreflight, err)
	}
	if err := checkExports(m.funcExports); err != nil {
		return Report{}, err
	}
	if err := compile(ctx, b); err != nil {
		return Report{Warnings: []string{fmt.Sprintf(
			"not fully validated: the preflight's compiler does not accept this module (%v); "+
				"likely a Wasm feature it does not support, left for Envoy to check", err)}}, nil
	}
	return Report{}, nil
}

// compile validates the whole module with wazero. The interpreter validates
// like the compiler does but without generating machine code, which keeps
// large modules cheap.
func compile(ctx context.Context, b []byte) error {
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().
		WithCoreFeatures(preflightFeatures))
	defer rt.Close(ctx)
	compiled, err := rt.CompileModule(ctx, b)
	if err != nil {
		return err
	}
	return compiled.Close(ctx)
}

func checkExports(funcs []string) error {
	abi := slices.ContainsFunc(funcs, func(n string) bool { return strings.HasPrefix(n, abiVersionPrefix) })
	alloc := slices.Contains(funcs, allocatorProxy) || slices.Contains(funcs, allocatorMalloc)
	var missing []string
	if !abi {
		missing = append(missing, "a "+abiVersionPrefix+"* function")
	}
	if !alloc {
		missing = append(missing, allocatorProxy+" or "+allocatorMalloc)
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: does not export %s (not a proxy-wasm module)",
			ErrPreflight, strings.Join(missing, " nor "))
	}
	return nil
}
