package fetcher

import (
	"context"
	"errors"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const (
	dockerConfigMT = "application/vnd.docker.container.image.v1+json"
	dockerLayerMT  = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

func TestResolveWasmArtifactByTagAndDigest(t *testing.T) {
	tr := newTestRegistry(t)
	module := validModule(t)
	digest := tr.pushWasm(t, "filters/add-header:v1", module)
	f := newTestFetcher(t, "", nil)

	m := mustResolve(t, f, Request{URL: "oci://" + tr.ref("filters/add-header:v1")}, module)
	if m.ManifestDigest != digest {
		t.Errorf("ManifestDigest = %s, want %s", m.ManifestDigest, digest)
	}
	// No scheme means oci://; a digest reference names the same artifact.
	byDigest := mustResolve(t, newTestFetcher(t, "", nil), Request{URL: tr.host + "/filters/add-header@" + digest}, module)
	if byDigest.ManifestDigest != digest {
		t.Errorf("digest reference: ManifestDigest = %s, want %s", byDigest.ManifestDigest, digest)
	}
}

func TestResolveFormats(t *testing.T) {
	tr := newTestRegistry(t)
	module := validModule(t)
	other := validModule(t)
	wasmCfg := blob{MediaTypeWasmConfig, []byte("{}")}
	cases := []struct {
		name string
		push func(tag string)
	}{
		{"solo/wasme layout, config as a layer", func(tag string) {
			tr.pushManifest(t, tag, ocispec.MediaTypeImageManifest, blob{ocispec.MediaTypeEmptyJSON, []byte("{}")},
				wasmCfg, blob{MediaTypeWasmLayer, module})
		}},
		{"docker compat image, tar+gzip, topmost layer wins", func(tag string) {
			tr.pushManifest(t, tag, mediaTypeDockerManifest, blob{dockerConfigMT, []byte(`{"architecture":"amd64","os":"linux"}`)},
				blob{dockerLayerMT, gzipOf(t, tarOf(t, "plugin.wasm", string(other), "etc/x", "y"))},
				blob{dockerLayerMT, gzipOf(t, tarOf(t, "./plugin.wasm", string(module)))},
				blob{dockerLayerMT, gzipOf(t, tarOf(t, "README", "no module here"))})
		}},
		{"OCI compat image, plain tar", func(tag string) {
			tr.pushManifest(t, tag, ocispec.MediaTypeImageManifest, blob{ocispec.MediaTypeImageConfig, []byte(`{}`)},
				blob{ocispec.MediaTypeImageLayer, tarOf(t, "plugin.wasm", string(module))})
		}},
		{"single-layer artifact holding the module", func(tag string) {
			tr.pushManifest(t, tag, ocispec.MediaTypeImageManifest, blob{ocispec.MediaTypeEmptyJSON, []byte("{}")},
				blob{"application/octet-stream", module})
		}},
		{"image index with one Wasm manifest and an attestation", func(tag string) {
			wasm := tr.pushManifest(t, tag+"-wasm", ocispec.MediaTypeImageManifest, wasmCfg, blob{MediaTypeWasmLayer, module})
			att := tr.pushManifest(t, tag+"-att", ocispec.MediaTypeImageManifest, blob{ocispec.MediaTypeImageConfig, []byte("{}")},
				blob{"application/vnd.in-toto+json", []byte(`{"predicate":{}}`)})
			att.Annotations = map[string]string{annotationRefType: "attestation-manifest"}
			tr.pushIndex(t, tag, wasm, att)
		}},
		{"multi-platform index of identical compat images", func(tag string) {
			layer := blob{dockerLayerMT, gzipOf(t, tarOf(t, "plugin.wasm", string(module)))}
			amd := tr.pushManifest(t, tag+"-amd64", ocispec.MediaTypeImageManifest, blob{ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64"}`)}, layer)
			arm := tr.pushManifest(t, tag+"-arm64", ocispec.MediaTypeImageManifest, blob{ocispec.MediaTypeImageConfig, []byte(`{"architecture":"arm64"}`)}, layer)
			amd.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}
			arm.Platform = &ocispec.Platform{OS: "linux", Architecture: "arm64"}
			tr.pushIndex(t, tag, amd, arm)
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tag := "filters/formats:case" + string(rune('a'+i))
			tc.push(tag)
			mustResolve(t, newTestFetcher(t, "", nil), Request{URL: "oci://" + tr.ref(tag)}, module)
		})
	}
}

func TestResolveAmbiguousIndex(t *testing.T) {
	tr := newTestRegistry(t)
	cfg := blob{MediaTypeWasmConfig, []byte("{}")}
	a := tr.pushManifest(t, "filters/amb:a", ocispec.MediaTypeImageManifest, cfg, blob{MediaTypeWasmLayer, validModule(t)})
	b := tr.pushManifest(t, "filters/amb:b", ocispec.MediaTypeImageManifest, cfg, blob{MediaTypeWasmLayer, validModule(t)})
	tr.pushIndex(t, "filters/amb:both", a, b)

	_, err := newTestFetcher(t, "", nil).Resolve(context.Background(), Request{URL: tr.ref("filters/amb:both")})
	if !errors.Is(err, ErrAmbiguous) {
		t.Fatalf("err = %v, want ErrAmbiguous", err)
	}
	for _, want := range []string{"filters/amb:both", a.Digest.String(), b.Digest.String()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestResolvePins(t *testing.T) {
	tr := newTestRegistry(t)
	module := validModule(t)
	digest := tr.pushWasm(t, "filters/pinned:v1", module)
	url := "oci://" + tr.ref("filters/pinned:v1")

	mustResolve(t, newTestFetcher(t, "", nil), Request{URL: url, SHA256: strings.TrimPrefix(digest, "sha256:")}, module)
	mustResolve(t, newTestFetcher(t, "", nil), Request{URL: url, SHA256: sha(module)}, module)

	f := newTestFetcher(t, "", nil)
	wrong := sha([]byte("something else"))
	_, err := f.Resolve(context.Background(), Request{URL: url, SHA256: wrong})
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("err = %v, want ErrDigestMismatch", err)
	}
	for _, want := range []string{wrong, digest, sha(module), url} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("mismatch error %q does not name %s", err, want)
		}
	}
	if mods := f.Modules(); len(mods) != 0 {
		t.Errorf("a module that failed its pin was cached: %+v", mods)
	}
}

func TestResolveRejectsBadModules(t *testing.T) {
	tr := newTestRegistry(t)
	cfg := blob{MediaTypeWasmConfig, []byte("{}")}
	cases := []struct {
		name  string
		layer []byte
		max   int64
		want  error
	}{
		{"oversize", validModule(t), 64, ErrTooLarge},
		{"not wasm", []byte("this is a text file, not a module"), 0, ErrNotWasm},
		{"no proxy-wasm exports", buildTestModule("x", "_start", "malloc"), 0, ErrPreflight},
		{"does not compile", append(append([]byte{}, wasmHeader...), 0x0a, 0x01), 0, ErrPreflight},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tag := "filters/bad:case" + string(rune('a'+i))
			tr.pushManifest(t, tag, ocispec.MediaTypeImageManifest, cfg, blob{MediaTypeWasmLayer, tc.layer})
			f := newTestFetcher(t, "", func(o *Options) { o.MaxModuleSize = tc.max })
			_, err := f.Resolve(context.Background(), Request{URL: tr.ref(tag)})
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tag) {
				t.Errorf("error %q does not name the reference", err)
			}
			if mods := f.Modules(); len(mods) != 0 {
				t.Errorf("rejected module was cached: %+v", mods)
			}
		})
	}
}

func TestResolveCompatImageWithoutPlugin(t *testing.T) {
	tr := newTestRegistry(t)
	tr.pushManifest(t, "filters/empty:v1", mediaTypeDockerManifest, blob{dockerConfigMT, []byte("{}")},
		blob{dockerLayerMT, gzipOf(t, tarOf(t, "main.wasm", string(validModule(t))))})
	_, err := newTestFetcher(t, "", nil).Resolve(context.Background(), Request{URL: tr.ref("filters/empty:v1")})
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "plugin.wasm") {
		t.Fatalf("err = %v, want ErrNotFound naming plugin.wasm", err)
	}
}
