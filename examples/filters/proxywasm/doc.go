// Package proxywasm lets plain Go programs, compiled with
// GOOS=wasip1 GOARCH=wasm -buildmode=c-shared, run as HTTP or network
// filters in proxies that implement the proxy-wasm ABI v0.2.1 (Envoy among
// them). A root context that implements TCPRootContext gets a TCPContext per
// connection, with the connection's data in the downstream and upstream
// buffers.
//
// A filter registers a root context factory with SetNewRootContext, usually
// in init. The host creates one root context per plugin configuration; the
// root context receives the VM and plugin configuration and creates one
// HTTPContext per HTTP stream. Inside a callback, the package-level helpers
// (GetRequestHeader, AddResponseHeader, SendLocalResponse, LogInfo, ...)
// act on the stream or plugin the host is currently calling for.
//
// The ABI glue (the exports the host calls and the imports it provides) is
// compiled only for wasip1. On other platforms FakeHost stands in for the
// proxy so that filter logic can be unit-tested with go test.
//
// Filters should avoid packages that talk to the operating system (os,
// fmt, net) and encoding/json: they add size and pull in WASI calls that
// proxies implement partially or not at all. The pluginconfig package reads
// JSON plugin configuration without them.
package proxywasm
