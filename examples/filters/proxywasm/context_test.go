//go:build !wasip1

package proxywasm

import (
	"errors"
	"testing"
)

// echoRoot copies request header x-in to response header x-out, refuses
// the plugin configuration "bad", and denies requests to /deny.
type echoRoot struct {
	DefaultRootContext
	config string
	ticks  int
}

func (r *echoRoot) OnPluginStart(config []byte) bool {
	r.config = string(config)
	return r.config != "bad"
}

func (r *echoRoot) OnTick() { r.ticks++ }

func (r *echoRoot) NewHTTPContext(uint32) HTTPContext {
	if r.config == "passthrough" {
		return nil
	}
	return &echoStream{root: r}
}

type echoStream struct {
	DefaultHTTPContext
	root *echoRoot
	in   string
}

func (s *echoStream) OnRequestHeaders(int, bool) Action {
	if path, _ := GetRequestHeader(":path"); path == "/deny" {
		_ = SendLocalResponse(403, []byte("no\n"), []Header{{"x-why", "denied"}})
		return ActionPause
	}
	s.in, _ = GetRequestHeader("X-In")
	return ActionContinue
}

func (s *echoStream) OnResponseHeaders(int, bool) Action {
	_ = AddResponseHeader("x-out", s.in+"/"+s.root.config)
	return ActionContinue
}

func (s *echoStream) OnLog() { LogInfo("done " + s.in) }

var lastRoot *echoRoot

func useEchoRoot() {
	SetNewRootContext(func(uint32) RootContext {
		lastRoot = &echoRoot{}
		return lastRoot
	})
}

func TestFakeHostDrivesStreams(t *testing.T) {
	useEchoRoot()
	h := NewFakeHost()
	root, err := h.StartPlugin(nil, []byte("cfg"))
	if err != nil {
		t.Fatal(err)
	}
	s := h.NewStream(root)
	if a := s.SendRequestHeaders([]Header{{":path", "/"}, {"x-in", "v1"}}, true); a != ActionContinue {
		t.Errorf("request action = %d", a)
	}
	s.SendResponseHeaders([]Header{{":status", "200"}}, false)
	if v, _ := HeaderValue(s.ResponseHeaders, "x-out"); v != "v1/cfg" {
		t.Errorf("x-out = %q", v)
	}
	s.Complete()
	if len(h.Logs) != 1 || h.Logs[0] != (LogEntry{LogLevelInfo, "done v1"}) {
		t.Errorf("logs = %+v", h.Logs)
	}
	h.Tick(root)
	if lastRoot.ticks != 1 {
		t.Errorf("ticks = %d", lastRoot.ticks)
	}
}

func TestFakeHostLocalResponse(t *testing.T) {
	useEchoRoot()
	h := NewFakeHost()
	root, _ := h.StartPlugin(nil, nil)
	s := h.NewStream(root)
	if a := s.SendRequestHeaders([]Header{{":path", "/deny"}}, true); a != ActionPause {
		t.Errorf("action = %d, want pause", a)
	}
	lr := s.LocalResponse
	if lr == nil || lr.Status != 403 || string(lr.Body) != "no\n" || lr.Headers[0] != (Header{"x-why", "denied"}) {
		t.Errorf("local response = %+v", lr)
	}
}

func TestRejectedConfiguration(t *testing.T) {
	useEchoRoot()
	h := NewFakeHost()
	if _, err := h.StartPlugin(nil, []byte("bad")); !errors.Is(err, errRejected) {
		t.Errorf("error = %v, want rejection", err)
	}
}

func TestNilHTTPContextPassesStream(t *testing.T) {
	useEchoRoot()
	h := NewFakeHost()
	root, _ := h.StartPlugin(nil, []byte("passthrough"))
	s := h.NewStream(root)
	s.SendRequestHeaders([]Header{{":path", "/deny"}}, true)
	s.SendResponseHeaders(nil, true)
	if s.LocalResponse != nil || len(s.ResponseHeaders) != 0 {
		t.Errorf("stream was touched: %+v", s)
	}
}

func TestHeaderHelpers(t *testing.T) {
	useEchoRoot()
	h := NewFakeHost()
	root, _ := h.StartPlugin(nil, nil)
	h.NewStream(root).RequestHeaders = []Header{{"a", "1"}, {"b", "2"}, {"a", "3"}}
	if err := ReplaceRequestHeader("A", "x"); err != nil {
		t.Fatal(err)
	}
	if err := RemoveRequestHeader("b"); err != nil {
		t.Fatal(err)
	}
	hs, _ := GetRequestHeaders()
	if len(hs) != 1 || hs[0] != (Header{"a", "x"}) {
		t.Errorf("headers = %v", hs)
	}
	if _, err := GetRequestHeader("missing"); !errors.Is(err, StatusNotFound) {
		t.Errorf("missing header error = %v", err)
	}
}

func TestHelpersWithoutHost(t *testing.T) {
	saved := current
	current = nil
	defer func() { current = saved }()
	LogInfo("dropped") // must not panic
	if _, err := GetRequestHeader("a"); !errors.Is(err, errNoHost) {
		t.Errorf("error = %v", err)
	}
	if err := SendLocalResponse(200, nil, nil); !errors.Is(err, errNoHost) {
		t.Errorf("error = %v", err)
	}
}

func TestStatusError(t *testing.T) {
	if StatusNotFound.Error() != "proxy-wasm: not found" || Status(99).Error() != "proxy-wasm: status 99" {
		t.Errorf("messages: %q %q", StatusNotFound.Error(), Status(99).Error())
	}
	if statusErr(StatusOK) != nil {
		t.Error("OK must be a nil error")
	}
}
