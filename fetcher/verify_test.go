package fetcher

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestVerify(t *testing.T) {
	cases := []struct {
		name    string
		module  []byte
		want    error
		message string
	}{
		{"proxy-wasm module", buildTestModule("", "proxy_abi_version_0_2_1", "proxy_on_memory_allocate"), nil, ""},
		{"malloc allocator", buildTestModule("", "proxy_abi_version_0_1_0", "malloc"), nil, ""},
		{"no ABI version", buildTestModule("", "proxy_on_memory_allocate"), ErrPreflight, "proxy_abi_version_"},
		{"no allocator", buildTestModule("", "proxy_abi_version_0_2_1"), ErrPreflight, "proxy_on_memory_allocate or malloc"},
		{"does not compile", append(append([]byte{}, wasmHeader...), 0x01, 0x05, 0xff), ErrPreflight, "does not compile"},
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
