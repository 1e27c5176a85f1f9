//go:build !wasip1

package main

import (
	"strings"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func start(t *testing.T, config string) proxytest.HostEmulator {
	t.Helper()
	host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().
		WithPluginContext(newPlugin).WithPluginConfiguration([]byte(config)))
	t.Cleanup(reset)
	if st := host.StartPlugin(); st != types.OnPluginStartStatusOK {
		t.Fatalf("configuration %s refused: %v", config, host.GetErrorLogs())
	}
	return host
}

// header returns the value of name in headers.
func header(headers [][2]string, name string) string {
	for _, h := range headers {
		if h[0] == name {
			return h[1]
		}
	}
	return ""
}

func TestCountsRequestsOfTheVM(t *testing.T) {
	host := start(t, "")
	var id string
	for n, want := range []string{"1", "2"} {
		s := host.InitializeHttpContext()
		host.CallOnRequestHeaders(s, [][2]string{{"x-fail", "0"}}, true)
		host.CallOnResponseHeaders(s, nil, true)
		got := host.GetCurrentResponseHeaders(s)
		if header(got, requestsHeader) != want || len(header(got, idHeader)) != 16 {
			t.Fatalf("response %d headers = %v, want %s: %s and a 16-digit %s", n+1, got, requestsHeader, want, idHeader)
		}
		if id != "" && header(got, idHeader) != id {
			t.Errorf("the VM id changed within one VM: %s then %s", id, header(got, idHeader))
		}
		id = header(got, idHeader)
	}
}

func TestPanicsOnTheConfiguredHeader(t *testing.T) {
	host := start(t, `{"header": "x-boom", "value": "yes"}`)
	s := host.InitializeHttpContext()
	host.CallOnRequestHeaders(s, [][2]string{{"x-fail", "1"}}, true) // not the configured header
	defer func() {
		msg, _ := recover().(string)
		if !strings.Contains(msg, "request header x-boom: yes") {
			t.Errorf("panic %q, want one naming x-boom: yes", msg)
		}
	}()
	host.CallOnRequestHeaders(host.InitializeHttpContext(), [][2]string{{"x-boom", "yes"}}, true)
	t.Error("no panic")
}

// With status500Every n the filter answers every nth request 500 itself,
// and lets the others through.
func TestStatus500Every(t *testing.T) {
	host := start(t, `{"status500Every": 2}`)
	for n := 1; n <= 4; n++ {
		s := host.InitializeHttpContext()
		action := host.CallOnRequestHeaders(s, nil, true)
		local := host.GetSentLocalResponse(s)
		if n%2 == 0 {
			if action != types.ActionPause || local == nil || local.StatusCode != 500 {
				t.Errorf("request %d: action %v, local response %+v; want a 500", n, action, local)
			}
			continue
		}
		if action != types.ActionContinue || local != nil {
			t.Errorf("request %d: action %v, local response %+v; want it passed on", n, action, local)
		}
	}
}

func TestStatus500EveryRefusesNonsense(t *testing.T) {
	for _, cfg := range []string{`{"status500Every": 0}`, `{"status500Every": "2"}`, `{"status500Every": 1.5}`} {
		host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().
			WithPluginContext(newPlugin).WithPluginConfiguration([]byte(cfg)))
		if st := host.StartPlugin(); st != types.OnPluginStartStatusFailed {
			t.Errorf("configuration %s accepted", cfg)
		}
		reset()
	}
}

// A VM whose environment has FAIL_START set refuses to start and says why;
// an empty value starts as usual.
func TestRefusesToStartWithFailStart(t *testing.T) {
	t.Setenv(failStartEnv, "1")
	host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithPluginContext(newPlugin))
	st, logs := host.StartPlugin(), host.GetErrorLogs()
	reset() // one emulator at a time
	if st != types.OnPluginStartStatusFailed {
		t.Fatalf("started with %s=1: status %v, want failed", failStartEnv, st)
	}
	if len(logs) != 1 || !strings.Contains(logs[0], failStartEnv+"=1") {
		t.Errorf("error logs = %q, want one naming %s=1", logs, failStartEnv)
	}

	t.Setenv(failStartEnv, "")
	host = start(t, "")
	s := host.InitializeHttpContext()
	host.CallOnRequestHeaders(s, nil, true)
	host.CallOnResponseHeaders(s, nil, true)
	if got := host.GetCurrentResponseHeaders(s); header(got, requestsHeader) != "1" {
		t.Errorf("with %s empty: response headers = %v, want the filter's", failStartEnv, got)
	}
}
