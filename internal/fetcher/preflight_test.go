package fetcher

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestResolveCarriesPreflightWarnings: a module the preflight could not fully
// validate resolves, carries the warning on every Module, and is logged once
// however many references and re-reads bring it in.
func TestResolveCarriesPreflightWarnings(t *testing.T) {
	var logs syncBuffer
	f := newTestFetcher(t, "", func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	dir := t.TempDir()
	unvalidated := readFeatureModule(t, "memory64")
	var urls []string
	for _, name := range []string{"a.wasm", "b.wasm"} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, unvalidated, 0o644); err != nil {
			t.Fatal(err)
		}
		urls = append(urls, "file://"+p)
	}
	for _, url := range append(urls, urls...) { // file:// is re-read each time
		m := mustResolve(t, f, Request{URL: url}, unvalidated)
		if len(m.Warnings) != 1 || !strings.Contains(m.Warnings[0], "not fully validated") {
			t.Fatalf("Resolve(%s).Warnings = %q, want the preflight's warning", url, m.Warnings)
		}
	}
	if n := strings.Count(logs.String(), "module preflight incomplete"); n != 1 {
		t.Errorf("warning logged %d times, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "component=fetcher") || !strings.Contains(logs.String(), sha(unvalidated)) {
		t.Errorf("warning lacks the component or the module's sha256:\n%s", logs.String())
	}

	validated := readFeatureModule(t, "tail-call")
	p := filepath.Join(dir, "validated.wasm")
	if err := os.WriteFile(p, validated, 0o644); err != nil {
		t.Fatal(err)
	}
	if m := mustResolve(t, f, Request{URL: "file://" + p}, validated); m.Warnings != nil {
		t.Errorf("a fully validated module carries warnings %q", m.Warnings)
	}
}

// TestPushLogsPreflightWarnings: push accepts a module its compiler cannot
// validate and says so.
func TestPushLogsPreflightWarnings(t *testing.T) {
	tr := newTestRegistry(t)
	var logs syncBuffer
	module := readFeatureModule(t, "relaxed-simd")
	_, err := Push(context.Background(), module, tr.ref("filters/relaxed:v1"),
		PushOptions{DockerConfig: tr.dockerConfig(t), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("Push refused a module Envoy runs: %v", err)
	}
	if !strings.Contains(logs.String(), "module preflight incomplete") {
		t.Errorf("no warning logged:\n%s", logs.String())
	}
	mustResolve(t, newTestFetcher(t, "", nil), Request{URL: tr.ref("filters/relaxed:v1")}, module)
}
