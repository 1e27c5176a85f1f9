//go:build !wasip1

package main

import (
	"testing"

	"github.com/wasmxds/wasmxds/examples/filters/proxywasm"
)

func TestMarksTheFirstChunkOfEachDirection(t *testing.T) {
	h := proxywasm.NewFakeHost()
	root, err := h.StartPlugin(nil, []byte(`{"downstreamPrefix": "> ", "upstreamPrefix": "< "}`))
	if err != nil {
		t.Fatal(err)
	}
	c, act := h.NewConnection(root)
	if act != proxywasm.ActionContinue {
		t.Fatalf("new connection: %v", act)
	}
	steps := []struct {
		up   bool
		in   string
		want string
	}{
		{false, "hi\n", "> hi\n"},
		{true, "> hi\n", "< > hi\n"},
		{false, "again\n", "again\n"},
		{true, "again\n", "again\n"},
	}
	for _, s := range steps {
		var got []byte
		if s.up {
			c.SendUpstream([]byte(s.in), false)
			got = c.Upstream
		} else {
			c.SendDownstream([]byte(s.in), false)
			got = c.Downstream
		}
		if string(got) != s.want {
			t.Errorf("upstream=%v %q passed on as %q, want %q", s.up, s.in, got, s.want)
		}
	}
	c.Close()

	fresh, _ := h.NewConnection(root)
	fresh.SendDownstream([]byte("x"), true)
	if string(fresh.Downstream) != "> x" {
		t.Errorf("a new connection is marked again: got %q", fresh.Downstream)
	}
}

func TestEmptyConfigPassesBytesThrough(t *testing.T) {
	h := proxywasm.NewFakeHost()
	root, err := h.StartPlugin(nil, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := h.NewConnection(root)
	c.SendDownstream([]byte("hi"), false)
	c.SendUpstream([]byte("ho"), true)
	if string(c.Downstream) != "hi" || string(c.Upstream) != "ho" {
		t.Errorf("bytes changed: %q %q", c.Downstream, c.Upstream)
	}
}

func TestRejectsConfigThatIsNotAnObject(t *testing.T) {
	h := proxywasm.NewFakeHost()
	if _, err := h.StartPlugin(nil, []byte(`["> "]`)); err == nil {
		t.Fatal("a JSON list was accepted as configuration")
	}
}
