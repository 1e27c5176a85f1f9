package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
)

// Docker's image media types, as `docker build` + `docker push` produce.
const (
	dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	dockerConfig   = "application/vnd.docker.container.image.v1+json"
	dockerLayer    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// imageFormat names the media types of an image manifest, config and layer.
type imageFormat struct{ manifest, config, layer string }

var (
	ociImage    = imageFormat{ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageConfig, ocispec.MediaTypeImageLayerGzip}
	dockerImage = imageFormat{dockerManifest, dockerConfig, dockerLayer}
)

// pushCompatImage publishes a module the way container-image based tooling
// does: an ordinary image whose single tar.gz layer holds plugin.wasm.
func (r *registry) pushCompatImage(wasmPath, repoTag string, format imageFormat) (digest.Digest, error) {
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		return "", err
	}
	layerTar, err := tarOf("plugin.wasm", wasm)
	if err != nil {
		return "", err
	}
	layer, err := gzipOf(layerTar)
	if err != nil {
		return "", err
	}
	config, err := json.Marshal(ocispec.Image{
		Platform: ocispec.Platform{Architecture: "amd64", OS: "linux"},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(layerTar)}},
	})
	if err != nil {
		return "", err
	}
	manifest := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: format.manifest,
		Config:    descriptorOf(format.config, config),
		Layers:    []ocispec.Descriptor{descriptorOf(format.layer, layer)},
	}
	return r.pushManifest(repoTag, manifest, map[digest.Digest][]byte{
		manifest.Config.Digest:    config,
		manifest.Layers[0].Digest: layer,
	})
}

func (r *registry) pushManifest(repoTag string, m ocispec.Manifest, blobs map[digest.Digest][]byte) (digest.Digest, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	repo, err := remote.NewRepository(r.ref(repoTag))
	if err != nil {
		return "", err
	}
	repo.PlainHTTP = true
	if r.user != "" {
		repo.Client = &auth.Client{Credential: auth.StaticCredential(r.addr,
			auth.Credential{Username: r.user, Password: r.password})}
	}
	for _, d := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
		if err := repo.Push(ctx, d, bytes.NewReader(blobs[d.Digest])); err != nil {
			return "", fmt.Errorf("push blob %s: %w", d.Digest, err)
		}
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	md := descriptorOf(m.MediaType, mb)
	if err := repo.PushReference(ctx, md, bytes.NewReader(mb), repo.Reference.Reference); err != nil {
		return "", fmt.Errorf("push manifest: %w", err)
	}
	return md.Digest, nil
}

func descriptorOf(mediaType string, b []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
}

func tarOf(name string, content []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg,
		ModTime: time.Unix(0, 0)}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(content); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func gzipOf(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
