package controlplane

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/wasmxds/wasmxds/internal/catalog"
	"github.com/wasmxds/wasmxds/internal/fetcher"
	"github.com/wasmxds/wasmxds/internal/xds"
)

// verifyingModules refuses, like the fetcher, a request whose key is not
// the one its URL was signed with.
type verifyingModules struct {
	*fakeModules
	signedWith map[string]string // URL → the key that signed it
}

func (v *verifyingModules) Resolve(ctx context.Context, req fetcher.Request) (fetcher.Module, error) {
	if req.VerificationKey != "" && v.signedWith[req.URL] != req.VerificationKey {
		v.mu.Lock()
		v.requests = append(v.requests, req)
		v.mu.Unlock()
		return fetcher.Module{}, fmt.Errorf("%s: %w: manifest has no signature", req.URL, fetcher.ErrUnsigned)
	}
	m, err := v.fakeModules.Resolve(ctx, req)
	m.SignedBy = req.VerificationKey
	return m, err
}

func (v *verifyingModules) Cached(req fetcher.Request) (fetcher.Module, bool) {
	if req.VerificationKey != "" {
		return fetcher.Module{}, false // nothing here was verified
	}
	return v.fakeModules.Cached(req)
}

// Adding a verificationKey re-resolves the plugin with the key; a refusal
// keeps the last good module serving and reports the reason.
func TestVerificationKeyIsPassedAndARefusalKeepsTheLastGoodModule(t *testing.T) {
	mods := &verifyingModules{fakeModules: &fakeModules{sums: map[string]string{"oci://r/f:v1": "aa", "oci://r/f:v2": "bb"}},
		signedWith: map[string]string{"oci://r/f:v2": "KEY"}}
	c := newController(controllerOptions{Modules: mods, Server: &fakeSink{inputs: make(chan xds.Input, 64)},
		Advertise: "http://cp:18080", Delivery: xds.DeliveryLDS})
	sink := c.opts.Server.(*fakeSink)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	p := plugin("f", "oci://r/f:v1", catalog.PullIfNotPresent)
	c.onChange(plugins(p))
	sink.until(t, "f resolved", resolved("f"))

	p.VerificationKey, p.KeyFingerprint = "KEY", "sha256:k"
	c.onChange(plugins(p))
	in := sink.until(t, "the refusal", func(in xds.Input) bool { return in.Modules["f"].Err != "" })
	if pm := in.Modules["f"]; pm.Module == nil || pm.Module.SHA256 != "aa" || !strings.Contains(pm.Err, "unsigned") {
		t.Errorf("after the refusal f = %+v, want the last good module aa and the reason", pm)
	}
	rep := c.pluginReports()[0]
	if rep.State != PluginFailed || rep.VerificationKey != "sha256:k" || rep.SignedBy != "" {
		t.Errorf("report = %+v, want failed, the key's fingerprint, and a module not signed by it", rep)
	}

	p.URL = "oci://r/f:v2"
	c.onChange(plugins(p))
	in = sink.until(t, "the signed module", func(in xds.Input) bool {
		return in.Modules["f"].Module != nil && in.Modules["f"].Module.SHA256 == "bb"
	})
	if in.Modules["f"].Err != "" {
		t.Errorf("signed module served with error %q", in.Modules["f"].Err)
	}
	if rep := c.pluginReports()[0]; rep.State != PluginReady || rep.SignedBy != "KEY" {
		t.Errorf("report = %+v, want ready and signed", rep)
	}
	mods.mu.Lock()
	defer mods.mu.Unlock()
	for _, r := range mods.requests[1:] {
		if r.VerificationKey != "KEY" {
			t.Errorf("request %+v after the key was set lacks it", r)
		}
	}
}
