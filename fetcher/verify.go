package fetcher

import (
	"bytes"
	"context"
	"fmt"
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

// preflightFeatures accepts what current proxy-wasm toolchains emit and V8
// runs, so that valid modules are not rejected for using newer proposals.
const preflightFeatures = api.CoreFeaturesV2 |
	experimental.CoreFeaturesTailCall |
	experimental.CoreFeaturesExtendedConst |
	experimental.CoreFeaturesThreads

// isWasm reports whether b starts with the Wasm magic and version.
func isWasm(b []byte) bool { return bytes.HasPrefix(b, wasmHeader) }

// Verify checks that b is a WebAssembly module a proxy-wasm host can load:
// the magic and version, that it compiles, and that it exports a
// proxy_abi_version_* function and an allocator (proxy_on_memory_allocate or
// malloc). Errors wrap ErrNotWasm or ErrPreflight.
func Verify(ctx context.Context, b []byte) error {
	if !isWasm(b) {
		return fmt.Errorf("%w: missing magic number and version 1 header", ErrNotWasm)
	}
	// The interpreter validates the whole module like the compiler does but
	// without generating machine code, which keeps large modules cheap.
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().
		WithCoreFeatures(preflightFeatures))
	defer rt.Close(ctx)
	compiled, err := rt.CompileModule(ctx, b)
	if err != nil {
		return fmt.Errorf("%w: does not compile: %w", ErrPreflight, err)
	}
	defer compiled.Close(ctx)
	return checkExports(compiled.ExportedFunctions())
}

func checkExports(exports map[string]api.FunctionDefinition) error {
	var abi, alloc bool
	for name := range exports {
		switch {
		case strings.HasPrefix(name, abiVersionPrefix):
			abi = true
		case name == allocatorProxy || name == allocatorMalloc:
			alloc = true
		}
	}
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
