# wasmxds developer targets. `make run` runs the local demo; `make test` runs
# every test (unit + end-to-end with real Envoy and a real registry).
SHELL := /bin/bash
TOOLS := $(CURDIR)/.tools
export PATH := $(TOOLS)/bin:$(PATH)
ENVOY_BIN ?= $(shell command -v envoy 2>/dev/null || echo $(TOOLS)/envoy-venv/bin/envoy)
export ENVOY_BIN
GO ?= go
# The example filters: examples/filters/FILTERS is the one list (the
# Dockerfile and the filters' tests read it too).
FILTERS := $(shell sed -e '/^\#/d' examples/filters/FILTERS)
FILTER_BINS := $(FILTERS:%=examples/filters/bin/%.wasm)

.PHONY: all build deps filters test unit e2e run bench fmt vet lint fuzz clean

FUZZTIME ?= 2m

all: build filters

build:
	$(GO) build -o bin/wasmxds ./cmd/wasmxds

deps:
	./hack/install-deps.sh

filters: $(FILTER_BINS)

examples/filters/bin/%.wasm: $(shell find examples/filters -name '*.go' -o -name go.mod 2>/dev/null)
	@mkdir -p examples/filters/bin
	cd examples/filters && GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -o bin/$*.wasm ./$*

# Every test: installs Envoy and docker-registry when missing, builds the
# example filters, then runs unit and end-to-end tests.
test: deps filters lint
	cd examples/filters && $(GO) test -count=1 ./...
	./hack/fuzz.sh 20s
	$(GO) test -count=1 -timeout 25m ./...

unit:
	$(GO) test -count=1 -short ./...

e2e: deps filters
	$(GO) test -count=1 -timeout 25m -v ./e2e/...

# The local demo: wasmxds on configs/local with the example filters built
# here (file:// modules, no registry), plus an Envoy and an upstream.
run: deps build filters
	./hack/run-local.sh

bench: deps build filters
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./bench/...
	$(GO) test -run '^$$' -bench Parse ./internal/catalog

# Every fuzz target for FUZZTIME each: make fuzz FUZZTIME=10m
fuzz:
	./hack/fuzz.sh $(FUZZTIME)

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...

# gofmt, go vet and staticcheck on both modules (the project and the example
# filters, which build for wasip1).
lint: deps
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	staticcheck ./...
	cd examples/filters && $(GO) vet ./... && staticcheck ./... && GOOS=wasip1 GOARCH=wasm staticcheck -checks "inherit,-U1000" ./... # go:wasmexport functions look unused to it

clean:
	rm -rf bin examples/filters/bin
