// Package modreftest holds the table of module references and their
// canonical spellings that every parser of module URLs is tested against:
// modref itself, the catalog (a spec's url) and the fetcher (what it pulls).
package modreftest

import "strings"

// Example is a module reference as a user may write it and its canonical
// spelling.
type Example struct {
	In, Want string
}

// Hex is a sha256 used in the examples.
const Hex = "1ef0c9a92b0420cf25f7fe5d481b231464bc88f486ca3b9c83ed5cc21d2f6210"

// Examples do not depend on the directory relative file: URLs resolve
// against.
var Examples = []Example{
	{"add-header:v1", "oci://docker.io/library/add-header:v1"},
	{"myorg/f:v1", "oci://docker.io/myorg/f:v1"},
	{"nginx", "oci://docker.io/library/nginx:latest"},
	{"docker.io/nginx:1.27", "oci://docker.io/library/nginx:1.27"},
	{"index.docker.io/istio/proxy:1", "oci://docker.io/istio/proxy:1"},
	{"oci://istio/metadata-exchange:1.0", "oci://docker.io/istio/metadata-exchange:1.0"},
	{"127.0.0.1:5000/f/x", "oci://127.0.0.1:5000/f/x:latest"},
	{"localhost/f@sha256:" + strings.ToUpper(Hex), "oci://localhost/f@sha256:" + Hex},
	{"localhost:5000/f", "oci://localhost:5000/f:latest"},
	{"oci://ghcr.io/o/f:v1", "oci://ghcr.io/o/f:v1"},
	{"OCI://GHCR.io/o/f:v1", "oci://ghcr.io/o/f:v1"},
	{"ghcr.io/o/f:v1@sha256:" + Hex, "oci://ghcr.io/o/f:v1@sha256:" + Hex},
	{"nginx@sha256:" + Hex, "oci://docker.io/library/nginx@sha256:" + Hex},
	{"https://example.com/a.wasm?x=1", "https://example.com/a.wasm?x=1"},
	{"HTTP://Example.COM:8080/a.wasm#frag", "http://example.com:8080/a.wasm"},
	{"file:///tmp/../tmp/a.wasm", "file:///tmp/a.wasm"},
	{"file://localhost/srv/a%20b.wasm", "file:///srv/a%20b.wasm"},
	{"file:/abs/a.wasm", "file:///abs/a.wasm"},
}
