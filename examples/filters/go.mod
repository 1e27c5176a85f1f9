module github.com/wasmxds/wasmxds/examples/filters

go 1.26.0
