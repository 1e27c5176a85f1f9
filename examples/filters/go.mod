module github.com/wasmxds/wasmxds/examples/filters

go 1.26.0

require github.com/proxy-wasm/proxy-wasm-go-sdk v0.0.0-20260105142703-44c7d5847745

require github.com/tetratelabs/wazero v1.7.2 // indirect
