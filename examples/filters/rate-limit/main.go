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

	"github.com/wasmxds/wasmxds/examples/filters/pluginconfig"
	"github.com/wasmxds/wasmxds/examples/filters/proxywasm"
)

// Defaults when the configuration omits a field.
const (
	defaultRequests = 100
	defaultWindow   = 60.0
)

// The rejection a limited client sees.
const (
	limitedStatus  = 403
	limitedBody    = "rate limited\n"
	limitedHeader  = "x-rate-limited"
	limitedDetails = "wasm_rate_limited"
)

func main() {}

func init() {
	proxywasm.SetNewRootContext(func(uint32) proxywasm.RootContext { return &root{} })
}

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

type root struct {
	proxywasm.DefaultRootContext
	bucket *bucket
}

func (r *root) OnPluginStart(data []byte) bool {
	requests, window, err := parseConfig(data)
	if err != nil {
		proxywasm.LogError("rate-limit: bad configuration: " + err.Error())
		return false
	}
	now, _ := proxywasm.CurrentTimeNanos()
	r.bucket = newBucket(requests, window, now)
	return true
}

func (r *root) NewHTTPContext(uint32) proxywasm.HTTPContext { return &stream{bucket: r.bucket} }

type stream struct {
	proxywasm.DefaultHTTPContext
	bucket *bucket
}

func (s *stream) OnRequestHeaders(int, bool) proxywasm.Action {
	now, err := proxywasm.CurrentTimeNanos()
	if err != nil {
		proxywasm.LogError("rate-limit: reading the clock: " + err.Error())
		return proxywasm.ActionContinue
	}
	if s.bucket.take(now) {
		return proxywasm.ActionContinue
	}
	err = proxywasm.SendLocalResponseWithDetails(limitedStatus, limitedDetails,
		[]byte(limitedBody), []proxywasm.Header{{Name: limitedHeader, Value: "true"}})
	if err != nil {
		proxywasm.LogError("rate-limit: sending the local response: " + err.Error())
		return proxywasm.ActionContinue
	}
	return proxywasm.ActionPause
}
