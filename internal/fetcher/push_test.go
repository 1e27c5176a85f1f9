package fetcher

import (
	"github.com/wasmxds/wasmxds/internal/testenv"

	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestPushThenPullIdenticalBytes(t *testing.T) {
	tr := newTestRegistry(t)
	module := validModule(t)
	digest, err := Push(context.Background(), module, "oci://"+tr.ref("filters/pushed:v1"),
		PushOptions{Title: "filter.wasm", DockerConfig: tr.dockerConfig(t)})
	if err != nil {
		t.Fatal(err)
	}
	m := mustResolve(t, newTestFetcher(t, "", nil), Request{URL: tr.ref("filters/pushed:v1")}, module)
	if m.ManifestDigest != digest {
		t.Errorf("pulled manifest %s, pushed %s", m.ManifestDigest, digest)
	}

	// The manifest is what oras and Istio expect of a Wasm artifact.
	_, rc, err := tr.repo(t, "filters/pushed:v1").FetchReference(context.Background(), "v1")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var man ocispec.Manifest
	if err := json.NewDecoder(rc).Decode(&man); err != nil {
		t.Fatal(err)
	}
	if man.Config.MediaType != MediaTypeWasmConfig || len(man.Layers) != 1 || man.Layers[0].MediaType != MediaTypeWasmLayer ||
		man.Layers[0].Annotations[ocispec.AnnotationTitle] != "filter.wasm" {
		t.Errorf("unexpected manifest: %+v", man)
	}

	again, err := Push(context.Background(), module, tr.ref("filters/pushed:v1"), PushOptions{DockerConfig: tr.dockerConfig(t), Title: "filter.wasm"})
	if err != nil || again != digest {
		t.Errorf("re-push of identical bytes = %s, %v; want the same digest %s", again, err, digest)
	}
}

func TestPushRefusesWhatIsNotATag(t *testing.T) {
	tr := newTestRegistry(t)
	module := validModule(t)
	for _, ref := range []string{
		"https://" + tr.ref("filters/x.wasm"),
		tr.ref("filters/x@sha256:" + sha(module)),
		"oci://bob:hunter2@" + tr.ref("filters/x:v1"),
	} {
		_, err := Push(context.Background(), module, ref, PushOptions{DockerConfig: tr.dockerConfig(t)})
		if !errors.Is(err, ErrInvalidReference) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Push(%q) err = %v; want ErrInvalidReference, no password", ref, err)
		}
	}
	if n := tr.count("PUT manifest"); n != 0 {
		t.Errorf("%d manifest PUTs; want none", n)
	}
}

func TestPushRefusesNonProxyWasm(t *testing.T) {
	tr := newTestRegistry(t)
	_, err := Push(context.Background(), []byte("not wasm"), tr.ref("filters/x:v1"), PushOptions{})
	if !errors.Is(err, ErrNotWasm) {
		t.Errorf("err = %v, want ErrNotWasm", err)
	}
	if n := tr.count("PUT manifest"); n != 0 {
		t.Errorf("a rejected module was pushed (%d manifest PUTs)", n)
	}
}

// orasBinary finds the oras CLI; the test fails rather than skips without it.
func orasBinary(t *testing.T) string {
	t.Helper()
	p, err := testenv.Tool("oras")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPullWhatOrasCLIPushed(t *testing.T) {
	oras := orasBinary(t)
	tr := newTestRegistry(t)
	module := validModule(t)
	dir := t.TempDir()
	for name, b := range map[string][]byte{"f.wasm": module, "cfg.json": []byte("{}")} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(oras, "push", "--plain-http", "--no-tty",
		"--config", "cfg.json:"+MediaTypeWasmConfig,
		tr.ref("filters/oras:v1"), "f.wasm:"+MediaTypeWasmLayer)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+dir, "HOME="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("oras push: %v\n%s", err, out)
	}
	m := mustResolve(t, newTestFetcher(t, "", nil), Request{URL: "oci://" + tr.ref("filters/oras:v1")}, module)
	if !strings.HasPrefix(m.ManifestDigest, "sha256:") {
		t.Errorf("ManifestDigest = %q", m.ManifestDigest)
	}
}
