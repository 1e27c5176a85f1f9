//go:build !wasip1

package main

import (
	"slices"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

const second = int64(1e9)

func TestBucketRefillsOverTheWindow(t *testing.T) {
	b := newBucket(2, 10, 0)
	for i, want := range []bool{true, true, false} {
		if got := b.take(0); got != want {
			t.Errorf("take %d at t=0: %v, want %v", i, got, want)
		}
	}
	if b.take(4 * second) {
		t.Error("a token before 5s (one token per 5s)")
	}
	if !b.take(5 * second) {
		t.Error("no token after 5s")
	}
	// A long pause refills only up to the bucket size.
	first, second2, third := b.take(100*second), b.take(100*second), b.take(100*second)
	if !first || !second2 || third {
		t.Error("the bucket overfilled after a long pause")
	}
	// A clock stepping back neither refills nor panics.
	if b.take(50 * second) {
		t.Error("a token after the clock stepped back")
	}
}

func TestParseConfig(t *testing.T) {
	n, w, err := parseConfig([]byte(`{"requestsPerWindow": 3, "windowSeconds": 0.5}`))
	if err != nil || n != 3 || w != 0.5 {
		t.Errorf("parseConfig = %d, %v, %v", n, w, err)
	}
	if n, w, err := parseConfig(nil); err != nil || n != defaultRequests || w != defaultWindow {
		t.Errorf("defaults = %d, %v, %v", n, w, err)
	}
	for _, bad := range []string{`{"requestsPerWindow": 0}`, `{"requestsPerWindow": 1.5}`,
		`{"requestsPerWindow": "3"}`, `{"windowSeconds": -1}`, `{"windowSeconds": "10"}`, `{`} {
		if _, _, err := parseConfig([]byte(bad)); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// startLimit runs the plugin in the SDK's host emulator on a clock the test
// moves.
func startLimit(t *testing.T, config string, clock *int64) (proxytest.HostEmulator, types.OnPluginStartStatus) {
	t.Helper()
	saved := now
	now = func() int64 { return *clock }
	host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().
		WithPluginContext(newPlugin).WithPluginConfiguration([]byte(config)))
	t.Cleanup(func() { reset(); now = saved })
	return host, host.StartPlugin()
}

func TestRejectsOverTheLimit(t *testing.T) {
	clock := 1000 * second
	host, st := startLimit(t, `{"requestsPerWindow": 2, "windowSeconds": 10}`, &clock)
	if st != types.OnPluginStartStatusOK {
		t.Fatalf("start: %v %v", st, host.GetErrorLogs())
	}
	send := func() (types.Action, *proxytest.LocalHttpResponse) {
		id := host.InitializeHttpContext()
		action := host.CallOnRequestHeaders(id, [][2]string{{":path", "/"}}, true)
		return action, host.GetSentLocalResponse(id)
	}
	for i := range 2 {
		if action, lr := send(); lr != nil || action != types.ActionContinue {
			t.Fatalf("request %d limited: %v %+v", i+1, action, lr)
		}
	}
	action, lr := send()
	if lr == nil || lr.StatusCode != 403 || string(lr.Data) != "rate limited\n" || action != types.ActionPause {
		t.Fatalf("third request: %v, local response %+v, want 403 rate limited and the stream paused", action, lr)
	}
	if !slices.Equal(lr.Headers, [][2]string{{limitedHeader, "true"}}) {
		t.Errorf("local response headers = %v", lr.Headers)
	}
	clock += 10 * second
	if _, lr := send(); lr != nil {
		t.Error("still limited after a full window")
	}
}

func TestRejectsBadConfiguration(t *testing.T) {
	var clock int64
	host, st := startLimit(t, `{"requestsPerWindow": -1}`, &clock)
	if st != types.OnPluginStartStatusFailed {
		t.Error("negative limit accepted")
	}
	if len(host.GetErrorLogs()) == 0 {
		t.Error("no error logged")
	}
}
