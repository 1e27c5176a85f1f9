package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/wasmxds/wasmxds/internal/fetcher/fetchertest"
)

// runCLI runs the wasmxds command line in-process and returns stdout.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err := root.Execute()
	if err != nil {
		t.Logf("stderr: %s", errOut.String())
	}
	return out.String(), err
}

func TestPushThenPullReturnsIdenticalBytes(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	module := fetchertest.ProxyWasm(t.Name())
	file := filepath.Join(t.TempDir(), "filter.wasm")
	if err := os.WriteFile(file, module, 0o644); err != nil {
		t.Fatal(err)
	}
	ref := strings.TrimPrefix(srv.URL, "http://") + "/filters/cli:v1"

	digest, err := runCLI(t, "push", file, ref)
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	if !strings.HasPrefix(digest, "sha256:") || len(strings.TrimSpace(digest)) != 71 {
		t.Fatalf("push printed %q, want sha256:<manifest digest>", digest)
	}

	cache := t.TempDir()
	sum := sha256.Sum256(module)
	want := fmt.Sprintf("sha256:%s %d oci://%s\n", hex.EncodeToString(sum[:]), len(module), ref)
	// No scheme and an uppercase pin: the canonical spelling is printed.
	out, err := runCLI(t, "pull", ref, "--cache-dir", cache, "--sha256", strings.ToUpper(strings.TrimSpace(digest)))
	if err != nil || out != want {
		t.Fatalf("pull = %q, %v; want %q", out, err, want)
	}
	got, err := os.ReadFile(filepath.Join(cache, "sha256", hex.EncodeToString(sum[:])+".wasm"))
	if err != nil || !bytes.Equal(got, module) {
		t.Fatalf("cached module differs from the pushed file (%v)", err)
	}
}

func TestPullRejectsMismatchedPin(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "filter.wasm")
	if err := os.WriteFile(file, fetchertest.ProxyWasm(t.Name()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, "pull", "file://"+file, "--cache-dir", dir, "--sha256", strings.Repeat("0", 64))
	if err == nil || out != "" || !strings.Contains(err.Error(), "digest mismatch") {
		t.Fatalf("pull with a wrong pin = %q, %v; want a digest mismatch error and no output", out, err)
	}
}

func TestPullPrintsTheCanonicalURL(t *testing.T) {
	dir := t.TempDir()
	module := fetchertest.ProxyWasm(t.Name())
	if err := os.WriteFile(filepath.Join(dir, "filter.wasm"), module, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	sum := sha256.Sum256(module)
	want := fmt.Sprintf("sha256:%s %d file://%s\n", hex.EncodeToString(sum[:]), len(module), filepath.Join(dir, "filter.wasm"))
	out, err := runCLI(t, "pull", "file:./sub/../filter.wasm", "--cache-dir", filepath.Join(dir, "cache"))
	if err != nil || out != want {
		t.Fatalf("pull = %q, %v; want %q", out, err, want)
	}
}

func TestPullRefusesCredentialsInTheURL(t *testing.T) {
	out, err := runCLI(t, "pull", "https://bob:hunter2@example.com/f.wasm", "--cache-dir", t.TempDir())
	if err == nil || out != "" || strings.Contains(err.Error(), "hunter2") ||
		!strings.Contains(err.Error(), "credentials in module URLs are not supported") {
		t.Fatalf("pull = %q, %v; want a refusal that does not repeat the password", out, err)
	}
}
