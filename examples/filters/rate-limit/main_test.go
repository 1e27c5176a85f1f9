//go:build !wasip1

package main

import (
	"testing"

	"github.com/wasmxds/wasmxds/examples/filters/proxywasm"
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

func TestRejectsOverTheLimit(t *testing.T) {
	h := proxywasm.NewFakeHost()
	h.Now = 1000 * second
	root, err := h.StartPlugin(nil, []byte(`{"requestsPerWindow": 2, "windowSeconds": 10}`))
	if err != nil {
		t.Fatal(err)
	}
	send := func() *proxywasm.FakeStream {
		s := h.NewStream(root)
		s.SendRequestHeaders([]proxywasm.Header{{Name: ":path", Value: "/"}}, true)
		return s
	}
	for i := range 2 {
		if s := send(); s.LocalResponse != nil {
			t.Fatalf("request %d limited", i+1)
		}
	}
	lr := send().LocalResponse
	if lr == nil || lr.Status != 403 || string(lr.Body) != "rate limited\n" {
		t.Fatalf("third request: local response %+v, want 403 rate limited", lr)
	}
	if v, _ := proxywasm.HeaderValue(lr.Headers, limitedHeader); v != "true" {
		t.Errorf("local response headers = %v", lr.Headers)
	}
	h.Now += 10 * second
	if s := send(); s.LocalResponse != nil {
		t.Error("still limited after a full window")
	}
}

func TestRejectsBadConfiguration(t *testing.T) {
	h := proxywasm.NewFakeHost()
	if _, err := h.StartPlugin(nil, []byte(`{"requestsPerWindow": -1}`)); err == nil {
		t.Error("negative limit accepted")
	}
}
