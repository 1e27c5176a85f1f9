package fetcher

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// rawModule is the Wasm header followed by the given bytes, for modules the
// fetchertest builder cannot express (broken framing).
func rawModule(b ...byte) []byte { return append(append([]byte{}, wasmHeader...), b...) }

func TestVerify(t *testing.T) {
	abi, malloc := "proxy_abi_version_0_2_1", "malloc"
	cases := []struct {
		name    string
		module  []byte
		want    error
		message string
	}{
		{"proxy-wasm module", buildTestModule("", abi, "proxy_on_memory_allocate"), nil, ""},
		{"malloc allocator", buildTestModule("", "proxy_abi_version_0_1_0", malloc), nil, ""},
		{"no ABI version", buildTestModule("", "proxy_on_memory_allocate"), ErrPreflight, "proxy_abi_version_"},
		{"no allocator", buildTestModule("", abi), ErrPreflight, "proxy_on_memory_allocate or malloc"},
		{"section runs past the end", rawModule(0x01, 0x05, 0xff), ErrPreflight, "type section (id 1) at offset 0x8: truncated"},
		{"section size cut short", rawModule(0x07, 0x80), ErrPreflight, "export section (id 7) at offset 0x8: truncated"},
		{"repeated section", append(buildTestModule("", abi, malloc), 0x07, 0x01, 0x00), ErrPreflight, "export section (id 7) at offset 0x42: repeated"},
		{"export name runs past its section", rawModule(0x07, 0x03, 0x01, 0x10, 'p'), ErrPreflight, "export 0: name: truncated"},
		{"bytes after the last export", rawModule(0x07, 0x02, 0x00, 0x00), ErrPreflight, "1 bytes after the last export"},
		{"ABI version exported as a memory", exportsOnly(t, export{abi, 2}, export{malloc, 0}), ErrPreflight, "proxy_abi_version_"},
		{"not wasm", []byte("#!/bin/sh\necho hi\n"), ErrNotWasm, "magic"},
		{"empty", nil, ErrNotWasm, "magic"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(context.Background(), tc.module)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
			if err != nil && !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q does not mention %q", err, tc.message)
			}
		})
	}
}

type export struct {
	name string
	kind byte
}

// exportsOnly is a module with just an export section (indexes 0).
func exportsOnly(t *testing.T, exports ...export) []byte {
	t.Helper()
	payload := []byte{byte(len(exports))}
	for _, e := range exports {
		payload = append(append(append(payload, byte(len(e.name))), e.name...), e.kind, 0x00)
	}
	if len(payload) > 0x7f {
		t.Fatal("exportsOnly: payload too long for a one-byte size")
	}
	return rawModule(append([]byte{0x07, byte(len(payload))}, payload...)...)
}

// featureModules are the hand-made filters in testdata/features (see the
// README there) and whether wazero, the preflight's compiler, validates them
// fully. Those it cannot are the modules the preflight once refused although
// Envoy runs them.
var featureModules = map[string]bool{
	"exceptions":     false, // legacy try/catch, what LLVM emits; wazero has only exnref
	"extended-const": true,
	"memory64":       false,
	"multi-memory":   false,
	"relaxed-simd":   false,
	"tail-call":      true,
	"threads":        true,
}

func readFeatureModule(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "features", name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFeatureModulesAreListed keeps featureModules and the directory in step,
// so a new module is not left untested.
func TestFeatureModulesAreListed(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "features", "*.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, strings.TrimSuffix(filepath.Base(f), ".wasm"))
	}
	var want []string
	for name := range featureModules {
		want = append(want, name)
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("testdata/features has %v, featureModules lists %v", got, want)
	}
}

// TestPreflightAcceptsPostMVPFeatures: every feature module passes; those
// wazero cannot validate pass with a warning that says so and why.
func TestPreflightAcceptsPostMVPFeatures(t *testing.T) {
	for name, validated := range featureModules {
		t.Run(name, func(t *testing.T) {
			report, err := Preflight(context.Background(), readFeatureModule(t, name))
			if err != nil {
				t.Fatalf("Preflight refused a module Envoy runs: %v", err)
			}
			if validated {
				if len(report.Warnings) != 0 {
					t.Errorf("wazero validates %s, yet warnings %q", name, report.Warnings)
				}
				return
			}
			if len(report.Warnings) != 1 || !strings.Contains(report.Warnings[0], "not fully validated") {
				t.Errorf("warnings = %q, want one saying the module was not fully validated", report.Warnings)
			}
		})
	}
}

// TestPreflightChecksWhatItCanOfUnvalidatedModules: a module wazero cannot
// compile is still refused when its exports or framing are wrong.
func TestPreflightChecksWhatItCanOfUnvalidatedModules(t *testing.T) {
	for name, validated := range featureModules {
		if validated {
			continue
		}
		b := readFeatureModule(t, name)
		breaks := map[string]struct {
			module []byte
			want   string
		}{
			"no ABI version": {bytes.Replace(b, []byte("proxy_abi_version_0_2_1"), []byte("proxy_abi_xersion_0_2_1"), 1), "proxy_abi_version_"},
			"no allocator":   {bytes.Replace(b, []byte("proxy_on_memory_allocate"), []byte("proxy_on_memory_allocatf"), 1), "proxy_on_memory_allocate or malloc"},
			"truncated":      {b[:len(b)-1], "truncated"},
		}
		for what, c := range breaks {
			t.Run(name+"/"+what, func(t *testing.T) {
				if bytes.Equal(c.module, b) {
					t.Fatal("the module was not changed")
				}
				_, err := Preflight(context.Background(), c.module)
				if !errors.Is(err, ErrPreflight) || !strings.Contains(err.Error(), c.want) {
					t.Errorf("Preflight = %v, want ErrPreflight mentioning %q", err, c.want)
				}
			})
		}
	}
}
