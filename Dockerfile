# syntax=docker/dockerfile:1
# Multi-stage build: a static wasmxds binary on a distroless base, plus a
# `filters` target (used by docker-compose.yaml) that builds the example Go
# filters and pushes them to a registry.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# CGO off: the binary must run on an image with no libc.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/wasmxds ./cmd/wasmxds \
 && mkdir -p /out/cache

FROM build AS filters
# examples/filters/FILTERS lists the filters, for `make filters` too.
RUN cd examples/filters \
 && for f in $(sed -e '/^#/d' FILTERS); do \
      GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o "/out/filters/$f.wasm" "./$f" || exit 1; \
    done
ENV PATH=/out:$PATH
WORKDIR /out/filters

FROM gcr.io/distroless/static-debian12:nonroot AS wasmxds
COPY --from=build /out/wasmxds /usr/local/bin/wasmxds
# Owned by the non-root user so a volume mounted here is writable.
COPY --from=build --chown=65532:65532 /out/cache /var/cache/wasmxds
USER 65532:65532
EXPOSE 18000 18080
ENTRYPOINT ["/usr/local/bin/wasmxds"]
CMD ["serve", "--config-dir", "/etc/wasmxds/configs", "--cache-dir", "/var/cache/wasmxds"]
