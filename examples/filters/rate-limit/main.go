// Command rate-limit is a proxy-wasm HTTP filter that limits requests with
// a token bucket. Plugin configuration (JSON):
//
//	{"requestsPerWindow": 3, "windowSeconds": 10}
//
// The bucket holds requestsPerWindow tokens and refills at
// requestsPerWindow per windowSeconds (a fraction is allowed), so a burst
// of requestsPerWindow passes and a full window restores it. Both default
// when absent: 100 requests per 60 seconds. A request finding the bucket
// empty gets a local 403 response with body "rate limited\n" and header
// x-rate-limited: true, and never reaches the upstream.
//
// The bucket lives in the VM: a proxy running one VM per worker thread
// (Envoy) has one bucket per worker.
package main

import (
	"errors"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/wasmxds/wasmxds/examples/filters/pluginconfig"
)

// Defaults when the configuration omits a field.
const (
	defaultRequests = 100
	defaultWindow   = 60.0
)

// The rejection a limited client sees.
const (
	limitedStatus = 403
	limitedBody   = "rate limited\n"
	limitedHeader = "x-rate-limited"
)

func main() {}

func init() { proxywasm.SetPluginContext(newPlugin) }

func newPlugin(uint32) types.PluginContext { return &plugin{} }

// vmStart is when the VM's module initialized.
var vmStart = time.Now()

// now reads the clock the bucket runs on: monotonic nanoseconds since the
// VM started (Go's runtime reads the host's WASI monotonic clock). Tests
// replace it.
var now = func() int64 { return int64(time.Since(vmStart)) }

var (
	errRequests = errors.New("requestsPerWindow must be a positive integer")
	errWindow   = errors.New("windowSeconds must be a positive number")
)

// parseConfig returns the bucket size and window length in seconds.
func parseConfig(data []byte) (int64, float64, error) {
	obj, err := pluginconfig.Parse(data)
	if err != nil {
		return 0, 0, err
	}
	requests, window := int64(defaultRequests), defaultWindow
	if _, ok := obj.Get("requestsPerWindow"); ok {
		if requests, ok = obj.Int("requestsPerWindow"); !ok || requests <= 0 {
			return 0, 0, errRequests
		}
	}
	if _, ok := obj.Get("windowSeconds"); ok {
		if window, ok = obj.Float("windowSeconds"); !ok || window <= 0 {
			return 0, 0, errWindow
		}
	}
	return requests, window, nil
}

type plugin struct {
	types.DefaultPluginContext
	bucket *bucket
}

func (p *plugin) OnPluginStart(size int) types.OnPluginStartStatus {
	var data []byte
	if size > 0 {
		var err error
		if data, err = proxywasm.GetPluginConfiguration(); err != nil {
			proxywasm.LogError("rate-limit: reading the configuration: " + err.Error())
			return types.OnPluginStartStatusFailed
		}
	}
	requests, window, err := parseConfig(data)
	if err != nil {
		proxywasm.LogError("rate-limit: bad configuration: " + err.Error())
		return types.OnPluginStartStatusFailed
	}
	p.bucket = newBucket(requests, window, now())
	return types.OnPluginStartStatusOK
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{bucket: p.bucket} }

type stream struct {
	types.DefaultHttpContext
	bucket *bucket
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	if s.bucket.take(now()) {
		return types.ActionContinue
	}
	err := proxywasm.SendHttpResponse(limitedStatus, [][2]string{{limitedHeader, "true"}}, []byte(limitedBody), -1)
	if err != nil {
		proxywasm.LogError("rate-limit: sending the local response: " + err.Error())
		return types.ActionContinue
	}
	// A local response ends the stream: the request must not go on.
	return types.ActionPause
}
